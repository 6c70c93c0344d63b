//! Compiles `spec/` into the Rust wire types (`$OUT_DIR/protocol.rs`, included by `src/protocol/`), the HTTP
//! operation layer (`$OUT_DIR/operations.rs`, included by `src/api/operations.rs`) and the published JSON
//! Schemas (`$OUT_DIR/schemas.rs`, included by `src/api/schemas.rs`), and lists the console's committed build
//! output (`$OUT_DIR/web_assets.rs`: `include_bytes!` of every file of `web/dist/`, included by
//! `src/api/console.rs`). Writes nothing outside `OUT_DIR`; `generated/` is refreshed by
//! `cargo run -p chatbox-codegen`, `web/dist/` by `node web/build.mjs`.

use std::path::{Path, PathBuf};

/// `schemas.rs`: `SCHEMAS`, every `schemas/{ws,http}/<name>.json` output as `(name, contents)`, by name.
fn schemas_source(files: &[chatbox_codegen::GeneratedFile]) -> String {
    let mut entries: Vec<(&str, &str)> = files
        .iter()
        .filter_map(|f| {
            let rest = f
                .path
                .strip_prefix("schemas/ws/")
                .or_else(|| f.path.strip_prefix("schemas/http/"))?;
            Some((rest.strip_suffix(".json")?, f.contents.as_str()))
        })
        .collect();
    entries.sort();
    let mut out = String::from(
        "/// The published JSON Schemas (`generated/schemas/{ws,http}/<name>.json`) as `(name, contents)`, sorted by name.\n\
         pub const SCHEMAS: &[(&str, &str)] = &[\n",
    );
    for (name, contents) in entries {
        out.push_str(&format!("    ({name:?}, {contents:?}),\n"));
    }
    out.push_str("];\n");
    out
}

/// Every file below `dir`, as paths relative to it with `/` separators, sorted.
fn files_below(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(next) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&next) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(rest) = path.strip_prefix(dir) {
                found.push(rest.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    found.sort();
    found
}

/// `web_assets.rs`: `WEB_ASSETS`, every file of `web/dist/` as `(path, bytes)`, by path.
fn web_assets_source(dist: &Path) -> String {
    let mut out = String::from(
        "/// The console's build output (`web/dist/`) as `(path relative to it, contents)`, sorted by path.\n\
         pub const WEB_ASSETS: &[(&str, &[u8])] = &[\n",
    );
    for name in files_below(dist) {
        let full = dist.join(&name);
        out.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            full.to_string_lossy()
        ));
    }
    out.push_str("];\n");
    out
}

#[allow(
    clippy::print_stdout,
    reason = "cargo reads build-script directives from stdout"
)]
fn main() {
    println!("cargo:rerun-if-changed=spec/");
    println!("cargo:rerun-if-changed=web/dist/");
    let specs = match chatbox_codegen::Specs::load(Path::new("spec")) {
        Ok(specs) => specs,
        Err(error) => panic!("{error}"),
    };
    let files = match chatbox_codegen::generate(&specs) {
        Ok(files) => files,
        Err(error) => panic!("{error}"),
    };
    let output = |path: &str| match files.iter().find(|f| f.path == path) {
        Some(file) => file.contents.clone(),
        None => panic!("the spec compiler emitted no {path}"),
    };
    let Some(manifest_dir) = std::env::var_os("CARGO_MANIFEST_DIR").map(PathBuf::from) else {
        panic!("CARGO_MANIFEST_DIR is not set")
    };
    let out_dir = std::env::var_os("OUT_DIR").map(PathBuf::from);
    let Some(out_dir) = out_dir else {
        panic!("OUT_DIR is not set")
    };
    for (name, contents) in [
        ("protocol.rs", output(chatbox_codegen::RUST_PATH)),
        ("operations.rs", output(chatbox_codegen::OPERATIONS_PATH)),
        ("schemas.rs", schemas_source(&files)),
        (
            "web_assets.rs",
            web_assets_source(&manifest_dir.join("web/dist")),
        ),
    ] {
        if let Err(error) = std::fs::write(out_dir.join(name), contents) {
            panic!("{}: {error}", out_dir.join(name).display());
        }
    }
}
