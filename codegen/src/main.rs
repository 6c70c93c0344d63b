//! `chatbox-codegen`: writes (or, with `--check`, verifies) the `generated/` mirror of what the spec compiler emits.
//!
//! Usage: `cargo run -p chatbox-codegen -- [--spec spec] [--out generated] [--check]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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
