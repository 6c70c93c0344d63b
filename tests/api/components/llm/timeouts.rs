//! Time limits and broken streams: first-token, idle, turn and connect timeouts, and streams cut in the
//! middle, keeping the partial answer.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use chatbox::protocol::ws::ErrorCode;

#[tokio::test]
async fn stall_before_first_token_times_out_and_is_retried() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::StallBeforeFirstToken]);
    let (llm, _) = build(&provider("gpt", "openai", &fake, FAST));
    let out = run(&llm, "gpt", "Hi").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text, ANSWER);
    assert_eq!(out.summary.unwrap().attempts, 2);
    fake.wait_closed_by_client(0).await;
}

#[tokio::test]
async fn provider_that_never_answers_ends_with_llm_timeout() {
    let fake = FakeLlm::start().await;
    fake.script([
        Fault::StallBeforeFirstToken,
        Fault::StallBeforeFirstToken,
        Fault::StallBeforeFirstToken,
    ]);
    let (llm, _) = build(&provider("gpt", "openai", &fake, FAST));
    let out = run(&llm, "gpt", "Hi").await;
    let error = out.error.unwrap();
    assert!(
        matches!(
            error,
            LlmError::Timeout {
                kind: TimeoutKind::FirstToken,
                partial: false,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.client_error(),
        (
            ErrorCode::LlmTimeout,
            "AI service request timed out after 300ms".to_string()
        )
    );
}

#[tokio::test]
async fn the_whole_turn_is_bounded_by_the_turn_timeout() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::StallBeforeFirstToken]);
    let extra = "first_token_timeout = \"60s\"\nturn_timeout = \"300ms\"";
    let (llm, _) = build(&provider("gpt", "openai", &fake, extra));
    let out = run(&llm, "gpt", "Hi").await;
    let error = out.error.unwrap();
    assert!(
        matches!(
            error,
            LlmError::Timeout {
                kind: TimeoutKind::Turn,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.client_error(),
        (
            ErrorCode::LlmTimeout,
            "AI service request timed out after 300ms".to_string()
        )
    );
    fake.wait_closed_by_client(0).await;
}

#[tokio::test]
async fn stall_mid_stream_ends_with_a_timeout_and_keeps_the_partial_answer() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::StallMidStream { after_events: 3 }]);
    let (llm, metrics) = build(&provider("gpt", "openai", &fake, FAST));
    let out = run(&llm, "gpt", "Hi").await;
    assert_eq!(out.text, "Hello! How");
    let error = out.error.unwrap();
    assert!(
        matches!(
            error,
            LlmError::Timeout {
                kind: TimeoutKind::Idle,
                partial: true,
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.is_partial());
    assert_eq!(error.client_error().0, ErrorCode::LlmTimeout);
    let usage = out.usage.expect("a partial answer still reports usage");
    assert!(usage.estimated && usage.output_tokens > 0);
    assert_eq!(fake.request_count(), 1, "no retry after the first token");
    assert_eq!(metric(&metrics, "chatbox_llm_errors_total", "openai"), 1.0);
    fake.wait_closed_by_client(0).await;
}

#[tokio::test]
async fn connection_dropped_mid_stream_is_an_error_with_a_partial_answer() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::DropMidStream { after_events: 5 }]);
    let (llm, _) = build(&provider("claude", "anthropic", &fake, FAST));
    let out = run(&llm, "claude", "Hi").await;
    assert_eq!(out.text, "Hello! How");
    let error = out.error.unwrap();
    assert!(matches!(error, LlmError::StreamBroken { .. }), "{error:?}");
    assert!(error.is_partial());
    assert_eq!(error.client_error().0, ErrorCode::LlmUnavailable);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn every_format_ends_a_dropped_stream_with_a_partial_answer() {
    for (kind, events) in FORMATS {
        let fake = FakeLlm::start().await;
        fake.script([Fault::DropMidStream {
            after_events: events,
        }]);
        let (llm, _) = build(&provider("p", kind, &fake, FAST));
        let out = run(&llm, "p", "Hi").await;
        assert_eq!(out.text, "Hello! How", "{kind}");
        let error = out.error.unwrap();
        assert!(
            matches!(error, LlmError::StreamBroken { .. }),
            "{kind}: {error:?}"
        );
        assert_eq!(
            fake.request_count(),
            1,
            "{kind}: no retry after the first token"
        );
    }
}

#[tokio::test]
async fn a_connect_that_hangs_ends_at_the_connect_timeout() {
    let hole = crate::support::fake_llm::BlackHole::start().await;
    let extra = "connect_timeout = \"200ms\"\nfirst_token_timeout = \"60s\"";
    let text = provider_at("gpt", "openai", &hole.endpoint(), extra)
        .replace("max_attempts = 3", "max_attempts = 2");
    let (llm, _) = build(&text);
    let out = run(&llm, "gpt", "Hi").await;
    let error = out.error.unwrap();
    assert!(
        matches!(
            error,
            LlmError::Timeout {
                kind: TimeoutKind::Connect,
                ..
            }
        ),
        "{error:?}"
    );
    assert_eq!(
        error.client_error().1,
        "AI service request timed out after 200ms"
    );
}
