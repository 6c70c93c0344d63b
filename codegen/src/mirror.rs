//! The reviewed `generated/` mirror on disk: what differs from the compiler's output, and refreshing it.

use std::collections::BTreeSet;
use std::path::Path;

use crate::GeneratedFile;

/// Top-level directories of the output that the compiler owns; stale files are only removed under these.
const OWNED_DIRS: &[&str] = &["rust", "docs", "schemas", "typescript"];

/// Directories that building or packing the TypeScript package in place creates; never part of the mirror.
const BUILD_DIRS: &[&str] = &["node_modules", "dist"];

/// The command that refreshes the mirror, for messages that report it stale.
pub const REFRESH: &str = "cargo run -p chatbox-codegen -- --spec spec --out generated";

/// Every file currently under the owned directories of `out`, as relative `/`-separated paths.
fn existing_files(out: &Path) -> std::io::Result<BTreeSet<String>> {
    fn walk(root: &Path, dir: &Path, found: &mut BTreeSet<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                if !BUILD_DIRS.contains(&entry.file_name().to_string_lossy().as_ref()) {
                    walk(root, &path, found)?;
                }
            } else if let Ok(rel) = path.strip_prefix(root) {
                let rel: Vec<String> = rel
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                found.insert(rel.join("/"));
            }
        }
        Ok(())
    }
    let mut found = BTreeSet::new();
    for dir in OWNED_DIRS {
        let path = out.join(dir);
        if path.is_dir() {
            walk(out, &path, &mut found)?;
        }
    }
    Ok(found)
}

/// Files of `out` that differ from what is generated: (relative path, reason), sorted by path. A file
/// under an owned directory that is no longer generated is reported as stale.
pub fn differences(
    out: &Path,
    files: &[GeneratedFile],
) -> std::io::Result<Vec<(String, &'static str)>> {
    let mut diffs = Vec::new();
    let mut stale = existing_files(out)?;
    for f in files {
        stale.remove(&f.path);
        match std::fs::read_to_string(out.join(&f.path)) {
            Ok(text) if text == f.contents => {}
            Ok(_) => diffs.push((f.path.clone(), "differs")),
            Err(_) => diffs.push((f.path.clone(), "missing")),
        }
    }
    diffs.extend(
        stale
            .into_iter()
            .map(|p| (p, "stale (no longer generated)")),
    );
    diffs.sort();
    Ok(diffs)
}

/// Makes `out` equal to `files` (writes what differs, removes stale files and empty directories); returns
/// how many files changed.
pub fn write_all(out: &Path, files: &[GeneratedFile]) -> std::io::Result<usize> {
    let mut changed = 0;
    for (path, reason) in differences(out, files)? {
        let full = out.join(&path);
        match files.iter().find(|f| f.path == path) {
            Some(f) => {
                if let Some(parent) = full.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                std::fs::write(&full, &f.contents)?;
            }
            None if reason.starts_with("stale") => std::fs::remove_file(&full)?,
            None => {}
        }
        changed += 1;
    }
    for dir in OWNED_DIRS {
        remove_empty_dirs(&out.join(dir))?;
    }
    Ok(changed)
}

fn remove_empty_dirs(dir: &Path) -> std::io::Result<()> {
    if !dir.is_dir() {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let path = entry.path();
        if path.is_dir() && !BUILD_DIRS.contains(&entry.file_name().to_string_lossy().as_ref()) {
            remove_empty_dirs(&path)?;
        }
    }
    if std::fs::read_dir(dir)?.next().is_none() {
        std::fs::remove_dir(dir)?;
    }
    Ok(())
}
