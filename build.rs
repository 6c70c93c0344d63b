//! Compiles `spec/` into the Rust wire types (`$OUT_DIR/protocol.rs`, included by `src/protocol/`) and the
//! HTTP operation layer (`$OUT_DIR/operations.rs`, included by `src/api/operations.rs`).
//! Writes nothing outside `OUT_DIR`; `generated/` is refreshed by `cargo run -p chatbox-codegen`.

use std::path::{Path, PathBuf};

#[allow(
    clippy::print_stdout,
    reason = "cargo reads build-script directives from stdout"
)]
fn main() {
    println!("cargo:rerun-if-changed=spec/");
    let specs = match chatbox_codegen::Specs::load(Path::new("spec")) {
        Ok(specs) => specs,
        Err(error) => panic!("{error}"),
    };
    let rust = match chatbox_codegen::generate_rust(&specs) {
        Ok(rust) => rust,
        Err(error) => panic!("{error}"),
    };
    let out_dir = std::env::var_os("OUT_DIR").map(PathBuf::from);
    let Some(out_dir) = out_dir else {
        panic!("OUT_DIR is not set")
    };
    for (name, contents) in [
        ("protocol.rs", rust.protocol),
        ("operations.rs", rust.operations),
    ] {
        if let Err(error) = std::fs::write(out_dir.join(name), contents) {
            panic!("{}: {error}", out_dir.join(name).display());
        }
    }
}
