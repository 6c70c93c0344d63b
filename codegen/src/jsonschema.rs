//! Emits one self-contained JSON Schema (draft 2020-12) per WebSocket message and per HTTP component schema.

use serde_json::{Map, Value, json};

use crate::model::{Doc, SCHEMA_REF, unescape};

const DRAFT: &str = "https://json-schema.org/draft/2020-12/schema";

/// Rewrites `#/components/schemas/X` refs to `#/$defs/X`, turns OpenAPI's `example` into `examples`, and
/// records every schema referenced.
fn rewrite(value: &Value, refs: &mut Vec<String>) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = Map::new();
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(target)) => {
                        let rewritten = match target.strip_prefix(SCHEMA_REF) {
                            Some(name) => {
                                let name = unescape(name);
                                if !refs.contains(&name) {
                                    refs.push(name.clone());
                                }
                                format!("#/$defs/{}", name.replace('~', "~0").replace('/', "~1"))
                            }
                            None => target.clone(),
                        };
                        out.insert(key.clone(), Value::String(rewritten));
                    }
                    ("example", example) if !map.contains_key("examples") => {
                        out.insert("examples".to_owned(), Value::Array(vec![example.clone()]));
                    }
                    _ => {
                        out.insert(key.clone(), rewrite(v, refs));
                    }
                }
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(|v| rewrite(v, refs)).collect()),
        other => other.clone(),
    }
}

/// The schema named `name` with every schema it reaches under `$defs`, as pretty JSON with a trailing newline.
pub(crate) fn standalone(doc: Doc<'_>, name: &str, title: &str, comment: &str) -> String {
    let root = doc
        .root
        .pointer(&crate::error::child("/components/schemas", name))
        .cloned()
        .unwrap_or(Value::Null);
    let mut refs = Vec::new();
    let body = rewrite(&root, &mut refs);
    let mut defs = Map::new();
    let mut i = 0;
    while i < refs.len() {
        let def_name = refs[i].clone();
        let raw = doc
            .root
            .pointer(&crate::error::child("/components/schemas", &def_name))
            .cloned()
            .unwrap_or(Value::Null);
        defs.insert(def_name, rewrite(&raw, &mut refs));
        i += 1;
    }
    let mut out = Map::new();
    out.insert("$schema".to_owned(), json!(DRAFT));
    out.insert("$comment".to_owned(), json!(comment));
    out.insert("title".to_owned(), json!(title));
    if let Value::Object(body) = body {
        for (k, v) in body {
            if k != "title" {
                out.insert(k, v);
            }
        }
    }
    if !defs.is_empty() {
        let mut sorted: Vec<(String, Value)> = defs.into_iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        out.insert(
            "$defs".to_owned(),
            Value::Object(sorted.into_iter().collect()),
        );
    }
    let mut text = serde_json::to_string_pretty(&Value::Object(out)).unwrap_or_default();
    text.push('\n');
    text
}
