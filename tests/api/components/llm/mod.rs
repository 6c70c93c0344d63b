//! The LLM layer (`chatbox::llm::Llm`, without the server) against the fake provider over real HTTP,
//! one file per concern; here the provider tables and the turn runner they share.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod cancel;
mod fallback;
mod formats;
mod images;
mod models;
mod retries;
mod timeouts;
mod transcribe;

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

/// What every fixture answers.
const ANSWER: &str = "Hello! How can I help you today?";
/// The API key of every provider table.
const KEY: &str = "sk-test-key-123";

/// A provider table for `toml` pointing at `fake`, with fast retries and short timeouts.
fn provider(id: &str, kind: &str, fake: &FakeLlm, extra: &str) -> String {
    provider_at(id, kind, &fake.base_url(), extra)
}

/// Short first-token, idle and turn timeouts.
const FAST: &str =
    "first_token_timeout = \"300ms\"\nidle_timeout = \"300ms\"\nturn_timeout = \"10s\"\n";

/// The LLM layer for a provider table, with the metrics it records.
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

/// Runs one turn of `model` with the user message `text`.
async fn run(llm: &Llm, model: &str, text: &str) -> Outcome {
    collect(llm.stream_turn(
        model,
        vec![ChatMessage::user(text)],
        CancellationToken::new(),
    ))
    .await
}

/// Reads a turn to its end and sums it up.
async fn collect(stream: chatbox::llm::TurnStream) -> Outcome {
    let mut out = Outcome::default();
    for item in collect_events(stream).await {
        match item {
            Ok(TurnEvent::Delta(t)) => out.text.push_str(&t),
            Ok(TurnEvent::Usage(u)) => out.usage = Some(u),
            Ok(TurnEvent::Completed(s)) => out.summary = Some(s),
            Ok(_) => {}
            Err(e) => out.error = Some(e),
        }
    }
    out
}

/// Every event of a turn, in order, failing if the turn does not end within 20 s.
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

/// A per-provider figure of `metrics` (0 when absent).
fn metric(metrics: &Metrics, name: &str, provider: &str) -> f64 {
    let rendered = metrics.render();
    let prefix = format!("{name}{{provider=\"{provider}\"}} ");
    rendered
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0.0, |v| v.trim().parse().unwrap())
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
