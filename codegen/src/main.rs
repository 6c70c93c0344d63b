//! `chatbox-codegen`: writes (or, with `--check`, verifies) the `generated/` mirror of what the spec compiler emits.
//!
//! Usage: `cargo run -p chatbox-codegen -- [--spec spec] [--out generated] [--check]`, or
//! `cargo run -p chatbox-codegen -- compat --old OLD.yaml --new spec/asyncapi.yaml` to check the AsyncAPI
//! document for breaking changes against an earlier release (exit status 1 on a break without a major
//! version change).

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use chatbox_codegen::compat::check_asyncapi;
use chatbox_codegen::mirror::{REFRESH, differences, write_all};
use chatbox_codegen::{Specs, generate};

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

const COMPAT_USAGE: &str =
    "usage: chatbox-codegen compat --old OLD_ASYNCAPI.yaml --new NEW_ASYNCAPI.yaml";

/// `compat --old FILE --new FILE`: prints the report; `Ok(false)` when a break is not allowed.
fn compat(args: &[String], stdout: &mut impl Write) -> Result<bool, String> {
    let (mut old, mut new) = (None, None);
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--old" => old = Some(it.next().ok_or(COMPAT_USAGE)?.clone()),
            "--new" => new = Some(it.next().ok_or(COMPAT_USAGE)?.clone()),
            _ => return Err(format!("unknown argument {arg:?}; {COMPAT_USAGE}")),
        }
    }
    let (Some(old), Some(new)) = (old, new) else {
        return Err(COMPAT_USAGE.to_owned());
    };
    let read = |path: &str| std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"));
    let report =
        check_asyncapi(&read(&old)?, &old, &read(&new)?, &new).map_err(|e| e.to_string())?;
    let versions = format!(
        "info.version {} -> {}",
        report.old_version, report.new_version
    );
    if report.breaks.is_empty() {
        let _ = writeln!(
            stdout,
            "{new}: no breaking change against {old} ({versions})"
        );
        return Ok(true);
    }
    let mut text = format!(
        "{new}: {} breaking change(s) against {old}:\n",
        report.breaks.len()
    );
    for b in &report.breaks {
        text.push_str(&format!("  {}: {}\n", b.at, b.what));
    }
    if report.passes() {
        let _ = writeln!(
            stdout,
            "{text}allowed: the major version changed ({versions})"
        );
        return Ok(true);
    }
    Err(format!(
        "{text}not allowed: {versions} keeps the major version; restore compatibility or raise the major version"
    ))
}

fn main() -> ExitCode {
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = if argv.first().map(String::as_str) == Some("compat") {
        compat(&argv[1..], &mut stdout.lock())
    } else {
        parse_args().and_then(|args| run(&args, &mut stdout.lock()))
    };
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(stderr.lock(), "{message}");
            ExitCode::FAILURE
        }
    }
}
