//! The `[llm]` configuration section and the `LLM_PROVIDER_<n>_*` environment variables.
//!
//! The provider list keeps the Go service's keys (`id`, `name`, `type`, `endpoint`, `apiKey`, `model`;
//! `api_key` is accepted too) and adds optional system prompt, sampling, timeouts, retry, breaker and
//! fallback settings. With no provider configured the built-in `demo` provider is the only model.
//!
//! The types and defaults are here; `env` applies the environment variables and `validate` checks the
//! result. `transcription` is the separate `[transcription]` section (voice messages to text).

mod env;
mod transcription;
mod validate;

pub use transcription::{DEFAULT_TRANSCRIPTION_MODEL, TranscriptionConfig};
pub use validate::is_internal_host;

use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::settings_kit::{ConfigError, de};

/// Id of the built-in demo provider used when no provider is configured.
pub const DEMO_PROVIDER_ID: &str = "demo";
/// Display name of the built-in demo provider.
pub const DEMO_PROVIDER_NAME: &str = "Demo (built-in)";

/// The kinds of provider this server speaks to; also the `provider` label of the LLM metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    /// Any OpenAI-compatible `/chat/completions` server (OpenAI, vLLM, Ollama, llama.cpp, LiteLLM...).
    OpenAi,
    /// Anthropic Messages API.
    Anthropic,
    /// Dify chat-messages API.
    Dify,
    /// Built-in deterministic provider, no network.
    Demo,
}

impl ProviderKind {
    /// Parses the config's `type` value (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "openai" => Some(Self::OpenAi),
            "anthropic" => Some(Self::Anthropic),
            "dify" => Some(Self::Dify),
            "demo" => Some(Self::Demo),
            _ => None,
        }
    }

    /// The config spelling, also the metric label (as the Go service labelled by type).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::OpenAi => "openai",
            Self::Anthropic => "anthropic",
            Self::Dify => "dify",
            Self::Demo => "demo",
        }
    }

    /// Whether the provider is sent a message's images (OpenAI-compatible and Anthropic); Dify and the
    /// demo model get a note line per image instead
    /// ([`IMAGE_NOT_SEEN_NOTE`](crate::llm::IMAGE_NOT_SEEN_NOTE)).
    pub fn accepts_images(self) -> bool {
        match self {
            Self::OpenAi | Self::Anthropic => true,
            Self::Dify | Self::Demo => false,
        }
    }
}

/// LLM settings: `[llm]` and its `[[llm.providers]]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LlmConfig {
    /// Providers in the order clients see them; the first is the default model.
    pub providers: Vec<ProviderConfig>,
    /// Optional per-user daily token budget (input + output), checked before each call.
    pub daily_token_budget: Option<u64>,
    /// Budget of a whole turn, retries and fallbacks included (Go `chatbox.llm_stream_timeout`).
    #[serde(alias = "stream_timeout", deserialize_with = "de::duration")]
    pub turn_timeout: Duration,
    /// Default TCP/TLS connect timeout.
    #[serde(deserialize_with = "de::duration")]
    pub connect_timeout: Duration,
    /// Default wait from sending a request to its first token.
    #[serde(deserialize_with = "de::duration")]
    pub first_token_timeout: Duration,
    /// Default longest gap between two chunks of an answer.
    #[serde(deserialize_with = "de::duration")]
    pub idle_timeout: Duration,
    /// Delay between the demo provider's tokens, in milliseconds (0 allowed).
    pub demo_token_delay_ms: u64,
    /// Default retry policy.
    pub retry: RetryConfig,
    /// Default circuit-breaker policy.
    pub breaker: BreakerConfig,
}

impl Default for LlmConfig {
    fn default() -> Self {
        Self {
            providers: Vec::new(),
            daily_token_budget: None,
            turn_timeout: Duration::from_secs(120),
            connect_timeout: Duration::from_secs(10),
            first_token_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(30),
            demo_token_delay_ms: 30,
            retry: RetryConfig::default(),
            breaker: BreakerConfig::default(),
        }
    }
}

/// One `[[llm.providers]]` entry.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProviderConfig {
    /// The model id clients select (`model_id` on the wire).
    pub id: String,
    /// Display name sent to clients.
    pub name: String,
    /// `openai`, `anthropic`, `dify` or `demo`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Base URL, e.g. `https://api.openai.com/v1` (the provider's path is appended).
    pub endpoint: String,
    /// Upstream model name sent to the API.
    pub model: String,
    /// API key (Go key `apiKey`; `api_key` also accepted). Never logged.
    #[serde(rename = "apiKey", alias = "api_key")]
    pub api_key: Option<SecretString>,
    /// File holding the API key (trailing whitespace trimmed); exclusive with `apiKey`.
    #[serde(alias = "apiKeyFile")]
    pub api_key_file: Option<PathBuf>,
    /// System prompt prepended to every conversation sent to this provider.
    #[serde(alias = "systemPrompt")]
    pub system_prompt: Option<String>,
    /// Sampling temperature (0 to 2).
    pub temperature: Option<f64>,
    /// Upper bound of answer tokens (Anthropic requires one: 4096 when unset).
    #[serde(alias = "maxTokens")]
    pub max_tokens: Option<u32>,
    /// `openai` only: send `stream_options.include_usage` (default true); turn it off for
    /// OpenAI-compatible servers that reject the field (usage is then estimated).
    #[serde(alias = "includeUsage")]
    pub include_usage: Option<bool>,
    /// Overrides `llm.connect_timeout`.
    #[serde(deserialize_with = "de::option_duration")]
    pub connect_timeout: Option<Duration>,
    /// Overrides `llm.first_token_timeout`.
    #[serde(deserialize_with = "de::option_duration")]
    pub first_token_timeout: Option<Duration>,
    /// Overrides `llm.idle_timeout`.
    #[serde(deserialize_with = "de::option_duration")]
    pub idle_timeout: Option<Duration>,
    /// Overrides `llm.turn_timeout` for turns that start on this provider.
    #[serde(deserialize_with = "de::option_duration")]
    pub turn_timeout: Option<Duration>,
    /// Provider ids tried in order when this one fails before the first token.
    pub fallback: Vec<String>,
    /// Overrides `llm.retry`.
    pub retry: Option<RetryConfig>,
    /// Overrides `llm.breaker`.
    pub breaker: Option<BreakerConfig>,
}

/// Retries before the first token: exponential backoff with full jitter (reference 5.3 defaults).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetryConfig {
    /// Attempts per provider, the first included (3).
    pub max_attempts: u32,
    /// Backoff base: attempt n waits up to `base_delay * 2^(n-1)` (1 s).
    #[serde(deserialize_with = "de::duration")]
    pub base_delay: Duration,
    /// Backoff cap, also the longest `Retry-After` honoured (30 s).
    #[serde(deserialize_with = "de::duration")]
    pub max_delay: Duration,
}

impl Default for RetryConfig {
    fn default() -> Self {
        Self {
            max_attempts: 3,
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(30),
        }
    }
}

/// Circuit breaker per provider: `failure_threshold` consecutive failures open it for `cool_down`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open the breaker (0 disables it).
    pub failure_threshold: u32,
    /// How long it stays open before one probe is let through.
    #[serde(deserialize_with = "de::duration")]
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

impl ProviderConfig {
    /// The built-in demo provider used when none is configured.
    pub fn demo() -> Self {
        Self {
            id: DEMO_PROVIDER_ID.to_string(),
            name: DEMO_PROVIDER_NAME.to_string(),
            kind: "demo".to_string(),
            ..Self::default()
        }
    }

    /// The parsed `type`, if valid.
    pub fn provider_kind(&self) -> Option<ProviderKind> {
        ProviderKind::parse(&self.kind)
    }

    /// Reads `api_key_file` into `api_key` (once); `key` names the entry in errors.
    pub fn resolve_key_file(&mut self, key: &str) -> Result<(), ConfigError> {
        let Some(path) = self.api_key_file.take() else {
            return Ok(());
        };
        if self.api_key.is_some() {
            return Err(ConfigError::invalid(
                format!("{key}.api_key_file"),
                format!(
                    "provider {:?}: set either apiKey or api_key_file, not both",
                    self.id
                ),
            ));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::invalid(
                format!("{key}.api_key_file"),
                format!(
                    "provider {:?}: cannot read {}: {e}",
                    self.id,
                    path.display()
                ),
            )
        })?;
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(ConfigError::invalid(
                format!("{key}.api_key_file"),
                format!("provider {:?}: {} is empty", self.id, path.display()),
            ));
        }
        self.api_key = Some(SecretString::from(trimmed));
        Ok(())
    }
}

impl LlmConfig {
    /// The providers in effect: the configured ones, or the built-in demo provider alone.
    pub fn effective_providers(&self) -> Vec<ProviderConfig> {
        if self.providers.is_empty() {
            vec![ProviderConfig::demo()]
        } else {
            self.providers.clone()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use secrecy::ExposeSecret;

    use super::*;

    /// The API key of provider `index`, exposed.
    pub(super) fn api_key(config: &LlmConfig, index: usize) -> &str {
        config.providers[index]
            .api_key
            .as_ref()
            .unwrap()
            .expose_secret()
    }

    pub(super) fn parse(text: &str) -> Result<LlmConfig, String> {
        toml::from_str::<LlmConfig>(text).map_err(|e| e.to_string())
    }

    pub(super) const GO_STYLE: &str = r#"
        [[providers]]
        id = "openai-gpt4"
        name = "GPT-4"
        type = "openai"
        endpoint = "https://api.openai.com/v1"
        apiKey = "sk-test-secret"
        model = "gpt-4"

        [[providers]]
        id = "anthropic-claude"
        name = "Claude"
        type = "anthropic"
        endpoint = "https://api.anthropic.com/v1"
        api_key = "ak-secret"
        model = "claude-3-opus"
        system_prompt = "Be brief."
        temperature = 0.2
        max_tokens = 512
        first_token_timeout = "5s"
        fallback = ["openai-gpt4"]
        retry = { max_attempts = 2, base_delay = "100ms", max_delay = "1s" }
    "#;

    #[test]
    fn go_service_keys_parse_and_validate() {
        let config = parse(GO_STYLE).unwrap();
        assert_eq!(config.providers.len(), 2);
        assert_eq!(config.providers[0].id, "openai-gpt4");
        assert_eq!(api_key(&config, 0), "sk-test-secret");
        assert_eq!(
            config.providers[1].first_token_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(config.providers[1].retry.as_ref().unwrap().max_attempts, 2);
        assert_eq!(config.turn_timeout, Duration::from_secs(120));
        config.validate(true).unwrap();
    }

    #[test]
    fn only_openai_and_anthropic_accept_images() {
        assert!(ProviderKind::OpenAi.accepts_images());
        assert!(ProviderKind::Anthropic.accepts_images());
        assert!(!ProviderKind::Dify.accepts_images());
        assert!(!ProviderKind::Demo.accepts_images());
    }

    #[test]
    fn api_keys_never_appear_in_debug_output() {
        let config = parse(GO_STYLE).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("sk-test-secret"));
        assert!(!debug.contains("ak-secret"));
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let err = parse("[[providers]]\nid = \"a\"\napikey = \"x\"\n").unwrap_err();
        assert!(err.contains("apikey"), "{err}");
        let err = parse("bogus = 1\n").unwrap_err();
        assert!(err.contains("bogus"), "{err}");
    }

    #[test]
    fn durations_accept_go_strings_and_stream_timeout_alias() {
        let config = parse("stream_timeout = \"2m0s\"\nidle_timeout = 5\n").unwrap();
        assert_eq!(config.turn_timeout, Duration::from_secs(120));
        assert_eq!(config.idle_timeout, Duration::from_secs(5));
        assert!(parse("turn_timeout = \"5 parsecs\"\n").is_err());
    }
}
