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

fn generated_schema(name: &str) -> String {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("generated/schemas");
    let file = format!("{name}.json");
    std::fs::read_to_string(dir.join("ws").join(&file))
        .or_else(|_| std::fs::read_to_string(dir.join("http").join(&file)))
        .unwrap()
}

#[tokio::test]
async fn the_server_lists_every_generated_json_schema() {
    let app = spawn_app().await;
    let list = crate::support::http::call(&app, reqwest::Method::GET, "/schemas/", None).await;
    assert_eq!(list.status, 200);
    let entries = list.body["schemas"].as_array().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("generated/schemas");
    let mut expected: Vec<String> = ["ws", "http"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(dir.join(sub)).unwrap())
        .map(|e| {
            e.unwrap()
                .file_name()
                .to_string_lossy()
                .trim_end_matches(".json")
                .to_string()
        })
        .collect();
    expected.sort();
    let names: Vec<&str> = entries
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, expected);
    assert_eq!(
        entries[0]["url"],
        format!("/chatbox/schemas/{}.json", names[0])
    );
}

#[tokio::test]
async fn each_schema_is_served_as_generated_with_an_etag_and_cache_control() {
    let app = spawn_app().await;
    for name in ["ai_response.server", "user_message.client", "ErrorBody"] {
        let url = format!("{}/schemas/{name}.json", app.base);
        let response = app.http.get(&url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{name}");
        let headers = response.headers().clone();
        assert_eq!(headers["content-type"], "application/schema+json");
        assert_eq!(headers["cache-control"], "public, max-age=300");
        let etag = headers["etag"].to_str().unwrap().to_string();
        assert!(etag.starts_with('"') && etag.ends_with('"'), "{etag}");
        assert_eq!(response.text().await.unwrap(), generated_schema(name));
        let again = app
            .http
            .get(&url)
            .header("if-none-match", &etag)
            .send()
            .await
            .unwrap();
        assert_eq!(again.status(), 304);
        assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
        assert!(again.text().await.unwrap().is_empty());
        let stale = app
            .http
            .get(&url)
            .header("if-none-match", "\"stale\"")
            .send()
            .await
            .unwrap();
        assert_eq!(stale.status(), 200);
    }
}

#[tokio::test]
async fn an_unknown_schema_name_or_a_path_outside_the_schemas_is_not_found() {
    let app = spawn_app().await;
    for path in [
        "/schemas/NoSuchSchema.json",
        "/schemas/ErrorBody",
        "/schemas/..%2F..%2FCargo.toml",
        "/schemas/..%2Fspec%2Fopenapi.yaml.json",
        "/schemas/%2Fetc%2Fpasswd.json",
    ] {
        let answer = crate::support::http::call(&app, reqwest::Method::GET, path, None).await;
        assert_eq!(answer.status, 404, "{path}");
        assert_eq!(answer.body["code"], "NOT_FOUND", "{path}");
        assert_eq!(answer.body["error"], "Schema not found", "{path}");
    }
}

#[test]
fn the_schema_checks_of_the_test_clients_reject_what_breaks_a_schema() {
    use crate::support::schemas::{assert_frame, assert_response, response_schema};
    assert_frame(&json!({"type": "pong", "sender": "system", "timestamp": "2024-01-01T00:00:00Z"}));
    for bad in [
        json!({"type": "pong", "sender": "system", "timestamp": "not a time"}),
        json!({"type": "pong", "sender": "robot", "timestamp": "2024-01-01T00:00:00Z"}),
        json!({"type": "no_such_frame"}),
        json!({"content": "no type"}),
    ] {
        let failed = std::panic::catch_unwind(|| assert_frame(&bad));
        assert!(failed.is_err(), "accepted {bad}");
    }
    assert_eq!(
        response_schema("GET", "/sessions?limit=2", 200),
        Some("SessionListResponse")
    );
    assert_eq!(
        response_schema("GET", "/sessions/abc", 404),
        Some("ErrorBody")
    );
    assert_eq!(
        response_schema("GET", "/admin/sessions", 200),
        Some("AdminSessionListResponse")
    );
    assert_eq!(response_schema("GET", "/metrics/prometheus", 200), None);
    let failed = std::panic::catch_unwind(|| {
        assert_response(
            "GET",
            "/sessions/abc",
            404,
            &json!({"error": "x", "code": "NOPE"}),
        )
    });
    assert!(failed.is_err());
}
