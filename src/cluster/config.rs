//! The `[redis]` configuration section: setting its URL turns cluster mode on.
//!
//! | key (`[redis]`) | env           | default |
//! |-----------------|---------------|---------|
//! | `url`           | `REDIS_URL`   | unset → one node, nothing shared but the store; several URLs separated by commas → one shard each |
//! | `lease`         | `REDIS_LEASE` | `10s`: how long a node that stops answering keeps its users |

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::settings_kit::{
    ConfigError, EnvVars, de, ensure, env_duration, env_secret, no_placeholder, positive,
};

/// Cluster settings.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RedisConfig {
    /// `redis://` or `rediss://` URL of the Redis every node shares (it may hold a password: secret), or
    /// several separated by commas: users are spread over them by a stable hash of their id, and every
    /// node must list the same URLs in the same order.
    pub url: Option<SecretString>,
    /// Lease of a node on the users it serves and of its heartbeat: a node killed without a goodbye is
    /// taken over by the others within this time.
    #[serde(deserialize_with = "de::duration")]
    pub lease: Duration,
}

impl Default for RedisConfig {
    fn default() -> Self {
        Self {
            url: None,
            lease: Duration::from_secs(10),
        }
    }
}

impl RedisConfig {
    /// Overlays `REDIS_URL` and `REDIS_LEASE`.
    pub fn apply_env(&mut self, env: &EnvVars) -> Result<(), ConfigError> {
        env_secret(env, "REDIS_URL", &mut self.url);
        env_duration(env, "REDIS_LEASE", &mut self.lease)
    }

    /// Checks the URL's scheme and the lease; `has_shared_store` says whether the store is MongoDB (the
    /// embedded store belongs to one node and cannot back several).
    pub fn validate(&self, has_shared_store: bool) -> Result<(), ConfigError> {
        positive("REDIS_LEASE", self.lease)?;
        ensure(
            self.lease >= Duration::from_secs(2),
            "REDIS_LEASE",
            "must be at least 2s (the lease is renewed every third of it)",
        )?;
        if self.url.is_none() {
            return Ok(());
        }
        let urls = self.urls();
        for url in &urls {
            no_placeholder("REDIS_URL", url)?;
            ensure(
                url.starts_with("redis://") || url.starts_with("rediss://"),
                "REDIS_URL",
                "each URL must start with redis:// or rediss://",
            )?;
        }
        let distinct: std::collections::HashSet<&String> = urls.iter().collect();
        ensure(
            !urls.is_empty() && distinct.len() == urls.len(),
            "REDIS_URL",
            "lists the same Redis twice (or none)",
        )?;
        ensure(
            has_shared_store,
            "REDIS_URL",
            "cluster mode needs the shared MongoDB store: set MONGO_URI too (the embedded store belongs \
             to one node)",
        )
    }

    /// Whether cluster mode is on.
    pub fn enabled(&self) -> bool {
        self.url.is_some()
    }

    /// The URLs of the Redis shards, in order (empty without cluster mode).
    pub fn urls(&self) -> Vec<String> {
        self.url.as_ref().map_or_else(Vec::new, |url| {
            url.expose_secret()
                .split(',')
                .map(str::trim)
                .filter(|u| !u.is_empty())
                .map(str::to_string)
                .collect()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_url(url: &str) -> RedisConfig {
        RedisConfig {
            url: Some(SecretString::from(url)),
            ..RedisConfig::default()
        }
    }

    #[test]
    fn cluster_mode_needs_the_shared_store_and_a_redis_url() {
        assert!(RedisConfig::default().validate(false).is_ok());
        assert!(with_url("redis://127.0.0.1:6379/").validate(true).is_ok());
        let embedded = with_url("redis://127.0.0.1:6379/")
            .validate(false)
            .unwrap_err();
        assert!(embedded.to_string().contains("MONGO_URI"), "{embedded}");
        assert!(with_url("http://127.0.0.1:6379/").validate(true).is_err());
        let short = RedisConfig {
            lease: Duration::from_secs(1),
            ..with_url("redis://h/")
        };
        assert!(short.validate(true).is_err());
    }

    #[test]
    fn several_urls_make_shards() {
        let two = with_url("redis://a:6379/, redis://b:6379/");
        assert!(two.validate(true).is_ok());
        assert_eq!(two.urls(), ["redis://a:6379/", "redis://b:6379/"]);
        assert!(with_url("redis://a/,http://b/").validate(true).is_err());
        assert!(with_url("redis://a/,redis://a/").validate(true).is_err());
        assert!(with_url(",").validate(true).is_err());
    }

    #[test]
    fn the_environment_sets_url_and_lease() {
        let mut config = RedisConfig::default();
        let env = EnvVars::from_pairs([("REDIS_URL", "redis://r:6379/"), ("REDIS_LEASE", "4s")]);
        config.apply_env(&env).unwrap();
        assert!(config.enabled());
        assert_eq!(config.lease, Duration::from_secs(4));
    }
}
