//! `{P}/healthz` and `{P}/readyz`: the reference bodies, readiness of the store, 503 with the reference body
//! when the store is unreachable and while the server drains.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{TestApp, app, spawn_app, stopped, without_database};
use crate::support::http::call;
use crate::support::wait::eventually_async;

/// `GET path` without a token: the status and the JSON body (which a probe always has).
async fn get(app: &TestApp, path: &str) -> (u16, Value) {
    let answer = call(app, Method::GET, path, None).await;
    assert!(
        answer.body.is_object(),
        "{path}: not a JSON body: {answer:?}"
    );
    (answer.status, answer.body)
}

/// A UTC RFC 3339 timestamp with whole seconds, as the Go service writes them.
fn assert_timestamp(value: &Value) {
    let text = value.as_str().unwrap();
    let parsed =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(parsed.offset(), time::UtcOffset::UTC, "{text}");
    assert!(text.ends_with('Z') && !text.contains('.'), "{text}");
}

#[tokio::test]
async fn healthz_answers_healthy_with_a_timestamp() {
    let app = spawn_app().await;
    let (status, body) = get(&app, "/healthz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "healthy");
    assert_timestamp(&body["timestamp"]);
    assert_eq!(body.as_object().unwrap().len(), 2, "{body}");
    app.stop().await;
}

#[tokio::test]
async fn readyz_reports_the_store_and_the_providers() {
    let app = spawn_app().await;
    let (status, mut body) = get(&app, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_timestamp(&body["timestamp"]);
    body["timestamp"] = Value::Null;
    assert_eq!(
        body,
        json!({
            "status": "ready",
            "timestamp": null,
            "checks": {
                "mongodb": { "status": "ready" },
                "llm": { "status": "ready", "providers_count": 1 },
            },
        })
    );
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_503_with_the_reference_body_when_the_store_is_unreachable() {
    let app = without_database().await;
    let (status, mut body) = get(&app, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_timestamp(&body["timestamp"]);
    body["timestamp"] = Value::Null;
    assert_eq!(
        body,
        json!({
            "status": "not ready",
            "timestamp": null,
            "checks": {
                "mongodb": { "status": "not ready", "reason": "Database connectivity check failed" },
                "llm": { "status": "ready", "providers_count": 1 },
            },
        })
    );
    let (status, _) = get(&app, "/healthz").await;
    assert_eq!(status, 200, "liveness does not depend on the store");
    app.stop().await;
}

#[tokio::test]
async fn readyz_is_503_while_the_server_drains() {
    let mut app = app()
        .slow_answers(50, "20s")
        .env("PUBLIC_RATE_LIMIT", "100000")
        .spawn()
        .await;
    let (status, _) = get(&app, "/readyz").await;
    assert_eq!(status, 200);
    let (_, mut ws) = app.turn_in_flight("drain", "keep the server busy").await;
    let server = app.signal_stop().unwrap();
    let body = eventually_async("readyz to answer 503 while draining", async || {
        let (status, body) = get(&app, "/readyz").await;
        (status == 503).then_some(body)
    })
    .await;
    assert_eq!(body["status"], "not ready");
    assert_eq!(
        body["checks"]["mongodb"]["status"], "ready",
        "the store is fine; the server is draining"
    );
    ws.recv_turn().await;
    stopped(server).await;
}

#[tokio::test]
async fn readyz_says_no_llm_providers_configured_when_none_can_serve() {
    let fake = crate::support::fake_llm::FakeLlm::start().await;
    fake.script([crate::support::fake_llm::Fault::status(500)]);
    let toml = format!(
        r#"
[llm.retry]
max_attempts = 1

[llm.breaker]
failure_threshold = 1
cool_down = "1h"

[[llm.providers]]
id = "gpt"
name = "GPT"
type = "openai"
endpoint = "{}"
model = "fake-model"
apiKey = "sk-fake"
"#,
        fake.base_url()
    );
    let app = app().toml(&toml).spawn().await;
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["checks"]["llm"]["providers_count"], 1);
    // One failed turn opens the only provider's breaker.
    let mut ws = app.connect_ws(&app.user_token("unlucky")).await;
    ws.recv().await;
    ws.send(json!({"type": "user_message", "content": "hello?"}))
        .await;
    ws.recv_until("error").await;
    let (status, body) = get(&app, "/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(
        body["checks"]["llm"],
        json!({ "status": "not ready", "reason": "No LLM providers configured" })
    );
    assert_eq!(body["checks"]["mongodb"]["status"], "ready");
    app.stop().await;
}
