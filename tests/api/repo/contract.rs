//! Contract tests: the AsyncAPI examples go through the generated types and back unchanged, the OpenAPI
//! document the server serves is equivalent to `spec/openapi.yaml`, and `generated/` is fresh.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

use chatbox::protocol::ws::{ClientMessage, ServerMessage};

use crate::support::app::spawn_app;
use crate::support::http::get_json;

fn specs() -> chatbox_codegen::Specs {
    chatbox_codegen::Specs::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("spec")).unwrap()
}

/// Follows a local `$ref` such as `#/components/messages/UserMessage` or `#/channels/chat/messages/X`.
fn resolve<'a>(root: &'a Value, reference: &str) -> &'a Value {
    let pointer = reference.trim_start_matches('#');
    root.pointer(pointer)
        .unwrap_or_else(|| panic!("broken $ref {reference}"))
}

fn message_components<'a>(root: &'a Value, operation: &str) -> Vec<&'a Value> {
    root["operations"][operation]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let mut target = resolve(root, m["$ref"].as_str().unwrap());
            while let Some(next) = target.get("$ref").and_then(Value::as_str) {
                target = resolve(root, next);
            }
            target
        })
        .collect()
}

#[test]
fn every_asyncapi_example_round_trips_through_the_generated_types() {
    let specs = specs();
    let root = specs.asyncapi();
    let mut checked = 0;
    for (operation, client) in [("receiveClientMessage", true), ("sendServerMessage", false)] {
        for message in message_components(root, operation) {
            let name = message["name"].as_str().unwrap();
            let examples = message["examples"]
                .as_array()
                .unwrap_or_else(|| panic!("{name} has no example"));
            assert!(!examples.is_empty(), "{name} has no example");
            for example in examples {
                let payload = &example["payload"];
                let encoded = if client {
                    let decoded: ClientMessage = serde_json::from_value(payload.clone())
                        .unwrap_or_else(|e| {
                            panic!("client example of {name} does not decode: {e}")
                        });
                    decoded
                        .validate()
                        .unwrap_or_else(|e| panic!("client example of {name}: {e}"));
                    serde_json::to_value(&decoded).unwrap()
                } else {
                    let decoded: ServerMessage = serde_json::from_value(payload.clone())
                        .unwrap_or_else(|e| {
                            panic!("server example of {name} does not decode: {e}")
                        });
                    decoded
                        .validate()
                        .unwrap_or_else(|e| panic!("server example of {name}: {e}"));
                    serde_json::to_value(&decoded).unwrap()
                };
                assert_eq!(
                    &encoded, payload,
                    "example of {name} changes in a round trip"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 26, "only {checked} examples");
}

#[test]
fn generated_mirror_is_fresh() {
    let files = chatbox_codegen::generate(&specs()).unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("generated");
    let diffs = chatbox_codegen::mirror::differences(&dir, &files).unwrap();
    assert!(
        diffs.is_empty(),
        "generated/ is stale: {diffs:?}; refresh it with:\n    {}",
        chatbox_codegen::mirror::REFRESH
    );
}

/// A comparable digest of an OpenAPI document: operations (parameters, statuses, media types, schema
/// names, headers, security) and component schemas (properties, types, required, enums). Descriptions,
/// examples and formatting details are not part of the contract.
fn digest(doc: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    let schemas = &doc["components"]["schemas"];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if !["get", "post", "put", "patch", "delete"].contains(&method.as_str()) {
                continue;
            }
            let mut params: Vec<Value> = op["parameters"]
                .as_array()
                .map(|ps| {
                    ps.iter()
                        .map(|p| {
                            json!({
                                "name": p["name"], "in": p["in"],
                                "required": p["required"].as_bool().unwrap_or(false),
                                "type": shape(&p["schema"], schemas),
                            })
                        })
                        .collect()
                })
                .unwrap_or_default();
            params.sort_by_key(|p| p["name"].as_str().unwrap_or_default().to_string());
            let mut responses = BTreeMap::new();
            for (status, response) in op["responses"].as_object().unwrap() {
                let content: BTreeMap<String, Value> = response["content"]
                    .as_object()
                    .map(|c| {
                        c.iter()
                            .map(|(media, m)| {
                                // `application/json; charset=utf-8` is `application/json`.
                                let media = media
                                    .split(';')
                                    .next()
                                    .unwrap_or_default()
                                    .trim()
                                    .to_string();
                                (media, shape(&m["schema"], schemas))
                            })
                            .collect()
                    })
                    .unwrap_or_default();
                let mut headers: Vec<String> = response["headers"]
                    .as_object()
                    .map(|h| h.keys().map(|k| k.to_ascii_lowercase()).collect())
                    .unwrap_or_default();
                headers.sort();
                responses.insert(
                    status.clone(),
                    json!({"content": content, "headers": headers}),
                );
            }
            let mut tags: Vec<String> = op["tags"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|v| v.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default();
            tags.sort();
            let secured = op["security"].as_array().is_some_and(|s| !s.is_empty());
            out.insert(
                format!("{} {path}", method.to_uppercase()),
                json!({
                    "operationId": op["operationId"],
                    "tags": tags,
                    "parameters": params,
                    "requestBody": op.get("requestBody").is_some(),
                    "responses": responses,
                    "secured": secured,
                }),
            );
        }
    }
    for (name, schema) in schemas.as_object().unwrap() {
        if is_plain_map(schema) {
            continue;
        }
        out.insert(format!("schema {name}"), shape_object(schema, schemas));
    }
    let scheme = &doc["components"]["securitySchemes"]["bearerAuth"];
    out.insert(
        "securityScheme bearerAuth".into(),
        json!({"type": scheme["type"], "scheme": scheme["scheme"].as_str().map(str::to_ascii_lowercase)}),
    );
    out
}

fn is_plain_map(schema: &Value) -> bool {
    schema.get("properties").is_none()
        && schema
            .get("additionalProperties")
            .is_some_and(Value::is_object)
}

fn shape_object(schema: &Value, schemas: &Value) -> Value {
    if let Some(values) = schema.get("enum") {
        return json!({"enum": values});
    }
    let mut required: Vec<String> = schema["required"]
        .as_array()
        .map(|r| {
            r.iter()
                .filter_map(|v| v.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    required.sort();
    let properties: BTreeMap<String, Value> = schema["properties"]
        .as_object()
        .map(|p| {
            p.iter()
                .map(|(k, v)| (k.clone(), shape(v, schemas)))
                .collect()
        })
        .unwrap_or_default();
    json!({"type": schema["type"], "properties": properties, "required": required})
}

/// The type of a property or parameter: a schema name, a primitive type, a list or a map of those.
fn shape(schema: &Value, schemas: &Value) -> Value {
    if let Some(reference) = schema.get("$ref").and_then(Value::as_str) {
        let name = reference.rsplit('/').next().unwrap_or_default();
        let target = &schemas[name];
        if is_plain_map(target) {
            return shape(target, schemas);
        }
        return json!({"ref": name});
    }
    // poem-openapi wraps a described reference as `allOf: [{$ref}, {description}]`.
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        let typed: Vec<&Value> = all
            .iter()
            .filter(|s| s.get("$ref").is_some() || s.get("type").is_some())
            .collect();
        if typed.len() == 1 {
            return shape(typed[0], schemas);
        }
    }
    match schema["type"].as_str() {
        Some("array") => json!({"array": shape(&schema["items"], schemas)}),
        Some("object") if is_plain_map(schema) => {
            json!({"map": shape(&schema["additionalProperties"], schemas)})
        }
        Some("integer") => json!("integer"),
        Some(other) => json!(other),
        None => json!("any"),
    }
}

#[tokio::test]
async fn the_served_openapi_document_is_equivalent_to_the_spec() {
    let app = spawn_app().await;
    let served = get_json(&format!("{}/openapi.json", app.base), None).await;
    let specs = specs();
    let spec = specs.openapi();
    assert_eq!(served["servers"][0]["url"], spec["servers"][0]["url"]);
    let served = digest(&served);
    let expected = digest(spec);
    let missing: Vec<_> = expected
        .keys()
        .filter(|k| !served.contains_key(*k))
        .collect();
    let extra: Vec<_> = served
        .keys()
        .filter(|k| !expected.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing from the server: {missing:?}\nnot in the spec: {extra:?}"
    );
    for (key, value) in &expected {
        assert_eq!(
            &served[key], value,
            "{key} differs between the server and spec/openapi.yaml"
        );
    }
}

#[tokio::test]
async fn the_server_publishes_its_contract() {
    let app = spawn_app().await;
    let yaml = app
        .http
        .get(format!("{}/asyncapi.yaml", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(yaml.status(), 200);
    let text = yaml.text().await.unwrap();
    assert_eq!(
        text,
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("spec/asyncapi.yaml"))
            .unwrap()
    );
    let docs = app
        .http
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(docs.status(), 200);
    assert!(
        docs.text().await.unwrap().contains("swagger"),
        "Swagger UI page"
    );
}
