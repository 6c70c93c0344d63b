//! What the server sends, checked against the published JSON Schemas of `generated/schemas/`: every WebSocket
//! text frame the test client receives (by its `type`, `ws/<type>.server.json`) and every JSON body the HTTP
//! helpers receive (by operation and status, through `spec/openapi.yaml`, `http/<Schema>.json`). A frame or
//! body that does not match fails the test with the schema error.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use jsonschema::Validator;
use serde_json::Value;

fn generated(dir: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("generated/schemas")
        .join(dir)
}

/// Compiles one schema file (formats such as `date-time` are asserted, not just annotations).
fn compile(path: &Path) -> Validator {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let schema: Value = serde_json::from_str(&text).unwrap();
    jsonschema::options()
        .should_validate_formats(true)
        .build(&schema)
        .unwrap_or_else(|e| panic!("{} does not compile: {e}", path.display()))
}

/// Server-to-client frame schemas by `type`.
fn frame_validators() -> &'static HashMap<String, Validator> {
    static CELL: OnceLock<HashMap<String, Validator>> = OnceLock::new();
    CELL.get_or_init(|| {
        let mut map = HashMap::new();
        for entry in std::fs::read_dir(generated("ws")).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if let Some(kind) = name.strip_suffix(".server.json") {
                map.insert(kind.to_owned(), compile(&path));
            }
        }
        assert!(
            !map.is_empty(),
            "no server frame schemas in generated/schemas/ws"
        );
        map
    })
}

/// Every error of `instance` against `validator`, one per line, with the instance path.
fn errors(validator: &Validator, instance: &Value) -> Option<String> {
    let lines: Vec<String> = validator
        .iter_errors(instance)
        .map(|e| format!("  at {:?}: {e}", e.instance_path().as_str()))
        .collect();
    (!lines.is_empty()).then(|| lines.join("\n"))
}

/// Fails unless `frame` (a text frame the server sent) matches the published schema of its `type`.
pub fn assert_frame(frame: &Value) {
    let Some(kind) = frame["type"].as_str() else {
        panic!("server frame without a string `type`: {frame}");
    };
    let Some(validator) = frame_validators().get(kind) else {
        panic!("server frame of type {kind:?} has no schema in generated/schemas/ws: {frame}");
    };
    if let Some(problems) = errors(validator, frame) {
        panic!(
            "server frame does not match generated/schemas/ws/{kind}.server.json:\n{problems}\nframe: {frame}"
        );
    }
}

/// One documented JSON response: the template's segments and the schema name, by method and status.
struct Route {
    method: String,
    segments: Vec<String>,
    status: u16,
    schema: String,
}

/// The JSON responses of `spec/openapi.yaml`, and the compiled schemas they name.
struct HttpSchemas {
    routes: Vec<Route>,
    validators: HashMap<String, Validator>,
}

fn http_schemas() -> &'static HttpSchemas {
    static CELL: OnceLock<HttpSchemas> = OnceLock::new();
    CELL.get_or_init(|| {
        let spec_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("spec");
        let specs = chatbox_codegen::Specs::load(&spec_dir).unwrap();
        let doc = specs.openapi();
        let mut routes = Vec::new();
        for (path, item) in doc["paths"].as_object().unwrap() {
            for (method, op) in item.as_object().unwrap() {
                let Some(responses) = op["responses"].as_object() else {
                    continue;
                };
                for (status, response) in responses {
                    let response = match response["$ref"].as_str() {
                        Some(r) => doc.pointer(r.trim_start_matches('#')).unwrap(),
                        None => response,
                    };
                    let schema = &response["content"]["application/json"]["schema"]["$ref"];
                    let Some(schema) = schema.as_str() else {
                        continue;
                    };
                    routes.push(Route {
                        method: method.to_ascii_uppercase(),
                        segments: path.split('/').map(str::to_owned).collect(),
                        status: status.parse().unwrap(),
                        schema: schema.rsplit('/').next().unwrap().to_owned(),
                    });
                }
            }
        }
        let validators = routes
            .iter()
            .map(|r| r.schema.clone())
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .map(|name| {
                let file = generated("http").join(format!("{name}.json"));
                (name, compile(&file))
            })
            .collect();
        HttpSchemas { routes, validators }
    })
}

/// Whether `path` (below the prefix, without the query) matches the template's segments.
fn matches(template: &[String], path: &[&str]) -> bool {
    template.len() == path.len()
        && template
            .iter()
            .zip(path)
            .all(|(t, p)| (t.starts_with('{') && t.ends_with('}')) || t == p)
}

/// The schema that documents `status` of `method path` (below the prefix; a query string is ignored), if
/// the spec has that operation and gives that status a JSON body.
pub fn response_schema(method: &str, path: &str, status: u16) -> Option<&'static str> {
    let path = path.split('?').next().unwrap_or_default();
    let segments: Vec<&str> = path.split('/').collect();
    let routes = &http_schemas().routes;
    // A template without parameters wins over one with (`/admin/sessions` over `/sessions/{id}`-like).
    let mut candidates: Vec<&Route> = routes
        .iter()
        .filter(|r| r.method == method && r.status == status && matches(&r.segments, &segments))
        .collect();
    candidates.sort_by_key(|r| r.segments.iter().filter(|s| s.starts_with('{')).count());
    candidates.first().map(|r| r.schema.as_str())
}

/// Fails unless a JSON `body` of `status` to `method path` matches the schema the spec gives it. Bodies of
/// routes or statuses the spec gives no JSON schema (text, empty, `/openapi.json`) are not checked.
pub fn assert_response(method: &str, path: &str, status: u16, body: &Value) {
    if body.is_null() {
        return;
    }
    let Some(name) = response_schema(method, path, status) else {
        return;
    };
    let validator = &http_schemas().validators[name];
    if let Some(problems) = errors(validator, body) {
        panic!(
            "{status} body of {method} {path} does not match generated/schemas/http/{name}.json:\n{problems}\nbody: {body}"
        );
    }
}
