//! Helpers of the HTTP API tests: requests with a token, sessions created through real chat turns or
//! directly in the store (with the devices that act on them), and Prometheus figures.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};

use chatbox::store::{MessageRecord, TurnUsage};

use crate::support::app::{FRAME_DEADLINE, TestApp, WsClient};
use crate::support::schemas::assert_response;

/// An HTTP answer: status, `Retry-After`, `X-Request-Id`, and the body as JSON (`Null` when not JSON).
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub retry_after: Option<String>,
    pub request_id: Option<String>,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

/// Sends `method path` (below the prefix) with an optional bearer token. A JSON body must match the schema
/// the spec gives that operation and status (`support::schemas::assert_response`); so must every answer below.
pub async fn call(app: &TestApp, method: Method, path: &str, token: Option<&str>) -> Answer {
    let method_name = method.to_string();
    let mut request = app.http.request(method, format!("{}{path}", app.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let answer = answer(request.send().await.unwrap()).await;
    assert_response(&method_name, path, answer.status, &answer.body);
    answer
}

/// Sends `method path` with a raw `Authorization` header value.
pub async fn call_with_header(
    app: &TestApp,
    method: Method,
    path: &str,
    authorization: &str,
) -> Answer {
    let method_name = method.to_string();
    let request = app
        .http
        .request(method, format!("{}{path}", app.base))
        .header("authorization", authorization);
    let answer = answer(request.send().await.unwrap()).await;
    assert_response(&method_name, path, answer.status, &answer.body);
    answer
}

/// GETs an absolute `url` (with `token` as bearer, if any) and returns its JSON body, whatever the status.
pub async fn get_json(url: &str, token: Option<&str>) -> Value {
    let mut request = reqwest::Client::new().get(url).timeout(FRAME_DEADLINE);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    request.send().await.unwrap().json().await.unwrap()
}

async fn answer(response: reqwest::Response) -> Answer {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let header = |name: &str| headers.get(name).map(|v| v.to_str().unwrap().to_string());
    let retry_after = header("retry-after");
    let request_id = header("x-request-id");
    let text = response.text().await.unwrap();
    Answer {
        status,
        retry_after,
        request_id,
        body: serde_json::from_str(&text).unwrap_or(Value::Null),
        headers,
    }
}

pub async fn get(app: &TestApp, path: &str, token: &str) -> Answer {
    call(app, Method::GET, path, Some(token)).await
}

pub async fn post(app: &TestApp, path: &str, token: &str) -> Answer {
    call(app, Method::POST, path, Some(token)).await
}

pub async fn delete(app: &TestApp, path: &str, token: &str) -> Answer {
    call(app, Method::DELETE, path, Some(token)).await
}

/// The `content` of every message of a session detail, in order.
pub fn message_contents(detail: &Value) -> Vec<&str> {
    detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect()
}

/// Asserts an `ErrorBody` answer: status, text and code, with the request id of the response header.
pub fn assert_error(answer: &Answer, status: u16, error: &str, code: &str) {
    assert_eq!(answer.status, status, "{answer:?}");
    assert_eq!(answer.body["error"], error, "{answer:?}");
    assert_eq!(answer.body["code"], code, "{answer:?}");
    let id = answer.body["request_id"]
        .as_str()
        .expect("request_id in the body");
    assert_eq!(
        Some(id),
        answer.request_id.as_deref(),
        "body and header carry the same request id"
    );
}

/// The first frame of a connection (`connection_status`).
pub async fn status(ws: &mut WsClient) -> Value {
    let frame = ws.recv().await;
    assert_eq!(frame["type"], "connection_status", "{frame}");
    frame
}

/// Runs one chat turn for `user` over a fresh WebSocket and returns the session id.
pub async fn chat_turn(app: &TestApp, user: &str, content: &str) -> String {
    let (ws, id) = chat_turn_open(app, user, content).await;
    ws.close().await;
    id
}

/// [`chat_turn`], keeping the WebSocket open: returns it and the session id.
pub async fn chat_turn_open(app: &TestApp, user: &str, content: &str) -> (WsClient, String) {
    let mut ws = app.connect_ws(&app.user_token(user)).await;
    status(&mut ws).await;
    ws.send(json!({"type": "user_message", "content": content}))
        .await;
    let frames = ws.recv_turn().await;
    let last = frames.last().unwrap();
    assert_eq!(last["metadata"]["done"], "true", "{frames:?}");
    let id = last["session_id"].as_str().unwrap().to_string();
    (ws, id)
}

/// Two devices of `user` (a phone and a laptop) after one turn sent from the phone and seen through by
/// both: the phone, the laptop and the session id.
pub async fn two_devices_after_one_turn(
    app: &TestApp,
    user: &str,
    content: &str,
) -> (WsClient, WsClient, String) {
    let token = app.user_token(user);
    let mut phone = app.connect_ws(&token).await;
    let mut laptop = app.connect_ws(&token).await;
    status(&mut phone).await;
    status(&mut laptop).await;
    phone
        .send(json!({"type": "user_message", "content": content}))
        .await;
    let turn = phone.recv_turn().await;
    let id = turn.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    laptop.recv_turn().await;
    (phone, laptop, id)
}

/// The next frame of type `kind`, asserting that the AI stayed silent until then (no `loading`, no
/// `ai_response`), as it must while an administrator assists.
pub async fn recv_quietly(ws: &mut WsClient, kind: &str) -> Value {
    let frames = ws.recv_until(kind).await;
    for frame in &frames {
        assert!(
            frame["type"] != "loading" && frame["type"] != "ai_response",
            "the AI must stay silent while an admin assists: {frames:?}"
        );
    }
    frames.last().unwrap().clone()
}

/// Creates the active session of `user` directly in the store with a user message and an answer, and
/// records a turn's usage; returns the session id.
pub async fn stored_session(
    app: &TestApp,
    user: &str,
    text: &str,
    tokens: i64,
    response_ms: i64,
) -> String {
    let store = &app.state.store;
    let active = store
        .get_or_create_active(user, None, "demo")
        .await
        .unwrap();
    let id = active.session.id.clone();
    let base = active.session.last_seq;
    store
        .append_message(
            &id,
            &MessageRecord::new(format!("u{base}"), base + 1, "user", text),
        )
        .await
        .unwrap();
    store
        .append_message(
            &id,
            &MessageRecord::new(
                format!("a{base}"),
                base + 2,
                "ai",
                format!("Answer to {text}"),
            ),
        )
        .await
        .unwrap();
    store.set_name(&id, text).await.unwrap();
    store
        .record_usage(
            &id,
            TurnUsage {
                tokens,
                response_ms,
                at: chatbox::store::now(),
            },
        )
        .await
        .unwrap();
    id
}

/// Ends a session directly in the store.
pub async fn end_in_store(app: &TestApp, session_id: &str) {
    app.state
        .store
        .end_session(session_id, chatbox::store::now())
        .await
        .unwrap();
}

/// The Prometheus exposition (requested from 127.0.0.1, inside the default allow-list).
pub async fn prometheus(app: &TestApp) -> String {
    let response = app
        .http
        .get(format!("{}/metrics/prometheus", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    response.text().await.unwrap()
}

/// The value of an unlabelled metric (0 when absent).
pub fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|line| {
            line.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
        })
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

/// True when `text` is a timestamp of the HTTP API (RFC 3339, UTC, at most milliseconds).
pub fn is_http_time(text: &Value) -> bool {
    let Some(text) = text.as_str() else {
        return false;
    };
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).is_ok()
        && text.ends_with('Z')
        && text.split('.').nth(1).is_none_or(|f| f.len() <= 4)
}
