//! The published contract: the AsyncAPI document as written, and the OpenAPI document of the HTTP API with
//! the routes that the HTTP API does not serve itself (the WebSocket handshake) taken from the spec.

use std::sync::Arc;

use poem::handler;
use poem::web::Data;
use serde_json::Value;

/// The AsyncAPI document, served as written.
const ASYNCAPI_YAML: &str = include_str!("../../spec/asyncapi.yaml");

/// The OpenAPI document as written; only its protocol-upgrade paths are served from it.
const OPENAPI_YAML: &str = include_str!("../../spec/openapi.yaml");

#[handler]
pub fn asyncapi() -> poem::Response {
    poem::Response::builder()
        .content_type("application/yaml")
        .body(ASYNCAPI_YAML)
}

#[handler]
pub fn openapi_json(Data(spec): Data<&Arc<String>>) -> poem::Response {
    poem::Response::builder()
        .content_type("application/json")
        .body(spec.as_str().to_string())
}

/// The served OpenAPI JSON: the document poem-openapi derives from the endpoints (`generated`), plus every
/// path of the spec served outside the HTTP API (a `101 Switching Protocols` response, which the WebSocket
/// transport serves, or `x-outside-http-api: true`, the published schemas), the tags and the component
/// schemas those use. Falls back to `generated` unchanged if either document does not parse (the contract
/// test makes sure they do).
pub fn openapi_json_text(generated: &str) -> String {
    let (Ok(mut served), Ok(written)) = (
        serde_json::from_str::<Value>(generated),
        serde_norway::from_str::<Value>(OPENAPI_YAML),
    ) else {
        return generated.to_owned();
    };
    let mut tags = Vec::new();
    let mut refs = Vec::new();
    if let (Some(paths), Some(written_paths)) = (
        served.get_mut("paths").and_then(Value::as_object_mut),
        written.get("paths").and_then(Value::as_object),
    ) {
        for (path, item) in written_paths {
            let ops = item.as_object().into_iter().flat_map(|o| o.values());
            let upgrade: Vec<&Value> = ops.filter(|op| served_outside(op)).collect();
            if upgrade.is_empty() {
                continue;
            }
            for op in upgrade {
                tags.extend(op["tags"].as_array().into_iter().flatten().cloned());
            }
            collect_refs(item, &mut refs);
            paths.insert(path.clone(), item.clone());
        }
    }
    add_schemas(&mut served, &written, refs);
    let written_tags = written["tags"].as_array().cloned().unwrap_or_default();
    if let Some(served_tags) = served.get_mut("tags").and_then(Value::as_array_mut) {
        for tag in written_tags {
            let used = tags.iter().any(|t| *t == tag["name"]);
            let listed = served_tags.iter().any(|t| t["name"] == tag["name"]);
            if used && !listed {
                served_tags.push(tag);
            }
        }
    }
    serde_json::to_string_pretty(&served).unwrap_or_else(|_| generated.to_owned())
}

/// Whether an operation of the spec is served outside the HTTP API (poem-openapi does not describe it).
fn served_outside(op: &Value) -> bool {
    op.pointer("/responses/101").is_some() || op["x-outside-http-api"] == Value::Bool(true)
}

/// Every `#/components/schemas/<name>` that `value` references.
fn collect_refs(value: &Value, refs: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                match (key.as_str(), v) {
                    ("$ref", Value::String(target)) => {
                        if let Some(name) = target.strip_prefix("#/components/schemas/")
                            && !refs.iter().any(|r| r == name)
                        {
                            refs.push(name.to_owned());
                        }
                    }
                    _ => collect_refs(v, refs),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| collect_refs(v, refs)),
        _ => {}
    }
}

/// Adds the spec's component schemas named in `refs` (and those they reach) that `served` lacks.
fn add_schemas(served: &mut Value, written: &Value, mut refs: Vec<String>) {
    let mut i = 0;
    while i < refs.len() {
        let name = refs[i].clone();
        i += 1;
        let Some(schema) = written.pointer(&format!("/components/schemas/{name}")) else {
            continue;
        };
        collect_refs(schema, &mut refs);
        let Some(schemas) = served
            .pointer_mut("/components/schemas")
            .and_then(Value::as_object_mut)
        else {
            return;
        };
        if !schemas.contains_key(&name) {
            schemas.insert(name, schema.clone());
        }
    }
}
