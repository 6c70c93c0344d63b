//! What is retried and how: 429 with `Retry-After`, server errors, error events in the stream, and what is
//! never retried (400, 401, 403).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use chatbox::protocol::ws::ErrorCode;

#[tokio::test]
async fn rate_limited_request_waits_for_retry_after_then_succeeds() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::rate_limited("1")]);
    let (llm, metrics) = build(&provider("gpt", "openai", &fake, ""));
    let started = Instant::now();
    let out = run(&llm, "gpt", "Hi").await;
    assert_eq!(out.text, ANSWER);
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After: 1 was not honoured"
    );
    assert_eq!(out.summary.unwrap().attempts, 2);
    assert_eq!(fake.request_count(), 2);
    assert_eq!(
        metric(&metrics, "chatbox_llm_requests_total", "openai"),
        2.0
    );
    assert_eq!(metric(&metrics, "chatbox_llm_errors_total", "openai"), 1.0);
}

#[tokio::test]
async fn retry_after_longer_than_the_cap_is_not_waited_for() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::rate_limited("3600")]);
    let (llm, _) = build(&provider("gpt", "openai", &fake, ""));
    let out = run(&llm, "gpt", "Hi").await;
    assert_unavailable(&out);
    assert_eq!(fake.request_count(), 1);
}

#[tokio::test]
async fn server_error_then_success_is_retried_transparently() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::status(500), Fault::status(503)]);
    let (llm, _) = build(&provider("gpt", "openai", &fake, ""));
    let out = run(&llm, "gpt", "Hi").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text, ANSWER);
    assert_eq!(out.summary.unwrap().attempts, 3);
}

#[tokio::test]
async fn persistent_server_errors_end_with_llm_unavailable_after_three_attempts() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::status(500), Fault::status(500), Fault::status(500)]);
    let (llm, _) = build(&provider("gpt", "openai", &fake, ""));
    let out = run(&llm, "gpt", "Hi").await;
    let error = out.error.unwrap();
    assert_eq!(
        error.client_error(),
        (
            ErrorCode::LlmUnavailable,
            "AI service is temporarily unavailable".to_string()
        )
    );
    assert_eq!(fake.request_count(), 3);
    assert!(out.text.is_empty());
}

#[tokio::test]
async fn wrong_api_key_is_not_retried_and_never_leaks() {
    let fake = FakeLlm::start().await;
    fake.require_api_key("sk-the-right-one");
    let (llm, metrics) = build(&provider("gpt", "openai", &fake, ""));
    let out = run(&llm, "gpt", "Hi").await;
    let error = out.error.unwrap();
    assert!(matches!(error, LlmError::Unavailable { .. }), "{error:?}");
    assert_eq!(fake.request_count(), 1, "401 must not be retried");
    let logged = format!("{error} {error:?}");
    assert!(
        !logged.contains(KEY) && !logged.contains("sk-wr"),
        "{logged}"
    );
    assert!(!metrics.render().contains(KEY));
}

#[tokio::test]
async fn anthropic_overloaded_error_event_is_retried() {
    let fake = FakeLlm::start().await;
    fake.use_fixture("overloaded");
    let (llm, _) = build(&provider("claude", "anthropic", &fake, FAST));
    let out = run(&llm, "claude", "Hi").await;
    assert_unavailable(&out);
    assert_eq!(fake.request_count(), 3);
}

#[tokio::test]
async fn dify_error_event_ends_the_turn_with_an_error_not_silently() {
    let fake = FakeLlm::start().await;
    fake.use_fixture("error");
    let (llm, _) = build(&provider("dify", "dify", &fake, FAST));
    let out = run(&llm, "dify", "Hi").await;
    assert_unavailable(&out);
    assert_eq!(fake.request_count(), 1, "a 400 error event is not retried");
}

#[tokio::test]
async fn every_format_retries_a_429_and_honours_a_retry_after_beyond_the_cap() {
    for (kind, _) in FORMATS {
        let fake = FakeLlm::start().await;
        fake.script([Fault::rate_limited("0")]);
        let (llm, _) = build(&provider("p", kind, &fake, FAST));
        let out = run(&llm, "p", "Hi").await;
        assert!(out.error.is_none(), "{kind}: {:?}", out.error);
        assert_eq!(out.text, ANSWER, "{kind}");
        assert_eq!(out.summary.unwrap().attempts, 2, "{kind}");

        // A Retry-After longer than retry.max_delay is read (from each format's 429) and not waited for.
        let fake = FakeLlm::start().await;
        fake.script([Fault::rate_limited("3600")]);
        let (llm, _) = build(&provider("p", kind, &fake, FAST));
        let out = run(&llm, "p", "Hi").await;
        assert!(
            matches!(out.error, Some(LlmError::Unavailable { .. })),
            "{kind}: {:?}",
            out.error
        );
        assert_eq!(fake.request_count(), 1, "{kind}");
    }
}

#[tokio::test]
async fn every_format_does_not_retry_400_or_403_and_they_do_not_open_the_breaker() {
    for (kind, _) in FORMATS {
        for status in [400, 403] {
            let fake = FakeLlm::start().await;
            fake.script([Fault::status(status), Fault::status(status)]);
            let extra = format!("{FAST}breaker = {{ failure_threshold = 1, cool_down = \"1h\" }}");
            let (llm, metrics) = build(&provider("p", kind, &fake, &extra));
            let out = run(&llm, "p", "Hi").await;
            let error = out.error.unwrap();
            assert!(
                matches!(error, LlmError::Unavailable { .. }),
                "{kind} {status}: {error:?}"
            );
            assert_eq!(fake.request_count(), 1, "{kind} {status} is not retried");
            assert_eq!(llm.ready().providers[0].breaker, BreakerState::Closed);
            let out = run(&llm, "p", "Hi").await;
            assert_eq!(
                fake.request_count(),
                2,
                "{kind} {status}: the breaker stayed closed"
            );
            assert!(out.error.is_some());
            let out = run(&llm, "p", "Hi").await;
            assert_eq!(out.text, ANSWER, "{kind} {status}");
            assert_eq!(metric(&metrics, "chatbox_llm_errors_total", kind), 2.0);
        }
    }
}

#[tokio::test]
async fn openai_rate_limit_error_events_with_string_codes_are_retried() {
    let fake = FakeLlm::start().await;
    fake.use_fixture("rate_limit_event");
    let (llm, _) = build(&provider("gpt", "openai", &fake, FAST));
    let out = run(&llm, "gpt", "Hi").await;
    assert_unavailable(&out);
    assert_eq!(fake.request_count(), 3, "retried up to max_attempts");
}
