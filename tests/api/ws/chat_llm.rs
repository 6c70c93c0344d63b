//! Chat turns over WebSocket against the fake provider: broken streams, fallback, hidden provider
//! errors, cancellation reaching upstream, the history and system prompt the model receives, timeouts
//! seen by every device, and `finish_reason`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::support::app::{TestApp, WsClient, answer_text, app};
use crate::support::fake_llm::{FakeLlm, Fault, UPSTREAM_DETAIL};
use crate::support::http::get;

const ANSWER: &str = "Hello! How can I help you today?";

/// A server whose models are the given `[[llm.providers]]` tables, after `head` (top-level tables such
/// as `[chatbox]` and `[llm]`).
async fn spawn_with(head: &str, providers: &[String]) -> TestApp {
    app()
        .toml(&format!("{head}\n{}", providers.concat()))
        .spawn()
        .await
}

/// A fake provider with `faults` scripted, and a server whose only model is it (`id`, `kind`, `extra`
/// lines of its table).
async fn single(
    id: &str,
    kind: &str,
    extra: &str,
    faults: impl IntoIterator<Item = Fault>,
) -> (FakeLlm, TestApp) {
    let fake = FakeLlm::start().await;
    fake.script(faults);
    let app = spawn_with("", &[fake.provider_toml(id, kind, extra)]).await;
    (fake, app)
}

/// Two fake providers and a server whose model `gpt` (openai, the first) falls back to `claude`
/// (anthropic, the second).
async fn gpt_falling_back_to_claude() -> (FakeLlm, FakeLlm, TestApp) {
    let primary = FakeLlm::start().await;
    let backup = FakeLlm::start().await;
    let app = spawn_with(
        "",
        &[
            primary.provider_toml("gpt", "openai", "fallback = [\"claude\"]"),
            backup.provider_toml("claude", "anthropic", ""),
        ],
    )
    .await;
    (primary, backup, app)
}

/// Sends a user message.
async fn say(ws: &mut WsClient, text: &str) {
    ws.send(json!({"type": "user_message", "content": text}))
        .await;
}

/// Connects `user` and returns the socket and its session id.
async fn connect(app: &TestApp, user: &str) -> (WsClient, String) {
    let mut ws = app.connect_ws(&app.user_token(user)).await;
    let status = ws.recv().await;
    assert_eq!(status["type"], "connection_status", "{status}");
    let session = status["session_id"].as_str().unwrap().to_string();
    (ws, session)
}

/// The frames of one turn up to the final chunk, plus the error frame that follows a failed one.
async fn turn_with_error(ws: &mut WsClient) -> (Vec<Value>, Value) {
    let frames = ws.recv_turn().await;
    let last = frames.last().unwrap();
    assert_eq!(last["type"], "ai_response", "{frames:?}");
    assert_eq!(last["metadata"]["done"], "true");
    let error = ws.recv().await;
    assert_eq!(error["type"], "error", "{error}");
    (frames, error)
}

/// The stored messages of a session, through the HTTP API.
async fn stored(app: &TestApp, user: &str, session: &str) -> Vec<Value> {
    let answer = get(app, &format!("/sessions/{session}"), &app.user_token(user)).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    answer.body["messages"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_broken_stream_ends_with_the_final_chunk_then_the_error_and_is_stored_partial() {
    let (_fake, app) = single(
        "gpt",
        "openai",
        "",
        [Fault::DropMidStream { after_events: 3 }],
    )
    .await;
    let (mut ws, session) = connect(&app, "ann").await;
    say(&mut ws, "Hi").await;
    let (frames, error) = turn_with_error(&mut ws).await;
    assert_eq!(frames[0]["type"], "loading");
    assert_eq!(answer_text(&frames), "Hello! How");
    let last = frames.last().unwrap();
    assert_eq!(last["metadata"]["finish_reason"], "error");
    assert!(
        last["metadata"].get("partial").is_none(),
        "an empty final chunk must not tell clients to replace the answer: {last}"
    );
    assert!(last.get("content").is_none(), "{last}");
    assert_eq!(error["error"]["code"], "LLM_UNAVAILABLE");
    assert_eq!(
        error["error"]["message"],
        "AI service is temporarily unavailable"
    );
    assert_eq!(error["session_id"], session.as_str());

    let messages = stored(&app, "ann", &session).await;
    let answer = messages
        .iter()
        .find(|m| m["sender"] == "ai")
        .expect("stored");
    assert_eq!(answer["content"], "Hello! How");
    assert_eq!(answer["metadata"]["partial"], "true");
    assert_eq!(
        answer["seq"], last["seq"],
        "stored under the final chunk's seq"
    );
}

#[tokio::test]
async fn an_answer_from_a_fallback_model_says_which_model_failed() {
    let (primary, _backup, app) = gpt_falling_back_to_claude().await;
    primary.script([Fault::status(500), Fault::status(500), Fault::status(500)]);
    let (mut ws, session) = connect(&app, "ben").await;
    say(&mut ws, "Hi").await;
    let frames = ws.recv_turn().await;
    assert_eq!(answer_text(&frames), ANSWER);
    let chunks: Vec<_> = frames
        .iter()
        .filter(|f| f["type"] == "ai_response")
        .collect();
    assert!(
        chunks.iter().all(|c| c["model_id"] == "claude"),
        "{chunks:?}"
    );
    let last = chunks.last().unwrap();
    assert_eq!(last["metadata"]["fallback_from"], "gpt");
    assert_eq!(last["metadata"]["finish_reason"], "stop");
    let messages = stored(&app, "ben", &session).await;
    let answer = messages.iter().find(|m| m["sender"] == "ai").unwrap();
    assert_eq!(answer["metadata"]["fallback_from"], "gpt");
}

#[tokio::test]
async fn provider_error_details_never_reach_the_client() {
    let (primary, backup, app) = gpt_falling_back_to_claude().await;
    primary.require_api_key("sk-the-right-one");
    backup.script([Fault::status(500), Fault::status(503), Fault::status(500)]);
    let (mut ws, _) = connect(&app, "cat").await;
    say(&mut ws, "Hi").await;
    let mut frames = ws.recv_until("error").await;
    assert_eq!(
        backup.request_count(),
        3,
        "the 401 fell back, the 500s were retried"
    );
    let error = frames.pop().unwrap();
    assert_eq!(error["error"]["code"], "LLM_UNAVAILABLE");
    assert_eq!(
        error["error"]["message"],
        "AI service is temporarily unavailable"
    );
    frames.push(error);
    let wire = serde_json::to_string(&frames).unwrap();
    for secret in [
        "sk-fake",
        "sk-wr",
        "Incorrect API key",
        UPSTREAM_DETAIL,
        "authentication_error",
        "api_error",
        "server_error",
        "Unauthorized",
        "Internal Server Error",
        "status 5",
        "127.0.0.1",
        "up-gpt",
        "up-claude",
    ] {
        assert!(
            !wire.contains(secret),
            "{secret:?} reached the client: {wire}"
        );
    }
}

#[tokio::test]
async fn cancel_over_the_websocket_closes_the_upstream_request() {
    let (fake, app) = single(
        "gpt",
        "openai",
        "idle_timeout = \"60s\"",
        [Fault::StallMidStream { after_events: 3 }],
    )
    .await;
    let (mut ws, _) = connect(&app, "dan").await;
    say(&mut ws, "Hi").await;
    assert_eq!(ws.recv().await["type"], "loading");
    assert_eq!(ws.recv().await["type"], "ai_response");
    ws.send(json!({"type": "cancel"})).await;
    fake.wait_closed_by_client(0).await;
    let rest = ws.recv_turn().await;
    let last = rest.last().unwrap();
    assert_eq!(last["metadata"]["finish_reason"], "cancelled");
    assert_eq!(fake.request_count(), 1);
    // The provider reports usage only at the end, which never came: the tokens are estimated and stored.
    let session = last["session_id"].as_str().unwrap();
    let stored = app.state.store.get_session(session).await.unwrap().unwrap();
    assert!(stored.total_tokens > 0, "{stored:?}");
}

#[tokio::test]
async fn the_model_receives_the_history_window_and_the_system_prompt() {
    let fake = FakeLlm::start().await;
    let app = spawn_with(
        "[chatbox]\nhistory_messages = 3\n",
        &[fake.provider_toml("gpt", "openai", "system_prompt = \"Be kind.\"")],
    )
    .await;
    let (mut ws, _) = connect(&app, "eve").await;
    for text in ["first", "second", "third"] {
        say(&mut ws, text).await;
        let frames = ws.recv_turn().await;
        assert_eq!(answer_text(&frames), ANSWER);
    }
    let requests = fake.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(
        requests[0].body["messages"],
        json!([
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "first"}
        ])
    );
    assert_eq!(
        requests[2].body["messages"],
        json!([
            {"role": "system", "content": "Be kind."},
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": ANSWER},
            {"role": "user", "content": "third"}
        ]),
        "the last 3 messages of the session, after the system prompt"
    );
}

#[tokio::test]
async fn a_history_window_never_opens_on_an_answer() {
    let fake = FakeLlm::start().await;
    let app = spawn_with(
        "[chatbox]\nhistory_messages = 4\n",
        &[fake.provider_toml("gpt", "openai", "")],
    )
    .await;
    let (mut ws, _) = connect(&app, "window").await;
    for text in ["first", "second", "third"] {
        say(&mut ws, text).await;
        ws.recv_turn().await;
    }
    // The last 4 messages are answer, "second", answer, "third": the leading answer is left out.
    assert_eq!(
        fake.requests()[2].body["messages"],
        json!([
            {"role": "user", "content": "second"},
            {"role": "assistant", "content": ANSWER},
            {"role": "user", "content": "third"}
        ])
    );
}

#[tokio::test]
async fn a_timeout_or_failure_mid_answer_ends_the_turn_on_every_device_of_the_user() {
    let cases = [
        (
            "openai",
            "idle_timeout = \"300ms\"",
            Fault::StallMidStream { after_events: 3 },
            "timeout",
            "LLM_TIMEOUT",
            "AI service request timed out after 300ms",
        ),
        (
            "anthropic",
            "",
            Fault::DropMidStream { after_events: 5 },
            "error",
            "LLM_UNAVAILABLE",
            "AI service is temporarily unavailable",
        ),
    ];
    for (kind, extra, fault, finish_reason, code, message) in cases {
        let (_fake, app) = single("p", kind, extra, [fault]).await;
        let (mut phone, session) = connect(&app, "fay").await;
        let (mut laptop, other) = connect(&app, "fay").await;
        assert_eq!(session, other);
        say(&mut phone, "Hi").await;
        for ws in [&mut phone, &mut laptop] {
            let (frames, error) = turn_with_error(ws).await;
            assert_eq!(answer_text(&frames), "Hello! How", "{kind}");
            let last = frames.last().unwrap();
            assert_eq!(last["metadata"]["finish_reason"], finish_reason, "{kind}");
            assert_eq!(error["error"]["code"], code, "{kind}");
            assert_eq!(error["error"]["message"], message, "{kind}");
        }
        let messages = stored(&app, "fay", &session).await;
        let answer = messages.iter().find(|m| m["sender"] == "ai").unwrap();
        assert_eq!(answer["metadata"]["partial"], "true", "{kind}");
    }
}

#[tokio::test]
async fn an_answer_cut_at_the_token_limit_ends_with_finish_reason_length() {
    let (fake, app) = single("gpt", "openai", "", []).await;
    fake.use_fixture("length");
    let (mut ws, session) = connect(&app, "hal").await;
    say(&mut ws, "Hi").await;
    let frames = ws.recv_turn().await;
    assert_eq!(answer_text(&frames), "Hello! How");
    let last = frames.last().unwrap();
    assert_eq!(last["metadata"]["finish_reason"], "length");
    assert_eq!(last["metadata"]["tokens"], "21");
    let messages = stored(&app, "hal", &session).await;
    let answer = messages.iter().find(|m| m["sender"] == "ai").unwrap();
    assert!(
        answer
            .get("metadata")
            .is_none_or(|m| m.get("partial").is_none()),
        "{answer}"
    );
}

#[tokio::test]
async fn a_retry_after_a_failed_turn_is_answered_and_a_retry_after_an_answer_is_not() {
    let (fake, app) = single("gpt", "openai", "", [Fault::status(401)]).await;
    let (mut ws, _) = connect(&app, "retrier").await;
    let message = json!({"type": "user_message", "content": "hello?", "client_msg_id": "c-1"});
    ws.send(message.clone()).await;
    let failed = ws.recv_until("error").await;
    assert_eq!(failed[0]["type"], "loading", "{failed:?}");
    assert!(
        failed.iter().all(|f| f["type"] != "ai_response"),
        "{failed:?}"
    );

    // The retry is not stored again, but the message has no answer yet: it gets one now.
    ws.send(message.clone()).await;
    let echo = ws.recv().await;
    assert_eq!(echo["type"], "user_message", "{echo}");
    assert_eq!(echo["metadata"]["duplicate"], "true");
    let turn = ws.recv_turn().await;
    assert_eq!(turn[0]["type"], "loading", "{turn:?}");
    assert_eq!(turn[0]["client_msg_id"], "c-1");
    assert_eq!(answer_text(&turn), ANSWER);
    assert_eq!(fake.request_count(), 2);

    // Answered now: a further retry only gets the duplicate echo.
    ws.send(message).await;
    assert_eq!(ws.recv().await["metadata"]["duplicate"], "true");
    ws.send(json!({"type": "ping"})).await;
    assert_eq!(ws.recv().await["type"], "pong", "no second answer");
    assert_eq!(fake.request_count(), 2);
}
