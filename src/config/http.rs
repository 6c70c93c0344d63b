//! The HTTP API protections of `[chatbox]`: CORS, trusted proxies, metrics networks, rate limits.

use std::net::IpAddr;
use std::time::Duration;

use ipnet::IpNet;

use super::raw::ChatboxSection;
use crate::settings_kit::{
    ConfigError, EnvVars, count_setting, duration_setting, list_setting, no_placeholder,
};

/// The default trusted proxies: the private networks.
const PRIVATE_NETWORKS: &str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16";
/// The default networks allowed to read the metrics: the private networks and loopback.
const METRICS_NETWORKS: &str = "10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,127.0.0.0/8";

/// HTTP API protections.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// CORS origins; empty disables CORS.
    pub cors_allowed_origins: Vec<String>,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` are trusted.
    pub trusted_proxies: Vec<IpNet>,
    /// Networks allowed to read `{P}/metrics/prometheus`; empty allows all.
    pub metrics_allowed_networks: Vec<IpNet>,
    /// Admin requests per admin per window.
    pub admin_rate_limit: usize,
    /// Window of `admin_rate_limit`.
    pub admin_rate_window: Duration,
    /// Public requests per client IP per minute.
    pub public_rate_limit: usize,
}

impl HttpSettings {
    /// Reads the HTTP keys of `[chatbox]` with their variables, and checks them.
    pub(super) fn build(env: &EnvVars, c: &ChatboxSection) -> Result<Self, ConfigError> {
        let cors_allowed_origins = list_setting(
            env,
            "CORS_ALLOWED_ORIGINS",
            c.cors_allowed_origins.as_deref(),
            "",
        );
        for origin in &cors_allowed_origins {
            no_placeholder("chatbox.cors_allowed_origins", origin)?;
        }
        Ok(Self {
            cors_allowed_origins,
            trusted_proxies: networks(
                "chatbox.trusted_proxies",
                list_setting(
                    env,
                    "TRUSTED_PROXIES",
                    c.trusted_proxies.as_deref(),
                    PRIVATE_NETWORKS,
                ),
            )?,
            metrics_allowed_networks: networks(
                "chatbox.metrics_allowed_networks",
                list_setting(
                    env,
                    "METRICS_ALLOWED_NETWORKS",
                    c.metrics_allowed_networks.as_deref(),
                    METRICS_NETWORKS,
                ),
            )?,
            admin_rate_limit: count_setting(env, "ADMIN_RATE_LIMIT", c.admin_rate_limit, 20)?,
            admin_rate_window: duration_setting(
                env,
                "ADMIN_RATE_WINDOW",
                "chatbox.admin_rate_window",
                c.admin_rate_window.as_deref(),
                Duration::from_secs(60),
            )?,
            public_rate_limit: count_setting(env, "PUBLIC_RATE_LIMIT", c.public_rate_limit, 60)?,
        })
    }
}

/// Parses networks (`10.0.0.0/8`) or single addresses (`10.0.0.1`); errors name `key` and the item.
fn networks(key: &str, items: Vec<String>) -> Result<Vec<IpNet>, ConfigError> {
    items
        .iter()
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| ConfigError::invalid(key, format!("{item:?} is not an IP network")))
        })
        .collect()
}
