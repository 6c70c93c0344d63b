//! Spec compiler: reads `spec/asyncapi.yaml` and `spec/openapi.yaml` and emits Rust wire types, Markdown
//! references, JSON Schemas and the TypeScript client package, following `docs/contract.md`.
//!
//! The compiler is pure: [`generate`] maps [`Specs`] to a sorted list of [`GeneratedFile`]s, byte-identical for
//! identical input. `build.rs` writes only `rust/protocol.rs` (to `OUT_DIR`); the binary mirrors everything
//! into `generated/`. [`compat`] compares the AsyncAPI document with an earlier release for breaking changes.

mod asyncapi;
pub mod compat;
mod error;
mod jsonschema;
mod markdown;
pub mod mirror;
mod model;
mod names;
mod openapi;
mod operations;
mod rust;
mod typescript;
mod yaml;

#[cfg(test)]
mod compat_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod typescript_tests;

use std::path::Path;

use serde_json::Value;

pub use error::SpecError;

use crate::asyncapi::Direction;
use crate::model::Doc;

/// The two documents, parsed from YAML, with the labels used in errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Specs {
    asyncapi: Value,
    openapi: Value,
    asyncapi_file: String,
    openapi_file: String,
}

impl Specs {
    /// Parses both documents from YAML text; errors name them `spec/asyncapi.yaml` and `spec/openapi.yaml`.
    pub fn from_yaml(asyncapi: &str, openapi: &str) -> Result<Self, SpecError> {
        Self::from_yaml_named(asyncapi, "spec/asyncapi.yaml", openapi, "spec/openapi.yaml")
    }

    /// Parses both documents from YAML text with the given file labels (used in every error message).
    pub fn from_yaml_named(
        asyncapi: &str,
        asyncapi_file: &str,
        openapi: &str,
        openapi_file: &str,
    ) -> Result<Self, SpecError> {
        Ok(Self {
            asyncapi: yaml::parse(asyncapi_file, asyncapi)?,
            openapi: yaml::parse(openapi_file, openapi)?,
            asyncapi_file: asyncapi_file.to_owned(),
            openapi_file: openapi_file.to_owned(),
        })
    }

    /// Reads `asyncapi.yaml` and `openapi.yaml` from `dir`.
    pub fn load(dir: &Path) -> Result<Self, SpecError> {
        let read = |name: &str| {
            let path = dir.join(name);
            let label = path.display().to_string();
            std::fs::read_to_string(&path)
                .map(|text| (text, label.clone()))
                .map_err(|source| SpecError::Io {
                    file: label,
                    source,
                })
        };
        let (asyncapi, asyncapi_file) = read("asyncapi.yaml")?;
        let (openapi, openapi_file) = read("openapi.yaml")?;
        Self::from_yaml_named(&asyncapi, &asyncapi_file, &openapi, &openapi_file)
    }

    /// The AsyncAPI document as JSON.
    pub fn asyncapi(&self) -> &Value {
        &self.asyncapi
    }

    /// The OpenAPI document as JSON.
    pub fn openapi(&self) -> &Value {
        &self.openapi
    }
}

/// One output file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneratedFile {
    /// Path relative to the output directory, with `/` separators (e.g. `rust/protocol.rs`).
    pub path: String,
    /// Full contents.
    pub contents: String,
}

/// The path of the Rust output, the one file `build.rs` writes.
pub const RUST_PATH: &str = "rust/protocol.rs";

/// Where the HTTP operation layer goes among the outputs.
pub const OPERATIONS_PATH: &str = "rust/operations.rs";

/// Compiles both documents into every output file, sorted by path.
pub fn generate(specs: &Specs) -> Result<Vec<GeneratedFile>, SpecError> {
    let ws_doc = Doc {
        file: &specs.asyncapi_file,
        root: &specs.asyncapi,
    };
    let http_doc = Doc {
        file: &specs.openapi_file,
        root: &specs.openapi,
    };
    let ws = asyncapi::parse(ws_doc)?;
    let http = openapi::parse(http_doc)?;

    let mut files = vec![
        GeneratedFile {
            path: RUST_PATH.to_owned(),
            contents: rust::emit(&ws, &http)?,
        },
        GeneratedFile {
            path: OPERATIONS_PATH.to_owned(),
            contents: operations::emit(&http)?,
        },
        GeneratedFile {
            path: "docs/websocket.md".to_owned(),
            contents: markdown::websocket(&ws, "spec/asyncapi.yaml"),
        },
        GeneratedFile {
            path: "docs/http.md".to_owned(),
            contents: markdown::http(&http, "spec/openapi.yaml"),
        },
    ];
    files.extend(typescript::emit(&ws, &http));
    for (direction, list) in [
        (Direction::Client, &ws.client),
        (Direction::Server, &ws.server),
    ] {
        for message in list {
            let arrow = match direction {
                Direction::Client => "client to server",
                Direction::Server => "server to client",
            };
            let comment = format!(
                "Generated from spec/asyncapi.yaml (message \"{}\", {arrow}, schema {}). Do not edit.",
                message.name, message.schema
            );
            files.push(GeneratedFile {
                path: format!("schemas/ws/{}.{}.json", message.name, direction.as_str()),
                contents: jsonschema::standalone(ws_doc, &message.schema, &message.name, &comment),
            });
        }
    }
    for schema in &http.schemas {
        let comment = format!(
            "Generated from spec/openapi.yaml (schema {}). Do not edit.",
            schema.name
        );
        files.push(GeneratedFile {
            path: format!("schemas/http/{}.json", schema.name),
            contents: jsonschema::standalone(http_doc, &schema.name, &schema.name, &comment),
        });
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(files)
}
