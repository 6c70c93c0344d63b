//! The optional `[transcription]` section and its `TRANSCRIPTION_*` variables: an OpenAI-compatible
//! `/audio/transcriptions` endpoint (OpenAI Whisper, a self-hosted faster-whisper server, LiteLLM...)
//! that turns voice messages into text. Without `url` there is no transcription.
//!
//! | key (`[transcription]`) | env | default |
//! |---|---|---|
//! | `url` | `TRANSCRIPTION_URL` | unset: no transcription |
//! | `apiKey` | `TRANSCRIPTION_API_KEY` | required except on internal hosts |
//! | `api_key_file` | `TRANSCRIPTION_API_KEY_FILE` | unset |
//! | `model` | `TRANSCRIPTION_MODEL` | `whisper-1` |
//! | `timeout` | `TRANSCRIPTION_TIMEOUT` | `60s` |

use std::path::PathBuf;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::validate::{check_endpoint, is_placeholder_api_key};
use crate::settings_kit::{
    ConfigError, EnvVars, de, ensure, env_duration, env_secret, env_string, positive,
};

/// The model sent when none is configured (OpenAI's).
pub const DEFAULT_TRANSCRIPTION_MODEL: &str = "whisper-1";

/// Voice transcription settings (`[transcription]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TranscriptionConfig {
    /// Base URL of the OpenAI-compatible API, e.g. `https://api.openai.com/v1` (`/audio/transcriptions`
    /// is appended); unset: no transcription.
    pub url: Option<String>,
    /// API key sent as `Authorization: Bearer` (`api_key` also accepted). Never logged.
    #[serde(rename = "apiKey", alias = "api_key")]
    pub api_key: Option<SecretString>,
    /// File holding the API key (trailing whitespace trimmed); exclusive with `apiKey`.
    #[serde(alias = "apiKeyFile")]
    pub api_key_file: Option<PathBuf>,
    /// Model name sent with each file.
    pub model: String,
    /// Budget of one transcription request, upload and answer included.
    #[serde(deserialize_with = "de::duration")]
    pub timeout: Duration,
}

impl Default for TranscriptionConfig {
    fn default() -> Self {
        Self {
            url: None,
            api_key: None,
            api_key_file: None,
            model: DEFAULT_TRANSCRIPTION_MODEL.to_string(),
            timeout: Duration::from_secs(60),
        }
    }
}

impl TranscriptionConfig {
    /// Whether transcription is configured (a `url` is set).
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// Applies `TRANSCRIPTION_URL`, `TRANSCRIPTION_API_KEY`, `TRANSCRIPTION_API_KEY_FILE`,
    /// `TRANSCRIPTION_MODEL` and `TRANSCRIPTION_TIMEOUT` over the file values (a key variable replaces
    /// both key settings of the file), then reads the key file.
    pub fn apply_env(&mut self, env: &EnvVars) -> Result<(), ConfigError> {
        env_string(env, "TRANSCRIPTION_URL", &mut self.url);
        if env.get("TRANSCRIPTION_API_KEY").is_some() {
            self.api_key_file = None;
            env_secret(env, "TRANSCRIPTION_API_KEY", &mut self.api_key);
        }
        if let Some(path) = env.get("TRANSCRIPTION_API_KEY_FILE") {
            self.api_key = None;
            self.api_key_file = Some(PathBuf::from(path));
        }
        if let Some(model) = env.get("TRANSCRIPTION_MODEL") {
            self.model = model.to_string();
        }
        env_duration(env, "TRANSCRIPTION_TIMEOUT", &mut self.timeout)?;
        self.resolve_key_file()
    }

    /// Reads `api_key_file` into `api_key` (once).
    fn resolve_key_file(&mut self) -> Result<(), ConfigError> {
        let Some(path) = self.api_key_file.take() else {
            return Ok(());
        };
        let key = "transcription.api_key_file";
        ensure(
            self.api_key.is_none(),
            key,
            "set either apiKey or api_key_file, not both",
        )?;
        let text = std::fs::read_to_string(&path).map_err(|e| {
            ConfigError::invalid(key, format!("cannot read {}: {e}", path.display()))
        })?;
        let trimmed = text.trim();
        ensure(
            !trimmed.is_empty(),
            key,
            format!("{} is empty", path.display()),
        )?;
        self.api_key = Some(SecretString::from(trimmed));
        Ok(())
    }

    /// Checks the settings as a provider's are checked: `https` (`http` only for internal hosts), no
    /// credentials in the URL, an API key unless the host is internal, a model and a positive timeout;
    /// `production` also refuses a placeholder API key. A key without a URL is refused (a section
    /// half filled in is a mistake, not "no transcription").
    pub fn validate(&self, production: bool) -> Result<(), ConfigError> {
        let has_key = self
            .api_key
            .as_ref()
            .is_some_and(|k| !k.expose_secret().trim().is_empty());
        let Some(url) = &self.url else {
            return ensure(
                !has_key,
                "transcription.url",
                "is required when an API key is set (leave the [transcription] section out for no \
                 transcription)",
            );
        };
        let internal = check_endpoint(url)
            .map_err(|reason| ConfigError::invalid("transcription.url", reason))?;
        ensure(
            !self.model.trim().is_empty(),
            "transcription.model",
            "must not be empty",
        )?;
        positive("transcription.timeout", self.timeout)?;
        ensure(
            has_key || internal,
            "transcription.apiKey",
            "is required (apiKey, api_key_file or TRANSCRIPTION_API_KEY; only internal hosts may omit it)",
        )?;
        let placeholder = self
            .api_key
            .as_ref()
            .is_some_and(|k| is_placeholder_api_key(k.expose_secret()));
        ensure(
            !(production && placeholder),
            "transcription.apiKey",
            "the API key is a placeholder (an example value, not a real key)",
        )
    }

    /// The endpoint requests go to: `url` without trailing slashes, then `/audio/transcriptions`.
    pub fn endpoint(&self) -> Option<String> {
        self.url
            .as_ref()
            .map(|url| format!("{}/audio/transcriptions", url.trim().trim_end_matches('/')))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(text: &str) -> TranscriptionConfig {
        toml::from_str(text).unwrap()
    }

    fn error(config: &TranscriptionConfig, production: bool) -> String {
        config.validate(production).unwrap_err().to_string()
    }

    #[test]
    fn absent_means_no_transcription_and_defaults_apply() {
        let config = TranscriptionConfig::default();
        assert!(!config.enabled());
        assert_eq!(config.endpoint(), None);
        config.validate(true).unwrap();
        let config = parse("url = \"https://api.openai.com/v1/\"\napiKey = \"sk-live-9f8e7d\"\n");
        assert!(config.enabled());
        assert_eq!(config.model, "whisper-1");
        assert_eq!(config.timeout, Duration::from_secs(60));
        assert_eq!(
            config.endpoint().as_deref(),
            Some("https://api.openai.com/v1/audio/transcriptions")
        );
        config.validate(true).unwrap();
    }

    #[test]
    fn the_environment_overrides_the_file() {
        let mut config =
            parse("url = \"https://a.example/v1\"\napiKey = \"file-key\"\nmodel = \"m\"\n");
        let env = EnvVars::from_pairs([
            ("TRANSCRIPTION_URL", "http://whisper:8000/v1"),
            ("TRANSCRIPTION_API_KEY", "env-key-4d2c"),
            ("TRANSCRIPTION_MODEL", "large-v3"),
            ("TRANSCRIPTION_TIMEOUT", "90s"),
        ]);
        config.apply_env(&env).unwrap();
        assert_eq!(config.url.as_deref(), Some("http://whisper:8000/v1"));
        assert_eq!(
            config.api_key.as_ref().unwrap().expose_secret(),
            "env-key-4d2c"
        );
        assert_eq!(config.model, "large-v3");
        assert_eq!(config.timeout, Duration::from_secs(90));
        config.validate(true).unwrap();
        let mut bad = TranscriptionConfig::default();
        let err = bad
            .apply_env(&EnvVars::from_pairs([("TRANSCRIPTION_TIMEOUT", "soon")]))
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("TRANSCRIPTION_TIMEOUT:"), "{err}");
    }

    #[test]
    fn the_key_file_is_read_and_exclusive_with_the_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "sk-from-file-1a2b\n").unwrap();
        let mut config = TranscriptionConfig {
            url: Some("https://api.openai.com/v1".into()),
            ..TranscriptionConfig::default()
        };
        config
            .apply_env(&EnvVars::from_pairs([(
                "TRANSCRIPTION_API_KEY_FILE",
                path.display().to_string(),
            )]))
            .unwrap();
        assert_eq!(
            config.api_key.as_ref().unwrap().expose_secret(),
            "sk-from-file-1a2b"
        );
        let mut both = parse(&format!(
            "apiKey = \"k\"\napi_key_file = \"{}\"\n",
            path.display()
        ));
        let err = both.apply_env(&EnvVars::default()).unwrap_err().to_string();
        assert!(err.starts_with("transcription.api_key_file:"), "{err}");
    }

    #[test]
    fn urls_and_keys_are_checked_like_a_providers() {
        let err = error(
            &parse("url = \"http://api.example.com/v1\"\napiKey = \"k\"\n"),
            false,
        );
        assert!(
            err.starts_with("transcription.url:") && err.contains("https"),
            "{err}"
        );
        let err = error(
            &parse("url = \"https://u:p@api.example.com/v1\"\napiKey = \"k\"\n"),
            false,
        );
        assert!(err.starts_with("transcription.url:"), "{err}");
        let err = error(&parse("url = \"https://api.openai.com/v1\"\n"), false);
        assert!(err.starts_with("transcription.apiKey:"), "{err}");
        parse("url = \"http://whisper:8000/v1\"\n")
            .validate(true)
            .unwrap();
        let err = error(&parse("apiKey = \"sk-real-key\"\n"), false);
        assert!(err.starts_with("transcription.url:"), "{err}");
        let err = error(
            &parse("url = \"https://api.openai.com/v1\"\napiKey = \"k\"\nmodel = \" \"\n"),
            false,
        );
        assert!(err.starts_with("transcription.model:"), "{err}");
        let err = error(
            &parse("url = \"https://api.openai.com/v1\"\napiKey = \"k\"\ntimeout = 0\n"),
            false,
        );
        assert!(err.starts_with("transcription.timeout:"), "{err}");
    }

    #[test]
    fn a_placeholder_key_is_refused_in_production_without_repeating_it() {
        let config = parse("url = \"https://api.openai.com/v1\"\napiKey = \"sk-xxxxxxxx\"\n");
        config.validate(false).unwrap();
        let err = error(&config, true);
        assert!(err.starts_with("transcription.apiKey:"), "{err}");
        assert!(!err.contains("sk-xxxxxxxx"), "{err}");
        assert!(!format!("{config:?}").contains("sk-xxxxxxxx"));
    }
}
