//! The console's committed build output (`web/dist/`, built into the binary) against its sources: every
//! input `web/build.mjs` read and every file it wrote is listed in `web/dist/BUILD-SOURCES.txt` with its
//! SHA-256, so a source changed without a rebuild, a new or deleted source, or an output edited by hand fails
//! here. `scripts/console.sh` also rebuilds the output with the pinned esbuild and compares it byte for byte.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

const REBUILD: &str = "run `(cd web && npm ci && node build.mjs)` and commit web/dist";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Every file below `dir`, as paths relative to `base` with `/`.
fn files(dir: &Path, base: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files(&path, base));
        } else {
            let rest = path.strip_prefix(base).unwrap();
            found.push(rest.to_string_lossy().replace('\\', "/"));
        }
    }
    found
}

fn digest(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

/// The `input` or `output` lines of the record: path -> SHA-256.
fn recorded(kind: &str) -> BTreeMap<String, String> {
    let record = std::fs::read_to_string(root().join("web/dist/BUILD-SOURCES.txt"))
        .unwrap_or_else(|e| panic!("web/dist/BUILD-SOURCES.txt: {e}; {REBUILD}"));
    record
        .lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ' ');
            (parts.next()? == kind).then(|| {
                let hash = parts.next().unwrap().to_owned();
                (parts.next().unwrap().to_owned(), hash)
            })
        })
        .collect()
}

#[test]
fn committed_console_build_matches_its_sources() {
    let root = root();
    let mut inputs: Vec<String> = files(&root.join("web/src"), &root);
    inputs.extend(files(&root.join("generated/typescript/src"), &root));
    inputs.extend(
        [
            "web/build.mjs",
            "web/package-lock.json",
            "web/tsconfig.json",
        ]
        .map(String::from),
    );
    let actual: BTreeMap<String, String> = inputs
        .into_iter()
        .map(|path| {
            let hash = digest(&root.join(&path));
            (path, hash)
        })
        .collect();
    let expected = recorded("input");
    for (path, hash) in &actual {
        match expected.get(path) {
            None => panic!("{path} is new since web/dist was built; {REBUILD}"),
            Some(h) if h != hash => panic!("{path} changed since web/dist was built; {REBUILD}"),
            Some(_) => {}
        }
    }
    for path in expected.keys() {
        assert!(
            actual.contains_key(path),
            "{path} was deleted since web/dist was built; {REBUILD}"
        );
    }
}

#[test]
fn committed_console_build_is_as_written_and_is_what_the_binary_serves() {
    let dist = root().join("web/dist");
    let mut outputs = files(&dist, &dist);
    outputs.retain(|p| p != "BUILD-SOURCES.txt");
    outputs.sort();
    let expected = recorded("output");
    assert_eq!(
        outputs,
        expected.keys().cloned().collect::<Vec<_>>(),
        "web/dist holds other files than web/build.mjs wrote; {REBUILD}"
    );
    for (path, hash) in &expected {
        assert_eq!(
            &digest(&dist.join(path)),
            hash,
            "web/dist/{path} was edited by hand; {REBUILD}"
        );
        let served = chatbox::api::console::asset(path)
            .unwrap_or_else(|| panic!("web/dist/{path} is not built into the binary"));
        assert_eq!(served, std::fs::read(dist.join(path)).unwrap(), "{path}");
    }
}
