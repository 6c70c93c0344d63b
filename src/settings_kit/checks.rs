//! Value checks shared by the settings sections; each error names the key at fault and never echoes a
//! value that may be secret.

use std::net::IpAddr;
use std::time::Duration;

use super::{ConfigError, contains_placeholder};

/// Refuses with `reason` under `key` unless `ok`.
pub fn ensure(
    ok: bool,
    key: impl Into<String>,
    reason: impl Into<String>,
) -> Result<(), ConfigError> {
    if ok {
        Ok(())
    } else {
        Err(ConfigError::invalid(key, reason))
    }
}

/// Refuses a zero duration: "must be positive".
pub fn positive(key: &str, value: Duration) -> Result<(), ConfigError> {
    ensure(!value.is_zero(), key, "must be positive")
}

/// Refuses a count above `max`: "must be at most {max}".
pub fn at_most(key: &str, value: u32, max: u32) -> Result<(), ConfigError> {
    ensure(value <= max, key, format!("must be at most {max}"))
}

/// Refuses an empty text: "must not be empty".
pub fn non_empty(key: &str, value: &str) -> Result<(), ConfigError> {
    ensure(!value.is_empty(), key, "must not be empty")
}

/// Refuses a template placeholder (see [`contains_placeholder`]) without echoing the value.
pub fn no_placeholder(key: &str, value: &str) -> Result<(), ConfigError> {
    ensure(
        !contains_placeholder(value),
        key,
        "contains a placeholder value",
    )
}

/// Parses an absolute `http://` or `https://` URL; the value is left out of errors (webhook URLs often
/// carry a token).
pub fn http_url(key: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(text.trim())
        .map_err(|_| ConfigError::invalid(key, "is not a valid URL"))?;
    ensure(
        matches!(url.scheme(), "http" | "https") && url.host_str().is_some(),
        key,
        "must be an absolute http:// or https:// URL",
    )?;
    Ok(url)
}

/// True for `localhost` and loopback IP addresses (IPv6 with or without brackets).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_name_the_key_and_keep_the_value_out() {
        let err = |r: Result<(), ConfigError>| r.map_err(|e| e.to_string()).err();
        assert_eq!(err(ensure(true, "k", "no")), None);
        assert_eq!(err(ensure(false, "k", "no")).as_deref(), Some("k: no"));
        assert_eq!(
            err(positive("t", Duration::ZERO)).as_deref(),
            Some("t: must be positive")
        );
        assert_eq!(err(positive("t", Duration::from_millis(1))), None);
        assert_eq!(
            err(at_most("r", 11, 10)).as_deref(),
            Some("r: must be at most 10")
        );
        assert_eq!(
            err(non_empty("d", "")).as_deref(),
            Some("d: must not be empty")
        );
        assert_eq!(
            err(no_placeholder("s", "CHANGE_ME")).as_deref(),
            Some("s: contains a placeholder value")
        );
        let url = http_url("u", "ftp://h/t0k3n").unwrap_err().to_string();
        assert!(url.starts_with("u:") && !url.contains("t0k3n"), "{url}");
        assert!(http_url("u", "https://h.example/x").is_ok());
        for host in ["localhost", "127.0.0.1", "[::1]", "::1"] {
            assert!(is_loopback(host), "{host}");
        }
        assert!(!is_loopback("10.0.0.1"));
    }
}
