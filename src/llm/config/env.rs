//! The `LLM_PROVIDER_<n>_*` variables and the top-level `LLM_*` ones over the `[llm]` file values.

use std::collections::BTreeMap;
use std::path::PathBuf;

use secrecy::SecretString;

use super::validate::validate_provider;
use super::{LlmConfig, ProviderConfig};
use crate::settings_kit::{ConfigError, EnvVars, env_duration, env_parse_into, env_parsed};

/// Why a count from the environment is refused.
const NON_NEGATIVE: &str = "must be a non-negative integer";

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
    /// Applies environment variables over the file values, then reads API key files.
    ///
    /// `LLM_PROVIDER_<n>_{ID,NAME,TYPE,ENDPOINT,MODEL,API_KEY,API_KEY_FILE,SYSTEM_PROMPT,TEMPERATURE,
    /// MAX_TOKENS}` (n from 1) override entry n, or create it when n is one past the file's list.
    /// `LLM_STREAM_TIMEOUT`, `LLM_DAILY_TOKEN_BUDGET` and `LLM_DEMO_TOKEN_DELAY_MS` override the
    /// top-level keys.
    pub fn apply_env(&mut self, env: &EnvVars) -> Result<(), ConfigError> {
        let mut by_index: BTreeMap<usize, Vec<(&str, &str, &str)>> = BTreeMap::new();
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
        env_duration(env, "LLM_STREAM_TIMEOUT", &mut self.turn_timeout)?;
        if let Some(budget) = env_parsed::<u64>(env, "LLM_DAILY_TOKEN_BUDGET", NON_NEGATIVE)? {
            self.daily_token_budget = (budget > 0).then_some(budget);
        }
        env_parse_into(
            env,
            "LLM_DEMO_TOKEN_DELAY_MS",
            NON_NEGATIVE,
            &mut self.demo_token_delay_ms,
        )?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::super::tests::{GO_STYLE, api_key, parse};
    use super::*;

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
        assert_eq!(api_key(&config, 0), "sk-from-env");
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
        assert_eq!(api_key(&config, 0), "sk-from-file");
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
}
