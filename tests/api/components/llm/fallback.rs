//! The fallback chain and the circuit breaker: switching providers, opening, half-open probes, and the
//! time a fallback provider gets.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use chatbox::protocol::ws::ErrorCode;

#[tokio::test]
async fn fallback_chain_switches_to_the_next_provider_and_says_so() {
    let primary = FakeLlm::start().await;
    let backup = FakeLlm::start().await;
    primary.script([Fault::status(500), Fault::status(500), Fault::status(500)]);
    let text = format!(
        "{}{}",
        provider(
            "gpt",
            "openai",
            &primary,
            "fallback = [\"claude\"]\nsystem_prompt = \"GPT prompt\""
        ),
        provider(
            "claude",
            "anthropic",
            &backup,
            "system_prompt = \"Claude prompt\""
        )
    );
    let (llm, _) = build(&text);
    let events = collect_events(llm.stream_turn(
        "gpt",
        vec![ChatMessage::user("Hi")],
        CancellationToken::new(),
    ))
    .await;
    let switch = events
        .iter()
        .position(|e| matches!(e, Ok(TurnEvent::FallbackSwitched { from, to }) if from == "gpt" && to == "claude"))
        .expect("a FallbackSwitched event");
    let first_delta = events
        .iter()
        .position(|e| matches!(e, Ok(TurnEvent::Delta(_))))
        .unwrap();
    assert!(switch < first_delta);
    let Some(Ok(TurnEvent::Completed(summary))) = events.last() else {
        panic!("{events:?}")
    };
    assert_eq!(summary.model_id, "claude");
    assert_eq!(summary.requested_model_id, "gpt");
    assert_eq!(summary.fallback_from.as_deref(), Some("gpt"));
    assert_eq!(summary.attempts, 4);
    assert_eq!(
        backup.requests()[0].body["system"],
        "Claude prompt",
        "the fallback's own system prompt"
    );
}

#[tokio::test]
async fn breaker_opens_after_consecutive_failures_and_skips_the_provider() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::status(500), Fault::status(500)]);
    let extra = "breaker = { failure_threshold = 2, cool_down = \"1h\" }";
    let text =
        provider("gpt", "openai", &fake, extra).replace("max_attempts = 3", "max_attempts = 1");
    let (llm, _) = build(&text);
    assert!(run(&llm, "gpt", "Hi").await.error.is_some());
    assert!(llm.ready().ready);
    assert!(run(&llm, "gpt", "Hi").await.error.is_some());
    assert_eq!(llm.ready().providers[0].breaker, BreakerState::Open);
    assert!(!llm.ready().ready);
    let out = run(&llm, "gpt", "Hi").await;
    assert_unavailable(&out);
    assert_eq!(
        fake.request_count(),
        2,
        "an open breaker sends nothing upstream"
    );
}

#[tokio::test]
async fn a_half_open_probe_closes_the_breaker_at_its_first_token() {
    let fake = FakeLlm::start().await;
    fake.script([
        Fault::status(500),
        Fault::StallMidStream { after_events: 3 },
    ]);
    let extra = "idle_timeout = \"60s\"\nbreaker = { failure_threshold = 1, cool_down = \"50ms\" }";
    let text =
        provider("gpt", "openai", &fake, extra).replace("max_attempts = 3", "max_attempts = 1");
    let (llm, _) = build(&text);
    assert!(run(&llm, "gpt", "Hi").await.error.is_some());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while llm.ready().providers[0].breaker != BreakerState::HalfOpen {
        assert!(tokio::time::Instant::now() < deadline, "never half-open");
        tokio::task::yield_now().await;
    }
    // The probe starts answering, then stalls: the provider answered, so the breaker is closed.
    let probe_cancel = CancellationToken::new();
    let mut probe = llm.stream_turn(
        "gpt",
        vec![ChatMessage::user("Probe")],
        probe_cancel.clone(),
    );
    let first = tokio::time::timeout(Duration::from_secs(5), probe.next())
        .await
        .unwrap();
    assert!(matches!(first, Some(Ok(TurnEvent::Delta(_)))), "{first:?}");
    assert_eq!(llm.ready().providers[0].breaker, BreakerState::Closed);
    // Another turn is served meanwhile instead of being refused while the probe is out.
    let other = run(&llm, "gpt", "Meanwhile").await;
    assert!(other.error.is_none(), "{:?}", other.error);
    probe_cancel.cancel();
}

#[tokio::test]
async fn a_server_error_still_opens_the_breaker_for_every_format() {
    for (kind, _) in FORMATS {
        let fake = FakeLlm::start().await;
        fake.script([Fault::status(503)]);
        let extra = "breaker = { failure_threshold = 1, cool_down = \"1h\" }";
        let text =
            provider("p", kind, &fake, extra).replace("max_attempts = 3", "max_attempts = 1");
        let (llm, _) = build(&text);
        assert!(run(&llm, "p", "Hi").await.error.is_some());
        assert_eq!(
            llm.ready().providers[0].breaker,
            BreakerState::Open,
            "{kind}"
        );
    }
}

#[tokio::test]
async fn a_refused_connection_is_retried_then_falls_back() {
    let refused = crate::support::fake_llm::refused_endpoint().await;
    let backup = FakeLlm::start().await;
    let text = format!(
        "{}{}",
        provider_at("gpt", "openai", &refused, "fallback = [\"claude\"]"),
        provider("claude", "anthropic", &backup, "")
    );
    let (llm, metrics) = build(&text);
    let out = run(&llm, "gpt", "Hi").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert_eq!(out.text, ANSWER);
    let summary = out.summary.unwrap();
    assert_eq!(summary.fallback_from.as_deref(), Some("gpt"));
    assert_eq!(
        summary.attempts, 4,
        "three refused attempts, then the fallback"
    );
    assert_eq!(metric(&metrics, "chatbox_llm_errors_total", "openai"), 3.0);

    let (llm, _) = build(&provider_at("gpt", "openai", &refused, ""));
    let out = run(&llm, "gpt", "Hi").await;
    let error = out.error.unwrap();
    assert!(
        matches!(error, LlmError::Unavailable { attempts: 3, .. }),
        "{error:?}"
    );
    assert_eq!(error.client_error().0, ErrorCode::LlmUnavailable);
}

#[tokio::test]
async fn a_fallback_providers_own_turn_timeout_bounds_its_part_of_the_turn() {
    let primary = FakeLlm::start().await;
    let backup = FakeLlm::start().await;
    primary.script([Fault::status(500), Fault::status(500), Fault::status(500)]);
    backup.script([Fault::StallBeforeFirstToken]);
    let text = format!(
        "turn_timeout = \"30s\"\n{}{}",
        provider("gpt", "openai", &primary, "fallback = [\"claude\"]"),
        provider(
            "claude",
            "anthropic",
            &backup,
            "first_token_timeout = \"60s\"\nturn_timeout = \"300ms\""
        )
    );
    let (llm, _) = build(&text);
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
        error.client_error().1,
        "AI service request timed out after 300ms",
        "the fallback's turn_timeout, not the turn's 30s"
    );
    backup.wait_closed_by_client(0).await;
}
