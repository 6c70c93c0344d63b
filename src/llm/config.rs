//! The `[llm]` configuration section and the `LLM_PROVIDER_<n>_*` environment variables.
//!
//! The provider list keeps the Go service's keys (`id`, `name`, `type`, `endpoint`, `apiKey`, `model`;
//! `api_key` is accepted too) and adds optional system prompt, sampling, timeouts, retry, breaker and
//! fallback settings. With no provider configured the built-in `demo` provider is the only model.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::config::{ConfigError, EnvVars};

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
    #[serde(alias = "stream_timeout", with = "go_duration")]
    pub turn_timeout: Duration,
    /// Default TCP/TLS connect timeout.
    #[serde(with = "go_duration")]
    pub connect_timeout: Duration,
    /// Default wait from sending a request to its first token.
    #[serde(with = "go_duration")]
    pub first_token_timeout: Duration,
    /// Default longest gap between two chunks of an answer.
    #[serde(with = "go_duration")]
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
    #[serde(with = "go_duration::option")]
    pub connect_timeout: Option<Duration>,
    /// Overrides `llm.first_token_timeout`.
    #[serde(with = "go_duration::option")]
    pub first_token_timeout: Option<Duration>,
    /// Overrides `llm.idle_timeout`.
    #[serde(with = "go_duration::option")]
    pub idle_timeout: Option<Duration>,
    /// Overrides `llm.turn_timeout` for turns that start on this provider.
    #[serde(with = "go_duration::option")]
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
    #[serde(with = "go_duration")]
    pub base_delay: Duration,
    /// Backoff cap, also the longest `Retry-After` honoured (30 s).
    #[serde(with = "go_duration")]
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
    #[serde(with = "go_duration")]
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

/// Fields of `LLM_PROVIDER_<n>_<FIELD>`.
const ENV_FIELDS: &[&str] = &[
    "ID",
    "NAME",
    "TYPE",
    "ENDPOINT",
    "MODEL",
    "API_KEY",
    "API_KEY_FILE",
    "SYSTEM_PROMPT",
    "TEMPERATURE",
    "MAX_TOKENS",
];

impl LlmConfig {
    /// The providers in effect: the configured ones, or the built-in demo provider alone.
    pub fn effective_providers(&self) -> Vec<ProviderConfig> {
        if self.providers.is_empty() {
            vec![ProviderConfig::demo()]
        } else {
            self.providers.clone()
        }
    }

    /// Applies environment variables over the file values, then reads API key files.
    ///
    /// `LLM_PROVIDER_<n>_{ID,NAME,TYPE,ENDPOINT,MODEL,API_KEY,API_KEY_FILE,SYSTEM_PROMPT,TEMPERATURE,
    /// MAX_TOKENS}` (n from 1) override entry n, or create it when n is one past the file's list.
    /// `LLM_STREAM_TIMEOUT`, `LLM_DAILY_TOKEN_BUDGET` and `LLM_DEMO_TOKEN_DELAY_MS` override the
    /// top-level keys.
    pub fn apply_env(&mut self, env: &EnvVars) -> Result<(), ConfigError> {
        let mut by_index: std::collections::BTreeMap<usize, Vec<(&str, &str, &str)>> =
            std::collections::BTreeMap::new();
        for (name, value) in env.with_prefix("LLM_PROVIDER_") {
            let rest = &name["LLM_PROVIDER_".len()..];
            let (n, field) = rest
                .split_once('_')
                .and_then(|(n, field)| Some((n.parse::<usize>().ok()?, field)))
                .filter(|(n, field)| *n >= 1 && ENV_FIELDS.contains(field))
                .ok_or_else(|| {
                    ConfigError::invalid(
                        name,
                        format!(
                            "unknown variable; expected LLM_PROVIDER_<n>_<{}>",
                            ENV_FIELDS.join("|")
                        ),
                    )
                })?;
            let value = value.trim();
            if value.is_empty() {
                continue;
            }
            by_index.entry(n).or_default().push((name, field, value));
        }
        let mut created = Vec::new();
        for (n, fields) in by_index {
            let index = n - 1;
            if index > self.providers.len() {
                let (name, _, _) = fields[0];
                return Err(ConfigError::invalid(
                    name,
                    format!(
                        "provider {n} cannot be created: only {} provider(s) are configured, so the next is {}",
                        self.providers.len(),
                        self.providers.len() + 1
                    ),
                ));
            }
            if index == self.providers.len() {
                self.providers.push(ProviderConfig::default());
                created.push((
                    n,
                    fields.iter().map(|(name, _, _)| *name).collect::<Vec<_>>(),
                ));
            }
            let provider = &mut self.providers[index];
            for (name, field, value) in fields {
                match field {
                    "ID" => provider.id = value.to_string(),
                    "NAME" => provider.name = value.to_string(),
                    "TYPE" => provider.kind = value.to_string(),
                    "ENDPOINT" => provider.endpoint = value.to_string(),
                    "MODEL" => provider.model = value.to_string(),
                    "API_KEY" => {
                        provider.api_key = Some(SecretString::from(value));
                        provider.api_key_file = None;
                    }
                    "API_KEY_FILE" => {
                        provider.api_key_file = Some(PathBuf::from(value));
                        provider.api_key = None;
                    }
                    "SYSTEM_PROMPT" => provider.system_prompt = Some(value.to_string()),
                    "TEMPERATURE" => {
                        provider.temperature = Some(
                            value
                                .parse()
                                .map_err(|_| ConfigError::invalid(name, "must be a number"))?,
                        );
                    }
                    "MAX_TOKENS" => {
                        provider.max_tokens = Some(value.parse().map_err(|_| {
                            ConfigError::invalid(name, "must be a positive integer")
                        })?);
                    }
                    _ => {}
                }
            }
        }
        if let Some(value) = env.get("LLM_STREAM_TIMEOUT") {
            self.turn_timeout = crate::config::parse_duration(value)
                .map_err(|e| ConfigError::invalid("LLM_STREAM_TIMEOUT", e))?;
        }
        if let Some(value) = env.get("LLM_DAILY_TOKEN_BUDGET") {
            let budget: u64 = value.parse().map_err(|_| {
                ConfigError::invalid("LLM_DAILY_TOKEN_BUDGET", "must be a non-negative integer")
            })?;
            self.daily_token_budget = (budget > 0).then_some(budget);
        }
        if let Some(value) = env.get("LLM_DEMO_TOKEN_DELAY_MS") {
            self.demo_token_delay_ms = value.parse().map_err(|_| {
                ConfigError::invalid("LLM_DEMO_TOKEN_DELAY_MS", "must be a non-negative integer")
            })?;
        }
        // A provider that only the environment defines is checked here, so that its errors name the
        // variables (an operator who set LLM_PROVIDER_2_API_KEY alone has no llm.providers[1]).
        for (n, set) in created {
            validate_provider(&format!("llm.providers[{}]", n - 1), &self.providers[n - 1])
                .map_err(|e| env_provider_error(e, n, &set))?;
        }
        for (index, provider) in self.providers.iter_mut().enumerate() {
            provider.resolve_key_file(&format!("llm.providers[{index}]"))?;
        }
        Ok(())
    }

    /// Checks the settings (reference 5.1); `production` also refuses a demo-only configuration.
    ///
    /// Each error's key names the entry and field (`llm.providers[1].endpoint`) and its reason names
    /// the provider id.
    pub fn validate(&self, production: bool) -> Result<(), ConfigError> {
        positive("llm.turn_timeout", self.turn_timeout)?;
        positive("llm.connect_timeout", self.connect_timeout)?;
        positive("llm.first_token_timeout", self.first_token_timeout)?;
        positive("llm.idle_timeout", self.idle_timeout)?;
        validate_retry("llm.retry", "", &self.retry)?;
        if self.daily_token_budget == Some(0) {
            return Err(ConfigError::invalid(
                "llm.daily_token_budget",
                "must be positive (leave it out for no budget)",
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (index, provider) in self.providers.iter().enumerate() {
            let key = format!("llm.providers[{index}]");
            validate_provider(&key, provider)?;
            if !seen.insert(provider.id.as_str()) {
                return Err(ConfigError::invalid(
                    format!("{key}.id"),
                    format!(
                        "provider {:?}: id is used by an earlier provider",
                        provider.id
                    ),
                ));
            }
        }
        for (index, provider) in self.providers.iter().enumerate() {
            let key = format!("{}.fallback", format_args!("llm.providers[{index}]"));
            let mut chain = std::collections::HashSet::new();
            for target in &provider.fallback {
                if target == &provider.id {
                    return Err(ConfigError::invalid(
                        key,
                        format!("provider {:?}: cannot fall back to itself", provider.id),
                    ));
                }
                if !self.providers.iter().any(|p| &p.id == target) {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "provider {:?}: fallback {target:?} is not a configured provider id",
                            provider.id
                        ),
                    ));
                }
                if !chain.insert(target) {
                    return Err(ConfigError::invalid(
                        key,
                        format!(
                            "provider {:?}: fallback {target:?} is listed twice",
                            provider.id
                        ),
                    ));
                }
            }
        }
        if production {
            for (index, provider) in self.providers.iter().enumerate() {
                if provider
                    .api_key
                    .as_ref()
                    .is_some_and(|k| is_placeholder_api_key(k.expose_secret()))
                {
                    return Err(ConfigError::invalid(
                        format!("llm.providers[{index}].apiKey"),
                        format!(
                            "provider {:?}: the API key is a placeholder (an example value, not a real key)",
                            provider.id
                        ),
                    ));
                }
            }
        }
        if production
            && self
                .providers
                .iter()
                .all(|p| p.provider_kind() == Some(ProviderKind::Demo))
        {
            return Err(ConfigError::invalid(
                "llm.providers",
                "production needs at least one real LLM provider (openai, anthropic or dify); \
                 the built-in demo provider is for development only",
            ));
        }
        Ok(())
    }
}

/// Renames an error about `llm.providers[n-1].<field>` of a provider that only the environment defines
/// to the variable `LLM_PROVIDER_<n>_<FIELD>`, and says which variables were set.
fn env_provider_error(error: ConfigError, n: usize, set: &[&str]) -> ConfigError {
    let ConfigError::Invalid { key, reason } = error else {
        return error;
    };
    let field = key.rsplit_once('.').map_or("", |(_, f)| f);
    let env_field = match field {
        "apiKey" => "API_KEY".to_string(),
        other => other.to_ascii_uppercase(),
    };
    let name = if ENV_FIELDS.contains(&env_field.as_str()) {
        format!("LLM_PROVIDER_{n}_{env_field}")
    } else {
        key
    };
    let reason = reason.replace(
        "apiKey, api_key_file or LLM_PROVIDER_<n>_API_KEY",
        &format!("LLM_PROVIDER_{n}_API_KEY or LLM_PROVIDER_{n}_API_KEY_FILE"),
    );
    ConfigError::invalid(
        name,
        format!(
            "{reason} (provider {n} is defined only by the environment, which sets {}; \
             LLM_PROVIDER_{n}_ID, _NAME and _TYPE are required, or add it to [[llm.providers]])",
            set.join(", ")
        ),
    )
}

/// Case-insensitive markers of an API key copied from an example instead of filled in (beyond the
/// template markers shared with the JWT secret check).
const API_KEY_PLACEHOLDERS: &[&str] =
    &["YOUR_API_KEY", "YOUR_KEY", "API_KEY_HERE", "...", "<", ">"];

/// Whether an API key is a placeholder: a template marker (as for the JWT secret: `PLACEHOLDER`,
/// `CHANGE_ME`, `your-...`), an example marker (`your_api_key`, `sk-...`), or a run of `x` standing
/// for the key (`sk-xxxx`, `xxx`: a part between dashes made only of three or more x).
pub fn is_placeholder_api_key(key: &str) -> bool {
    let upper = key.trim().to_ascii_uppercase();
    crate::config::contains_placeholder(&upper)
        || API_KEY_PLACEHOLDERS.iter().any(|m| upper.contains(m))
        || upper
            .split(['-', '_'])
            .any(|part| part.len() >= 3 && part.chars().all(|c| c == 'X'))
}

fn positive(key: &str, value: Duration) -> Result<(), ConfigError> {
    if value.is_zero() {
        return Err(ConfigError::invalid(key, "must be greater than zero"));
    }
    Ok(())
}

fn validate_retry(key: &str, who: &str, retry: &RetryConfig) -> Result<(), ConfigError> {
    if retry.max_attempts == 0 || retry.max_attempts > 10 {
        return Err(ConfigError::invalid(
            format!("{key}.max_attempts"),
            format!("{who}must be between 1 and 10"),
        ));
    }
    if retry.base_delay > retry.max_delay {
        return Err(ConfigError::invalid(
            format!("{key}.base_delay"),
            format!("{who}must not exceed max_delay"),
        ));
    }
    Ok(())
}

fn validate_provider(key: &str, p: &ProviderConfig) -> Result<(), ConfigError> {
    let who = if p.id.is_empty() {
        "provider without id: ".to_string()
    } else {
        format!("provider {:?}: ", p.id)
    };
    let invalid = |field: &str, reason: &str| {
        ConfigError::invalid(format!("{key}.{field}"), format!("{who}{reason}"))
    };
    if p.id.trim().is_empty() {
        return Err(invalid("id", "is required"));
    }
    if p.id.len() > 100 || p.id.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(invalid(
            "id",
            "must be at most 100 characters without spaces",
        ));
    }
    if p.name.trim().is_empty() {
        return Err(invalid("name", "is required"));
    }
    let kind = match p.kind.trim() {
        "" => {
            return Err(invalid(
                "type",
                "is required (openai, anthropic, dify or demo)",
            ));
        }
        text => ProviderKind::parse(text).ok_or_else(|| {
            invalid(
                "type",
                &format!("unknown type {text:?} (expected openai, anthropic, dify or demo)"),
            )
        })?,
    };
    if let Some(t) = p.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(invalid("temperature", "must be between 0 and 2"));
    }
    if p.max_tokens == Some(0) {
        return Err(invalid("max_tokens", "must be positive"));
    }
    for (field, value) in [
        ("connect_timeout", p.connect_timeout),
        ("first_token_timeout", p.first_token_timeout),
        ("idle_timeout", p.idle_timeout),
        ("turn_timeout", p.turn_timeout),
    ] {
        if value.is_some_and(|d| d.is_zero()) {
            return Err(invalid(field, "must be greater than zero"));
        }
    }
    if let Some(retry) = &p.retry {
        validate_retry(&format!("{key}.retry"), &who, retry)?;
    }
    if kind == ProviderKind::Demo {
        return Ok(());
    }
    if p.endpoint.trim().is_empty() {
        return Err(invalid("endpoint", "is required"));
    }
    let url = reqwest::Url::parse(p.endpoint.trim())
        .map_err(|e| invalid("endpoint", &format!("is not a valid URL: {e}")))?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err(invalid("endpoint", "has no host"));
    }
    let internal = is_internal_host(host);
    match url.scheme() {
        "https" => {}
        "http" if internal => {}
        "http" => {
            return Err(invalid(
                "endpoint",
                "must use https (http is allowed only for loopback, private, dot-less or .local/.internal/.svc hosts)",
            ));
        }
        other => {
            return Err(invalid(
                "endpoint",
                &format!("unsupported scheme {other:?}"),
            ));
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(
            "endpoint",
            "must not contain credentials (use apiKey)",
        ));
    }
    if matches!(kind, ProviderKind::OpenAi | ProviderKind::Anthropic) && p.model.trim().is_empty() {
        return Err(invalid("model", "is required for this provider type"));
    }
    let has_key = p
        .api_key
        .as_ref()
        .is_some_and(|k| !k.expose_secret().trim().is_empty())
        || p.api_key_file.is_some();
    let keyless_allowed = kind == ProviderKind::OpenAi && internal;
    if !has_key && !keyless_allowed {
        return Err(invalid(
            "apiKey",
            "is required (apiKey, api_key_file or LLM_PROVIDER_<n>_API_KEY; only openai-type providers on internal hosts may omit it)",
        ));
    }
    Ok(())
}

/// Reference 5.1's internal hosts: loopback or private IPs, dot-less names and the suffixes
/// `.local`, `.internal`, `.svc`, `.cluster.local`.
pub fn is_internal_host(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return match ip {
            IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
            IpAddr::V6(v6) => {
                v6.is_loopback()
                    || (v6.segments()[0] & 0xfe00) == 0xfc00
                    || (v6.segments()[0] & 0xffc0) == 0xfe80
                    || v6
                        .to_ipv4_mapped()
                        .is_some_and(|v4| v4.is_loopback() || v4.is_private())
            }
        };
    }
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    !host.contains('.')
        || [".local", ".internal", ".svc", ".cluster.local"]
            .iter()
            .any(|suffix| host.ends_with(suffix))
}

/// Serde helpers for Go duration strings (`"30s"`, `"2m0s"`) or integer seconds.
mod go_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Text(String),
        Secs(u64),
    }

    fn convert<E: serde::de::Error>(raw: Raw) -> Result<Duration, E> {
        match raw {
            Raw::Secs(secs) => Ok(Duration::from_secs(secs)),
            Raw::Text(text) => crate::config::parse_duration(&text).map_err(E::custom),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        convert(Raw::deserialize(d)?)
    }

    pub mod option {
        use super::*;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            Option::<Raw>::deserialize(d)?.map(convert).transpose()
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(text: &str) -> Result<LlmConfig, String> {
        toml::from_str::<LlmConfig>(text).map_err(|e| e.to_string())
    }

    const GO_STYLE: &str = r#"
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
        assert_eq!(
            config.providers[0]
                .api_key
                .as_ref()
                .unwrap()
                .expose_secret(),
            "sk-test-secret"
        );
        assert_eq!(
            config.providers[1].first_token_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(config.providers[1].retry.as_ref().unwrap().max_attempts, 2);
        assert_eq!(config.turn_timeout, Duration::from_secs(120));
        config.validate(true).unwrap();
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

    #[test]
    fn no_providers_means_demo_only_which_production_refuses() {
        let config = LlmConfig::default();
        let providers = config.effective_providers();
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].id, DEMO_PROVIDER_ID);
        config.validate(false).unwrap();
        let err = config.validate(true).unwrap_err().to_string();
        assert!(err.contains("llm.providers"), "{err}");
    }

    fn error_of(text: &str) -> String {
        parse(text)
            .unwrap()
            .validate(false)
            .unwrap_err()
            .to_string()
    }

    #[test]
    fn validation_errors_name_provider_and_field() {
        let err = error_of(
            "[[providers]]\nid = \"p1\"\nname = \"P\"\ntype = \"openai\"\nendpoint = \"http://api.example.com/v1\"\napiKey = \"k\"\nmodel = \"m\"\n",
        );
        assert!(
            err.contains("llm.providers[0].endpoint") && err.contains("\"p1\""),
            "{err}"
        );
        let err = error_of("[[providers]]\nid = \"p1\"\nname = \"P\"\ntype = \"gemini\"\n");
        assert!(
            err.contains("llm.providers[0].type") && err.contains("gemini"),
            "{err}"
        );
        let err = error_of(
            "[[providers]]\nid = \"c\"\nname = \"C\"\ntype = \"anthropic\"\nendpoint = \"https://api.anthropic.com/v1\"\nmodel = \"m\"\n",
        );
        assert!(
            err.contains("llm.providers[0].apiKey") && err.contains("\"c\""),
            "{err}"
        );
        let err = error_of("[[providers]]\nname = \"x\"\n");
        assert!(err.contains("llm.providers[0].id"), "{err}");
        let err = error_of(
            "[[providers]]\nid = \"a\"\nname = \"A\"\ntype = \"demo\"\nfallback = [\"zz\"]\n",
        );
        assert!(
            err.contains("llm.providers[0].fallback") && err.contains("zz"),
            "{err}"
        );
        let err = error_of(
            "[[providers]]\nid = \"a\"\nname = \"A\"\ntype = \"demo\"\n[[providers]]\nid = \"a\"\nname = \"B\"\ntype = \"demo\"\n",
        );
        assert!(err.contains("llm.providers[1].id"), "{err}");
    }

    #[test]
    fn http_is_allowed_only_for_internal_hosts() {
        for host in [
            "127.0.0.1",
            "10.1.2.3",
            "192.168.0.9",
            "localhost",
            "ollama",
            "llm.svc",
            "x.cluster.local",
            "[::1]",
            "box.local",
            "vllm.internal",
        ] {
            assert!(is_internal_host(host), "{host}");
        }
        for host in ["api.openai.com", "8.8.8.8", "example.local.com"] {
            assert!(!is_internal_host(host), "{host}");
        }
        let ok = "[[providers]]\nid = \"o\"\nname = \"Ollama\"\ntype = \"openai\"\nendpoint = \"http://ollama:11434/v1\"\nmodel = \"llama3\"\n";
        parse(ok).unwrap().validate(true).unwrap();
    }

    #[test]
    fn env_form_overrides_and_creates_providers() {
        let mut config = parse(GO_STYLE).unwrap();
        let env = EnvVars::from_pairs([
            ("LLM_PROVIDER_1_API_KEY", "sk-from-env"),
            ("LLM_PROVIDER_3_ID", "dify-assistant"),
            ("LLM_PROVIDER_3_NAME", "Dify Assistant"),
            ("LLM_PROVIDER_3_TYPE", "dify"),
            ("LLM_PROVIDER_3_ENDPOINT", "https://api.dify.ai/v1"),
            ("LLM_PROVIDER_3_API_KEY", "app-key"),
            ("LLM_STREAM_TIMEOUT", "90s"),
            ("LLM_DAILY_TOKEN_BUDGET", "10000"),
        ]);
        config.apply_env(&env).unwrap();
        assert_eq!(
            config.providers[0]
                .api_key
                .as_ref()
                .unwrap()
                .expose_secret(),
            "sk-from-env"
        );
        assert_eq!(config.providers.len(), 3);
        assert_eq!(config.providers[2].kind, "dify");
        assert_eq!(config.turn_timeout, Duration::from_secs(90));
        assert_eq!(config.daily_token_budget, Some(10_000));
        config.validate(true).unwrap();
    }

    #[test]
    fn env_form_alone_configures_providers() {
        let mut config = LlmConfig::default();
        let env = EnvVars::from_pairs([
            ("LLM_PROVIDER_1_ID", "gpt"),
            ("LLM_PROVIDER_1_NAME", "GPT"),
            ("LLM_PROVIDER_1_TYPE", "openai"),
            ("LLM_PROVIDER_1_ENDPOINT", "https://api.openai.com/v1"),
            ("LLM_PROVIDER_1_MODEL", "gpt-4o"),
            ("LLM_PROVIDER_1_API_KEY", "sk"),
        ]);
        config.apply_env(&env).unwrap();
        config.validate(true).unwrap();
        assert_eq!(config.effective_providers()[0].id, "gpt");
    }

    #[test]
    fn env_form_rejects_gaps_and_unknown_fields() {
        let mut config = LlmConfig::default();
        let err = config
            .apply_env(&EnvVars::from_pairs([("LLM_PROVIDER_2_ID", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("LLM_PROVIDER_2_ID"), "{err}");
        let err = config
            .apply_env(&EnvVars::from_pairs([("LLM_PROVIDER_1_APIKEY", "x")]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("LLM_PROVIDER_1_APIKEY"), "{err}");
    }

    #[test]
    fn api_key_file_is_read_and_exclusive_with_api_key() {
        let dir = std::env::temp_dir().join(format!("chatbox-llm-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("key");
        std::fs::write(&path, "sk-from-file\n").unwrap();
        let text = format!(
            "[[providers]]\nid = \"o\"\nname = \"O\"\ntype = \"openai\"\nendpoint = \"https://api.openai.com/v1\"\nmodel = \"m\"\napi_key_file = {:?}\n",
            path.display().to_string()
        );
        let mut config = parse(&text).unwrap();
        config.apply_env(&EnvVars::default()).unwrap();
        assert_eq!(
            config.providers[0]
                .api_key
                .as_ref()
                .unwrap()
                .expose_secret(),
            "sk-from-file"
        );
        let mut both = parse(&format!("{text}apiKey = \"k\"\n")).unwrap();
        let err = both.apply_env(&EnvVars::default()).unwrap_err().to_string();
        assert!(err.contains("llm.providers[0].api_key_file"), "{err}");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn an_env_only_partial_provider_names_the_variables() {
        let mut config = parse(GO_STYLE).unwrap();
        let count = config.providers.len();
        let n = count + 1;
        let var = format!("LLM_PROVIDER_{n}_API_KEY");
        let err = config
            .apply_env(&EnvVars::from_pairs([(var.as_str(), "sk-live-key")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&format!("LLM_PROVIDER_{n}_ID:")), "{err}");
        assert!(err.contains(&var), "{err}");
        assert!(!err.contains("llm.providers["), "{err}");
        let mut config = LlmConfig::default();
        let err = config
            .apply_env(&EnvVars::from_pairs([
                ("LLM_PROVIDER_1_ID", "gpt"),
                ("LLM_PROVIDER_1_NAME", "GPT"),
                ("LLM_PROVIDER_1_TYPE", "openai"),
                ("LLM_PROVIDER_1_ENDPOINT", "https://api.openai.com/v1"),
                ("LLM_PROVIDER_1_MODEL", "gpt-4o"),
            ]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("LLM_PROVIDER_1_API_KEY:"), "{err}");
    }

    #[test]
    fn placeholder_api_keys_are_refused_in_production_naming_the_provider() {
        for key in [
            "PLACEHOLDER_OPENAI_KEY",
            "CHANGE_ME",
            "your-api-key",
            "YOUR_API_KEY",
            "sk-xxxxxxxx",
            "xxx",
            "sk-...",
        ] {
            let text = format!(
                "[[providers]]\nid = \"gpt\"\nname = \"G\"\ntype = \"openai\"\nendpoint = \"https://api.openai.com/v1\"\nmodel = \"m\"\napiKey = \"{key}\"\n"
            );
            let config = parse(&text).unwrap();
            config.validate(false).unwrap();
            let err = config.validate(true).unwrap_err().to_string();
            assert!(
                err.starts_with("llm.providers[0].apiKey:") && err.contains("\"gpt\""),
                "{key}: {err}"
            );
            assert!(!err.contains(key), "the key itself is not repeated: {err}");
        }
        for real in ["sk-proj-4fXk9Qx2mZ", "sk-ant-api03-abcXYZ", "app-Dx7x"] {
            assert!(!is_placeholder_api_key(real), "{real}");
        }
    }
}
