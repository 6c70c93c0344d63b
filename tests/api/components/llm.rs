//! The LLM layer against the fake provider over real HTTP: each provider's stream format, retries,
//! timeouts, broken streams, fallback, breaker, cancellation, usage and metrics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use chatbox::config::EnvVars;
use chatbox::llm::{
    BreakerState, ChatMessage, Llm, LlmConfig, LlmError, TimeoutKind, TokenUsage, TurnEvent,
    TurnSummary,
};
use chatbox::metrics::Metrics;
use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::support::fake_llm::{FakeLlm, Fault};

const ANSWER: &str = "Hello! How can I help you today?";
const KEY: &str = "sk-test-key-123";

/// A provider table for `toml`, with fast retries and short timeouts.
fn provider(id: &str, kind: &str, fake: &FakeLlm, extra: &str) -> String {
    format!(
        "[[providers]]\nid = \"{id}\"\nname = \"{id} name\"\ntype = \"{kind}\"\nendpoint = \"{}\"\nmodel = \"up-{id}\"\n\
         apiKey = \"{KEY}\"\nretry = {{ max_attempts = 3, base_delay = \"1ms\", max_delay = \"5s\" }}\n{extra}\n",
        fake.base_url()
    )
}

const FAST: &str =
    "first_token_timeout = \"300ms\"\nidle_timeout = \"300ms\"\nturn_timeout = \"10s\"\n";

fn build(toml_text: &str) -> (Llm, Arc<Metrics>) {
    let mut config: LlmConfig = toml::from_str(toml_text).unwrap();
    config.apply_env(&EnvVars::default()).unwrap();
    config.validate(false).unwrap();
    let metrics = Arc::new(Metrics::new());
    (Llm::new(&config, metrics.clone()).unwrap(), metrics)
}

/// Everything one turn produced.
#[derive(Debug, Default)]
struct Outcome {
    text: String,
    usage: Option<TokenUsage>,
    summary: Option<TurnSummary>,
    error: Option<LlmError>,
}

/// Asserts that the turn ended with `LLM_UNAVAILABLE` (`LlmError::Unavailable`).
fn assert_unavailable(out: &Outcome) {
    assert!(
        matches!(out.error, Some(LlmError::Unavailable { .. })),
        "{:?}",
        out.error
    );
}

async fn run(llm: &Llm, model: &str, text: &str) -> Outcome {
    collect(llm.stream_turn(
        model,
        vec![ChatMessage::user(text)],
        CancellationToken::new(),
    ))
    .await
}

async fn collect(mut stream: chatbox::llm::TurnStream) -> Outcome {
    let mut out = Outcome::default();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Some(item) = tokio::time::timeout_at(deadline, stream.next())
        .await
        .unwrap()
    {
        match item {
            Ok(TurnEvent::Delta(t)) => out.text.push_str(&t),
            Ok(TurnEvent::Usage(u)) => out.usage = Some(u),
            Ok(TurnEvent::Completed(s)) => out.summary = Some(s.clone()),
            Ok(_) => {}
            Err(e) => out.error = Some(e),
        }
    }
    out
}

async fn collect_events(mut stream: chatbox::llm::TurnStream) -> Vec<Result<TurnEvent, LlmError>> {
    let mut all = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while let Some(item) = tokio::time::timeout_at(deadline, stream.next())
        .await
        .unwrap()
    {
        all.push(item);
    }
    all
}

fn metric(metrics: &Metrics, name: &str, provider: &str) -> f64 {
    let rendered = metrics.render();
    let prefix = format!("{name}{{provider=\"{provider}\"}} ");
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

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
            "LLM_UNAVAILABLE",
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
            "LLM_TIMEOUT",
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
            "LLM_TIMEOUT",
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
    assert_eq!(error.client_error().0, "LLM_TIMEOUT");
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
    assert_eq!(error.client_error().0, "LLM_UNAVAILABLE");
    assert_eq!(fake.request_count(), 1);
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
async fn cancel_closes_the_upstream_request() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::StallMidStream { after_events: 3 }]);
    let (llm, _) = build(&provider("gpt", "openai", &fake, "idle_timeout = \"60s\""));
    let cancel = CancellationToken::new();
    let mut stream = llm.stream_turn("gpt", vec![ChatMessage::user("Hi")], cancel.clone());
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(matches!(first, Some(Ok(TurnEvent::Delta(_)))), "{first:?}");
    cancel.cancel();
    fake.wait_closed_by_client(0).await;
    let rest = collect(stream).await;
    assert!(
        matches!(rest.error, Some(LlmError::Cancelled)),
        "{:?}",
        rest.error
    );
}

#[tokio::test]
async fn dropping_the_turn_stream_closes_the_upstream_request() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::StallBeforeFirstToken]);
    let (llm, _) = build(&provider(
        "gpt",
        "openai",
        &fake,
        "first_token_timeout = \"60s\"",
    ));
    let stream = llm.stream_turn(
        "gpt",
        vec![ChatMessage::user("Hi")],
        CancellationToken::new(),
    );
    while fake.request_count() == 0 {
        tokio::task::yield_now().await;
    }
    drop(stream);
    fake.wait_closed_by_client(0).await;
}

#[tokio::test]
async fn zero_config_serves_the_demo_model() {
    let config = LlmConfig {
        demo_token_delay_ms: 0,
        ..LlmConfig::default()
    };
    let llm = Llm::new(&config, Arc::new(Metrics::new())).unwrap();
    assert_eq!(llm.default_model_id(), "demo");
    assert_eq!(llm.models().len(), 1);
    assert_eq!(llm.models()[0].name, "Demo (built-in)");
    let out = run(&llm, "demo", "What is Rust?").await;
    assert!(out.error.is_none(), "{:?}", out.error);
    assert!(
        out.text.starts_with("You said: \"What is Rust?\""),
        "{}",
        out.text
    );
    let usage = out.usage.unwrap();
    assert!(!usage.estimated && usage.output_tokens >= 20);
}

#[tokio::test]
async fn models_keep_configured_order_and_unknown_models_are_refused() {
    let fake = FakeLlm::start().await;
    let text = format!(
        "{}{}{}",
        provider("b-second", "openai", &fake, ""),
        provider("a-first", "anthropic", &fake, ""),
        provider("c-third", "dify", &fake, "")
    );
    let (llm, _) = build(&text);
    let ids: Vec<_> = llm.models().into_iter().map(|m| m.id).collect();
    assert_eq!(ids, ["b-second", "a-first", "c-third"]);
    assert_eq!(llm.default_model_id(), "b-second");
    assert!(llm.has_model("c-third") && !llm.has_model("gpt-4"));
    let out = run(&llm, "gpt-4", "Hi").await;
    let error = out.error.unwrap();
    assert_eq!(
        error.client_error(),
        ("INVALID_FORMAT", "Invalid model ID: gpt-4".to_string())
    );
    assert_eq!(fake.request_count(), 0);
}

#[tokio::test]
async fn fake_provider_config_helper_works_for_other_tests() {
    let fake = FakeLlm::start().await;
    let config = LlmConfig {
        providers: vec![fake.provider_config("fake", "anthropic")],
        ..LlmConfig::default()
    };
    config.validate(true).unwrap();
    let llm = Llm::new(&config, Arc::new(Metrics::new())).unwrap();
    let out = run(&llm, "fake", "Hi").await;
    assert_eq!(out.text, ANSWER);
    assert_eq!(fake.requests()[0].header("x-api-key"), Some("sk-fake"));
}

#[tokio::test]
async fn daily_budget_is_checked_before_the_call() {
    let fake = FakeLlm::start().await;
    let (llm, _) = build(&format!(
        "daily_token_budget = 1000\n{}",
        provider("gpt", "openai", &fake, "")
    ));
    assert!(llm.check_budget(999).is_ok());
    let error = llm.check_budget(1000).unwrap_err();
    assert_eq!(error.client_error().0, "TOKEN_BUDGET_EXCEEDED");
}

/// The three HTTP formats, with how many fixture events make up "Hello! How".
const FORMATS: [(&str, usize); 3] = [("openai", 3), ("anthropic", 5), ("dify", 3)];

/// A provider table like [`provider`] for any endpoint.
fn provider_at(id: &str, kind: &str, endpoint: &str, extra: &str) -> String {
    format!(
        "[[providers]]\nid = \"{id}\"\nname = \"{id} name\"\ntype = \"{kind}\"\nendpoint = \"{endpoint}\"\nmodel = \"up-{id}\"\n\
         apiKey = \"{KEY}\"\nretry = {{ max_attempts = 3, base_delay = \"1ms\", max_delay = \"5s\" }}\n{extra}\n"
    )
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
    assert_eq!(error.client_error().0, "LLM_UNAVAILABLE");
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

#[tokio::test]
async fn openai_rate_limit_error_events_with_string_codes_are_retried() {
    let fake = FakeLlm::start().await;
    fake.use_fixture("rate_limit_event");
    let (llm, _) = build(&provider("gpt", "openai", &fake, FAST));
    let out = run(&llm, "gpt", "Hi").await;
    assert_unavailable(&out);
    assert_eq!(fake.request_count(), 3, "retried up to max_attempts");
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

/// A log sink for one test's thread-local subscriber.
#[derive(Clone, Default)]
struct LogBuffer(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn the_completed_turn_log_line_has_the_time_to_first_token() {
    let logs = LogBuffer::default();
    let writer = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // The current-thread test runtime runs the turn's task on this thread, under this subscriber.
    let _guard = tracing::subscriber::set_default(subscriber);
    let fake = FakeLlm::start().await;
    let (llm, _) = build(&provider("gpt", "openai", &fake, ""));
    let out = run(&llm, "gpt", "Hi").await;
    assert_eq!(out.text, ANSWER);
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    let line = text
        .lines()
        .find(|l| l.contains("LLM turn completed"))
        .unwrap_or_else(|| panic!("no completion line in {text}"));
    assert!(line.contains("first_token_ms="), "{line}");
    assert!(!line.contains(KEY), "{line}");
}
