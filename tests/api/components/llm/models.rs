//! The model list and budget: the zero-config demo model, configured order, unknown models, the daily
//! token budget, and the fake provider's config helper.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use chatbox::protocol::ws::ErrorCode;

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
        (
            ErrorCode::InvalidFormat,
            "Invalid model ID: gpt-4".to_string()
        )
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
