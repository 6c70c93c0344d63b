//! The `[store]` configuration section and its environment variables.
//!
//! | key (`[store]`)      | env                         | default      |
//! |----------------------|-----------------------------|--------------|
//! | `mongo_uri`          | `MONGO_URI`                 | unset → embedded store in the data dir |
//! | `mongo_database`     | `MONGO_DATABASE`            | `chat`       |
//! | `mongo_collection`   | `MONGO_COLLECTION`          | `sessions`   |
//! | `encryption_key`     | `ENCRYPTION_KEY`            | dev: generated into `<data_dir>/encryption.key`; production: required |
//! | `encryption_key_id`  | `ENCRYPTION_KEY_ID`         | `k0`         |
//! | `encryption_keys`    | `ENCRYPTION_KEYS` (`id:key,id:key`) | none |
//! | `active_key_id`      | `ENCRYPTION_ACTIVE_KEY_ID`  | the `encryption_key` id, else the only extra key |
//! | `retention_days`     | `STORE_RETENTION_DAYS`      | unset (keep forever) |
//! | `operation_timeout`  | `STORE_OPERATION_TIMEOUT`   | `10s`        |
//! | `list_timeout`       | `STORE_LIST_TIMEOUT`        | `30s`        |
//! | `request_wait`       | `STORE_REQUEST_WAIT`        | `5s`         |
//! | `retry_attempts`     | `STORE_RETRY_ATTEMPTS`      | 3            |
//! | `embedded_cache_mb`  | `STORE_EMBEDDED_CACHE_MB`   | 16           |
//! | `flush_interval`     | `STORE_FLUSH_INTERVAL`      | `1s`         |

use std::collections::BTreeMap;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::crypto::{DEFAULT_KEY_ID, parse_key, valid_key_id};
use crate::settings_kit::{
    ConfigError, EnvVars, de, ensure, env_duration, env_parsed, env_secret, env_string,
    no_placeholder, non_empty, positive, split_list,
};

/// Storage settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// MongoDB connection string; when set the MongoDB store is used (it may hold a password: secret).
    pub mongo_uri: Option<SecretString>,
    /// Database name (Go service: `chat`).
    pub mongo_database: String,
    /// Sessions collection (Go service: `sessions`); helper collections use it as prefix.
    pub mongo_collection: String,
    /// The Go service's key: 32 raw bytes, or 32 bytes in base64 or hex (`ENCRYPTION_KEY`,
    /// `chatbox.encryption_key`).
    pub encryption_key: Option<SecretString>,
    /// Key id given to `encryption_key` in the keyring.
    pub encryption_key_id: Option<String>,
    /// Further keys of the keyring by id (old keys kept for reading, or the new active key).
    pub encryption_keys: BTreeMap<String, SecretString>,
    /// Id of the key that encrypts new data.
    pub active_key_id: Option<String>,
    /// Purge sessions ended more than this many days ago (unset: keep forever).
    pub retention_days: Option<u32>,
    /// Timeout of one ordinary operation.
    #[serde(deserialize_with = "de::duration")]
    pub operation_timeout: Duration,
    /// Timeout of list, metrics, export and maintenance operations (each attempt, and all of them
    /// together).
    #[serde(deserialize_with = "de::duration")]
    pub list_timeout: Duration,
    /// The longest an ordinary operation (one session read or write on a request's path) waits, retries
    /// included, and the longest any operation waits for a reachable server; then the caller gets a
    /// database error.
    #[serde(deserialize_with = "de::duration")]
    pub request_wait: Duration,
    /// Attempts for operations failing with a transient error (1 = no retry).
    pub retry_attempts: u32,
    /// MiB of database pages the embedded store keeps in memory (redb's cache; the operating system's
    /// file cache holds more without counting in the process's memory).
    pub embedded_cache_mb: u32,
    /// How often the MongoDB store sends what it holds back to send together (the daily token usage of
    /// all users, and session counters not yet sent with a session's own update); also the most a crash
    /// can lose of daily usage.
    #[serde(deserialize_with = "de::duration")]
    pub flush_interval: Duration,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            mongo_uri: None,
            mongo_database: "chat".into(),
            mongo_collection: "sessions".into(),
            encryption_key: None,
            encryption_key_id: None,
            encryption_keys: BTreeMap::new(),
            active_key_id: None,
            retention_days: None,
            operation_timeout: Duration::from_secs(10),
            list_timeout: Duration::from_secs(30),
            request_wait: Duration::from_secs(5),
            retry_attempts: 3,
            embedded_cache_mb: 16,
            flush_interval: Duration::from_secs(1),
        }
    }
}

impl StoreConfig {
    /// Applies environment variables over the file values.
    pub fn apply_env(&mut self, env: &EnvVars) -> Result<(), ConfigError> {
        env_secret(env, "MONGO_URI", &mut self.mongo_uri);
        if let Some(db) = env.get("MONGO_DATABASE") {
            self.mongo_database = db.to_string();
        }
        if let Some(coll) = env.get("MONGO_COLLECTION") {
            self.mongo_collection = coll.to_string();
        }
        env_secret(env, "ENCRYPTION_KEY", &mut self.encryption_key);
        env_string(env, "ENCRYPTION_KEY_ID", &mut self.encryption_key_id);
        if let Some(list) = env.get("ENCRYPTION_KEYS") {
            for item in split_list(list) {
                let (id, key) = item.split_once(':').ok_or_else(|| {
                    ConfigError::invalid(
                        "ENCRYPTION_KEYS",
                        "expected comma-separated `id:key` pairs",
                    )
                })?;
                self.encryption_keys
                    .insert(id.trim().to_string(), SecretString::from(key.trim()));
            }
        }
        env_string(env, "ENCRYPTION_ACTIVE_KEY_ID", &mut self.active_key_id);
        if let Some(days) = env_parsed::<u32>(
            env,
            "STORE_RETENTION_DAYS",
            "must be a whole number of days",
        )? {
            self.retention_days = (days > 0).then_some(days);
        }
        env_duration(env, "STORE_OPERATION_TIMEOUT", &mut self.operation_timeout)?;
        env_duration(env, "STORE_LIST_TIMEOUT", &mut self.list_timeout)?;
        env_duration(env, "STORE_REQUEST_WAIT", &mut self.request_wait)?;
        env_duration(env, "STORE_FLUSH_INTERVAL", &mut self.flush_interval)?;
        if let Some(attempts) =
            env_parsed(env, "STORE_RETRY_ATTEMPTS", "must be a positive integer")?
        {
            self.retry_attempts = attempts;
        }
        if let Some(mb) = env_parsed(
            env,
            "STORE_EMBEDDED_CACHE_MB",
            "must be a positive number of MiB",
        )? {
            self.embedded_cache_mb = mb;
        }
        Ok(())
    }

    /// Checks the settings; `production` refuses to run without a configured encryption key.
    pub fn validate(&self, production: bool) -> Result<(), ConfigError> {
        if let Some(uri) = &self.mongo_uri {
            let uri = uri.expose_secret();
            ensure(
                uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://"),
                "store.mongo_uri",
                "must start with mongodb:// or mongodb+srv://",
            )?;
        }
        non_empty("store.mongo_database", &self.mongo_database)?;
        non_empty("store.mongo_collection", &self.mongo_collection)?;
        positive("store.operation_timeout", self.operation_timeout)?;
        positive("store.request_wait", self.request_wait)?;
        positive("store.list_timeout", self.list_timeout)?;
        positive("store.flush_interval", self.flush_interval)?;
        ensure(
            self.retry_attempts > 0,
            "store.retry_attempts",
            "must be at least 1",
        )?;
        ensure(
            self.embedded_cache_mb > 0,
            "store.embedded_cache_mb",
            "must be at least 1",
        )?;
        let primary_id = self.primary_key_id();
        if !valid_key_id(&primary_id) {
            return Err(ConfigError::invalid(
                "store.encryption_key_id",
                "key ids use only letters, digits, '-' and '_' (at most 32)",
            ));
        }
        if let Some(key) = &self.encryption_key {
            check_key("store.encryption_key", key)?;
        }
        for (id, key) in &self.encryption_keys {
            let name = format!("store.encryption_keys.{id}");
            if !valid_key_id(id) {
                return Err(ConfigError::invalid(
                    name,
                    "key ids use only letters, digits, '-' and '_' (at most 32)",
                ));
            }
            if self.encryption_key.is_some() && *id == primary_id {
                return Err(ConfigError::invalid(
                    name,
                    "this id is already used by encryption_key",
                ));
            }
            check_key(&name, key)?;
        }
        if self.active_key_id().is_none() && !self.encryption_keys.is_empty() {
            return Err(ConfigError::invalid(
                "store.active_key_id",
                "several encryption keys are configured: say which one encrypts new data (ENCRYPTION_ACTIVE_KEY_ID)",
            ));
        }
        if let Some(active) = &self.active_key_id {
            let known = (self.encryption_key.is_some() && *active == primary_id)
                || self.encryption_keys.contains_key(active);
            if !known {
                return Err(ConfigError::invalid(
                    "store.active_key_id",
                    format!("no configured key has the id {active:?}"),
                ));
            }
        }
        if production && !self.has_configured_key() {
            return Err(ConfigError::invalid(
                "ENCRYPTION_KEY",
                "production requires an encryption key (32 bytes raw, base64 or hex)",
            ));
        }
        Ok(())
    }

    /// True when at least one key is configured (otherwise development generates one).
    pub fn has_configured_key(&self) -> bool {
        self.encryption_key.is_some() || !self.encryption_keys.is_empty()
    }

    /// The id of `encryption_key` in the keyring.
    pub fn primary_key_id(&self) -> String {
        self.encryption_key_id
            .clone()
            .unwrap_or_else(|| DEFAULT_KEY_ID.to_string())
    }

    /// The id of the key that encrypts new data, if it can be determined.
    pub fn active_key_id(&self) -> Option<String> {
        if let Some(id) = &self.active_key_id {
            return Some(id.clone());
        }
        if self.encryption_key.is_some() {
            return Some(self.primary_key_id());
        }
        if self.encryption_keys.len() == 1 {
            return self.encryption_keys.keys().next().cloned();
        }
        None
    }
}

fn check_key(name: &str, key: &SecretString) -> Result<(), ConfigError> {
    let value = key.expose_secret();
    no_placeholder(name, value)?;
    parse_key(value)
        .map(|_| ())
        .map_err(|e| ConfigError::invalid(name, e.to_string()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> EnvVars {
        EnvVars::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn environment_overrides_file_values() {
        let mut config: StoreConfig =
            toml::from_str("mongo_database = \"x\"\noperation_timeout = \"2s\"").unwrap();
        config
            .apply_env(&env(&[
                ("MONGO_URI", "mongodb://u:p@h/"),
                ("MONGO_COLLECTION", "c"),
                ("ENCRYPTION_KEY", "0123456789abcdef0123456789abcdef"),
                (
                    "ENCRYPTION_KEYS",
                    "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=",
                ),
                ("ENCRYPTION_ACTIVE_KEY_ID", "k1"),
                ("STORE_RETENTION_DAYS", "30"),
                ("STORE_EMBEDDED_CACHE_MB", "8"),
            ]))
            .unwrap();
        assert_eq!(config.embedded_cache_mb, 8);
        assert_eq!(config.mongo_database, "x");
        assert_eq!(config.mongo_collection, "c");
        assert_eq!(config.operation_timeout, Duration::from_secs(2));
        assert_eq!(config.retention_days, Some(30));
        assert_eq!(config.active_key_id().as_deref(), Some("k1"));
        config.validate(true).unwrap();
        let debug = format!("{config:?}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
        assert!(!debug.contains("u:p@h"), "{debug}");
    }

    #[test]
    fn the_embedded_cache_defaults_to_16_mib_and_must_be_positive() {
        let mut config = StoreConfig::default();
        assert_eq!(config.embedded_cache_mb, 16);
        config
            .apply_env(&env(&[("STORE_EMBEDDED_CACHE_MB", "0")]))
            .unwrap();
        let err = config.validate(false).unwrap_err().to_string();
        assert!(err.contains("embedded_cache_mb"), "{err}");
    }

    #[test]
    fn production_refuses_to_run_without_a_key() {
        let config = StoreConfig::default();
        config.validate(false).unwrap();
        let err = config.validate(true).unwrap_err().to_string();
        assert!(err.contains("ENCRYPTION_KEY"), "{err}");
    }

    #[test]
    fn bad_keys_are_refused_without_echoing_them() {
        let mut config = StoreConfig::default();
        config
            .apply_env(&env(&[("ENCRYPTION_KEY", "tooshort-secret")]))
            .unwrap();
        let err = config.validate(false).unwrap_err().to_string();
        assert!(!err.contains("tooshort-secret"), "{err}");
        let mut config = StoreConfig::default();
        config
            .apply_env(&env(&[(
                "ENCRYPTION_KEY",
                "PLACEHOLDER_ENCRYPTION_KEY_32_BYTES",
            )]))
            .unwrap();
        assert!(config.validate(false).is_err());
    }

    #[test]
    fn several_keys_need_an_active_id() {
        let mut config = StoreConfig::default();
        config
            .apply_env(&env(&[(
                "ENCRYPTION_KEYS",
                "a:0123456789abcdef0123456789abcdef,b:fedcba9876543210fedcba9876543210",
            )]))
            .unwrap();
        assert!(config.validate(false).is_err());
        config.active_key_id = Some("b".into());
        config.validate(false).unwrap();
        config.active_key_id = Some("zz".into());
        assert!(config.validate(false).is_err());
    }
}
