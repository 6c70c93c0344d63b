//! Checks of the `[llm]` settings (reference 5.1): every error's key names the entry and field
//! (`llm.providers[1].endpoint`) and its reason names the provider id.

use std::collections::HashSet;
use std::net::IpAddr;
use std::time::Duration;

use secrecy::ExposeSecret;

use super::{LlmConfig, ProviderConfig, ProviderKind, RetryConfig};
use crate::settings_kit::{ConfigError, contains_placeholder, ensure};

impl LlmConfig {
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
        let mut seen = HashSet::new();
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
            let mut chain = HashSet::new();
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

/// Case-insensitive markers of an API key copied from an example instead of filled in (beyond the
/// template markers shared with the JWT secret check).
const API_KEY_PLACEHOLDERS: &[&str] =
    &["YOUR_API_KEY", "YOUR_KEY", "API_KEY_HERE", "...", "<", ">"];

/// Whether an API key is a placeholder: a template marker (as for the JWT secret: `PLACEHOLDER`,
/// `CHANGE_ME`, `your-...`), an example marker (`your_api_key`, `sk-...`), or a run of `x` standing
/// for the key (`sk-xxxx`, `xxx`: a part between dashes made only of three or more x).
pub fn is_placeholder_api_key(key: &str) -> bool {
    let upper = key.trim().to_ascii_uppercase();
    contains_placeholder(&upper)
        || API_KEY_PLACEHOLDERS.iter().any(|m| upper.contains(m))
        || upper
            .split(['-', '_'])
            .any(|part| part.len() >= 3 && part.chars().all(|c| c == 'X'))
}

/// Refuses a zero duration: "must be greater than zero".
fn positive(key: &str, value: Duration) -> Result<(), ConfigError> {
    ensure(!value.is_zero(), key, "must be greater than zero")
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

pub(super) fn validate_provider(key: &str, p: &ProviderConfig) -> Result<(), ConfigError> {
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
    let internal = check_endpoint(&p.endpoint).map_err(|reason| invalid("endpoint", &reason))?;
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

/// Checks the base URL of an API (a provider's `endpoint`, the transcription `url`): present, valid,
/// with a host, `https` (or `http` for an internal host, see [`is_internal_host`]) and no credentials.
/// Returns whether the host is internal; the error is the reason, to put under the caller's key.
pub(super) fn check_endpoint(text: &str) -> Result<bool, String> {
    if text.trim().is_empty() {
        return Err("is required".into());
    }
    let url = reqwest::Url::parse(text.trim()).map_err(|e| format!("is not a valid URL: {e}"))?;
    let host = url.host_str().unwrap_or_default();
    if host.is_empty() {
        return Err("has no host".into());
    }
    let internal = is_internal_host(host);
    match url.scheme() {
        "https" => {}
        "http" if internal => {}
        "http" => {
            return Err(
                "must use https (http is allowed only for loopback, private, dot-less or .local/.internal/.svc hosts)"
                    .into(),
            );
        }
        other => return Err(format!("unsupported scheme {other:?}")),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain credentials (use apiKey)".into());
    }
    Ok(internal)
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::DEMO_PROVIDER_ID;
    use super::super::tests::parse;
    use super::*;

    fn error_of(text: &str) -> String {
        parse(text)
            .unwrap()
            .validate(false)
            .unwrap_err()
            .to_string()
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
