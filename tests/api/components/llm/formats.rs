//! Each provider's stream format read into deltas, usage and finish reasons, the requests sent, and the
//! completed turn's log line.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[tokio::test]
async fn openai_stream_is_delivered_with_reported_usage_and_the_request_is_well_formed() {
    let fake = FakeLlm::start().await;
    let (llm, metrics) = build(&provider(
        "gpt",
        "openai",
        &fake,
        "system_prompt = \"Be kind.\"\ntemperature = 0.3",
    ));
    let out = run(&llm, "gpt", "Hi").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text, ANSWER);
    assert_eq!(
        out.usage,
        Some(TokenUsage {
            input_tokens: 19,
            output_tokens: 9,
            estimated: false
        })
    );
    let summary = out.summary.unwrap();
    assert_eq!(
        (
            summary.model_id.as_str(),
            summary.attempts,
            summary.provider_kind
        ),
        ("gpt", 1, "openai")
    );
    let requests = fake.requests();
    assert_eq!(requests.len(), 1);
    let r = &requests[0];
    assert_eq!(r.path, "/v1/chat/completions");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(r.header("accept"), Some("text/event-stream"));
    assert_eq!(
        r.body,
        serde_json::json!({
            "model": "up-gpt",
            "messages": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}],
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.3
        })
    );
    assert_eq!(
        metric(&metrics, "chatbox_llm_requests_total", "openai"),
        1.0
    );
    assert_eq!(metric(&metrics, "chatbox_llm_errors_total", "openai"), 0.0);
    assert_eq!(
        metric(&metrics, "chatbox_tokens_used_total", "openai"),
        28.0
    );
    assert!(
        metrics
            .render()
            .contains("chatbox_llm_latency_seconds_count{provider=\"openai\"} 1")
    );
}

#[tokio::test]
async fn anthropic_stream_is_delivered_with_message_start_and_delta_usage() {
    let fake = FakeLlm::start().await;
    let (llm, _) = build(&provider(
        "claude",
        "anthropic",
        &fake,
        "system_prompt = \"Be kind.\"",
    ));
    let out = run(&llm, "claude", "Hi").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text, ANSWER);
    assert_eq!(
        out.usage,
        Some(TokenUsage {
            input_tokens: 25,
            output_tokens: 15,
            estimated: false
        })
    );
    let r = &fake.requests()[0];
    assert_eq!(r.path, "/v1/messages");
    assert_eq!(r.header("x-api-key"), Some(KEY));
    assert_eq!(r.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(r.body["system"], "Be kind.");
    assert_eq!(
        r.body["messages"],
        serde_json::json!([{"role": "user", "content": "Hi"}])
    );
    assert_eq!(r.body["max_tokens"], 4096);
}

#[tokio::test]
async fn dify_stream_is_delivered_with_metadata_usage() {
    let fake = FakeLlm::start().await;
    let (llm, _) = build(&provider("dify", "dify", &fake, ""));
    let out = run(&llm, "dify", "Hi").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text, ANSWER);
    assert_eq!(
        out.usage,
        Some(TokenUsage {
            input_tokens: 1033,
            output_tokens: 135,
            estimated: false
        })
    );
    let r = &fake.requests()[0];
    assert_eq!(r.path, "/v1/chat-messages");
    assert_eq!(
        r.header("authorization"),
        Some(format!("Bearer {KEY}").as_str())
    );
    assert_eq!(r.body["query"], "user: Hi");
    assert_eq!(r.body["response_mode"], "streaming");
}

#[tokio::test]
async fn usage_is_estimated_only_when_the_provider_reports_none() {
    let fake = FakeLlm::start().await;
    fake.use_fixture("no_usage");
    let (llm, _) = build(&provider("gpt", "openai", &fake, ""));
    let out = run(&llm, "gpt", "Hi").await;
    assert_eq!(out.text, ANSWER);
    assert_eq!(
        out.usage,
        Some(TokenUsage {
            input_tokens: 1,
            output_tokens: (ANSWER.len() as u64).div_ceil(4),
            estimated: true
        })
    );
}

#[tokio::test]
async fn a_malformed_chunk_is_skipped_and_the_answer_completes() {
    for kind in ["openai", "anthropic", "dify"] {
        let fake = FakeLlm::start().await;
        fake.script([Fault::MalformedChunk { after_events: 2 }]);
        let (llm, _) = build(&provider("p", kind, &fake, FAST));
        let out = run(&llm, "p", "Hi").await;
        assert!(out.error.is_none(), "{kind}: {:?}", out.error);
        assert_eq!(out.text, ANSWER, "{kind}");
    }
}

#[tokio::test]
async fn a_token_limit_is_reported_as_finish_reason_length() {
    for (kind, fixture) in [("openai", "length"), ("anthropic", "max_tokens")] {
        let fake = FakeLlm::start().await;
        fake.use_fixture(fixture);
        let (llm, _) = build(&provider("p", kind, &fake, FAST));
        let out = run(&llm, "p", "Hi").await;
        assert!(out.error.is_none(), "{kind}: {:?}", out.error);
        assert_eq!(out.text, "Hello! How", "{kind}");
        assert_eq!(
            out.summary.unwrap().finish_reason,
            chatbox::llm::FinishReason::Length,
            "{kind}"
        );
    }
    let fake = FakeLlm::start().await;
    let (llm, _) = build(&provider("p", "openai", &fake, FAST));
    let out = run(&llm, "p", "Hi").await;
    assert_eq!(
        out.summary.unwrap().finish_reason,
        chatbox::llm::FinishReason::Stop
    );
}

#[tokio::test]
async fn include_usage_can_be_turned_off_for_servers_that_reject_it() {
    let fake = FakeLlm::start().await;
    fake.use_fixture("no_usage");
    let (llm, _) = build(&provider("gpt", "openai", &fake, "include_usage = false"));
    let out = run(&llm, "gpt", "Hi").await;
    assert_eq!(out.text, ANSWER);
    assert!(out.usage.unwrap().estimated);
    let body = &fake.requests()[0].body;
    assert!(body.get("stream_options").is_none(), "{body}");
}

#[tokio::test]
async fn the_completed_turn_log_line_has_the_time_to_first_token() {
    // The current-thread test runtime runs the turn's task on this thread, under this subscriber.
    let (logs, _guard) = crate::support::logs::capture_logs();
    let fake = FakeLlm::start().await;
    let (llm, _) = build(&provider("gpt", "openai", &fake, ""));
    let out = run(&llm, "gpt", "Hi").await;
    assert_eq!(out.text, ANSWER);
    let text = logs.text();
    let line = text
        .lines()
        .find(|l| l.contains("LLM turn completed"))
        .unwrap_or_else(|| panic!("no completion line in {text}"));
    assert!(line.contains("first_token_ms="), "{line}");
    assert!(!line.contains(KEY), "{line}");
}
