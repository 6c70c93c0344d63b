//! `chatbox-codegen`: writes (or, with `--check`, verifies) the `generated/` mirror of what the spec compiler emits.
//!
//! Usage: `cargo run -p chatbox-codegen -- [--spec spec] [--out generated] [--check]`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use chatbox_codegen::{GeneratedFile, Specs, generate};

/// Top-level directories of the output that the compiler owns; stale files are only removed under these.
const OWNED_DIRS: &[&str] = &["rust", "docs", "schemas"];

const REFRESH: &str = "cargo run -p chatbox-codegen -- --spec spec --out generated";

struct Args {
    spec: PathBuf,
    out: PathBuf,
    check: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        spec: PathBuf::from("spec"),
        out: PathBuf::from("generated"),
        check: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--spec" => args.spec = it.next().ok_or("--spec needs a directory")?.into(),
            "--out" => args.out = it.next().ok_or("--out needs a directory")?.into(),
            "--check" => args.check = true,
            "-h" | "--help" => {
                return Err("usage: chatbox-codegen [--spec DIR] [--out DIR] [--check]".to_owned());
            }
            other => {
                return Err(format!(
                    "unknown argument {other:?}; usage: chatbox-codegen [--spec DIR] [--out DIR] [--check]"
                ));
            }
        }
    }
    Ok(args)
}

/// Every file currently under the owned directories of `out`, as relative `/`-separated paths.
fn existing_files(out: &Path) -> std::io::Result<BTreeSet<String>> {
    fn walk(root: &Path, dir: &Path, found: &mut BTreeSet<String>) -> std::io::Result<()> {
        for entry in std::fs::read_dir(dir)? {
            let entry = entry?;
            let path = entry.path();
            if entry.file_type()?.is_dir() {
                walk(root, &path, found)?;
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

/// Files that differ from what is generated: (relative path, reason).
fn differences(
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

fn write_all(out: &Path, files: &[GeneratedFile]) -> std::io::Result<usize> {
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
        let path = entry?.path();
        if path.is_dir() {
            remove_empty_dirs(&path)?;
        }
    }
    if std::fs::read_dir(dir)?.next().is_none() {
        std::fs::remove_dir(dir)?;
    }
    Ok(())
}

fn run(args: &Args, stdout: &mut impl Write) -> Result<bool, String> {
    let specs = Specs::load(&args.spec).map_err(|e| e.to_string())?;
    let files = generate(&specs).map_err(|e| e.to_string())?;
    let io = |e: std::io::Error| format!("{}: {e}", args.out.display());
    if args.check {
        let diffs = differences(&args.out, &files).map_err(io)?;
        if diffs.is_empty() {
            let _ = writeln!(
                stdout,
                "{} is up to date ({} files)",
                args.out.display(),
                files.len()
            );
            return Ok(true);
        }
        let mut text = format!("{} is stale:\n", args.out.display());
        for (path, reason) in diffs {
            text.push_str(&format!("  {path}: {reason}\n"));
        }
        text.push_str(&format!("refresh it with `{REFRESH}`"));
        return Err(text);
    }
    let changed = write_all(&args.out, &files).map_err(io)?;
    let _ = writeln!(
        stdout,
        "wrote {} ({} files, {changed} changed)",
        args.out.display(),
        files.len()
    );
    Ok(true)
}

fn main() -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let result = parse_args().and_then(|args| run(&args, &mut stdout.lock()));
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(stderr.lock(), "{message}");
            ExitCode::FAILURE
        }
    }
}
