//! The `[notification]` configuration section and its environment variables.
//!
//! | key (`[notification]`) | env                    | default |
//! |------------------------|------------------------|---------|
//! | `admin_panel_url` (`adminPanelURL`) | `ADMIN_PANEL_URL` | unset: mails say "Please check the admin panel" |
//! | `admin_emails` (`adminEmails`, array or comma string) | `ADMIN_EMAILS` (comma-separated) | none |
//! | `email_from`           | `EMAIL_FROM`           | none (required with `smtp_host`) |
//! | `smtp_host`            | `SMTP_HOST`            | unset: email disabled |
//! | `smtp_port`            | `SMTP_PORT`            | 587 (`starttls`), 465 (`tls`), 25 (`none`) |
//! | `smtp_username`        | `SMTP_USER`            | none (secret) |
//! | `smtp_password`        | `SMTP_PASS`            | none (secret) |
//! | `smtp_tls`             | `SMTP_TLS`             | `starttls` (`none`, `starttls`, `tls`) |
//! | `smtp_ca_file`         | `SMTP_CA_FILE`         | unset: the built-in public roots only |
//! | `smtp_timeout`         | `SMTP_TIMEOUT`         | `30s` per attempt |
//! | `email_retries`        | `EMAIL_RETRIES`        | 2 (retries after the first attempt) |
//! | `webhook_url`          | `WEBHOOK_URL`          | unset: webhook disabled (secret: it often holds a token) |
//! | `webhook_secret`       | `WEBHOOK_SECRET`       | none (secret; required in production with a webhook) |
//! | `webhook_retries`      | `WEBHOOK_RETRIES`      | 3 (retries after the first attempt) |
//! | `webhook_timeout`      | `WEBHOOK_TIMEOUT`      | `10s` per attempt |
//! | `retry_backoff`        | `NOTIFY_RETRY_BACKOFF` | `1s`, doubled per retry, capped at 30 s |
//! | `admin_phones` (`adminPhones`, array or comma string) | `ADMIN_PHONES` (comma-separated) | none |
//!
//! | key (`[sms]`, the Go service's section) | env         | default |
//! |------------------------|------------------------|---------|
//! | `provider`             | —                      | `twilio` (the only one) |
//! | `account_sid` (`accountSID`) | `SMS_ACCOUNT_SID` | unset: SMS disabled (secret) |
//! | `auth_token` (`authToken`) | `SMS_AUTH_TOKEN`   | none (secret) |
//! | `from_number` (`fromNumber`) | `SMS_FROM_NUMBER` | none (E.164) |
//! | `api_base_url`         | `SMS_API_BASE_URL`     | `https://api.twilio.com` |
//! | `timeout`              | `SMS_TIMEOUT`          | `10s` per attempt |
//! | `retries`              | `SMS_RETRIES`          | 3 (retries after the first attempt) |

use std::net::IpAddr;
use std::time::Duration;

use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Deserializer};

use crate::config::{ConfigError, EnvVars, contains_placeholder, parse_duration};

/// Most retries accepted for one channel.
const MAX_RETRIES: u32 = 10;
/// Shortest webhook secret accepted in production, in bytes.
const MIN_PRODUCTION_SECRET: usize = 16;
/// Twilio's REST API.
pub const TWILIO_API_BASE_URL: &str = "https://api.twilio.com";

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Plain SMTP (loopback relays and tests; refused in production with credentials to other hosts).
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465).
    Tls,
}

impl SmtpTls {
    /// Parses `none`, `starttls` or `tls` (case-insensitive).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "none" => Some(Self::None),
            "starttls" => Some(Self::Starttls),
            "tls" => Some(Self::Tls),
            _ => None,
        }
    }

    /// The port used when `smtp_port` is not set.
    pub fn default_port(self) -> u16 {
        match self {
            Self::None => 25,
            Self::Starttls => 587,
            Self::Tls => 465,
        }
    }
}

/// Help-request notification settings: `[notification]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NotifyConfig {
    /// Base URL of the admin panel; links are `<admin_panel_url>/<session_id>`.
    #[serde(alias = "adminPanelURL")]
    pub admin_panel_url: Option<String>,
    /// Recipients of help-request emails (a TOML array or one comma-separated string).
    #[serde(alias = "adminEmails", deserialize_with = "de_list")]
    pub admin_emails: Vec<String>,
    /// Sender address, `addr@example.com` or `Name <addr@example.com>`.
    pub email_from: Option<String>,
    /// SMTP server; email is sent only when it is set.
    pub smtp_host: Option<String>,
    /// SMTP port (default from `smtp_tls`).
    pub smtp_port: Option<u16>,
    /// SMTP user name.
    pub smtp_username: Option<SecretString>,
    /// SMTP password.
    pub smtp_password: Option<SecretString>,
    /// Connection protection.
    pub smtp_tls: SmtpTls,
    /// PEM file of extra root certificates trusted for the SMTP server (a private CA), on top of the
    /// built-in public roots.
    pub smtp_ca_file: Option<std::path::PathBuf>,
    /// Timeout of one SMTP attempt.
    #[serde(deserialize_with = "de_duration")]
    pub smtp_timeout: Duration,
    /// Retries of a failed email after the first attempt (connection errors and 4xx replies).
    pub email_retries: u32,
    /// Receiver of signed JSON POSTs; the webhook is used only when it is set.
    pub webhook_url: Option<SecretString>,
    /// HMAC-SHA256 key of `X-Chatbox-Signature`.
    pub webhook_secret: Option<SecretString>,
    /// Retries after the first attempt (connection errors, timeouts, HTTP 5xx and 429).
    pub webhook_retries: u32,
    /// Timeout of one webhook attempt.
    #[serde(deserialize_with = "de_duration")]
    pub webhook_timeout: Duration,
    /// Delay before the first retry; doubled for each further retry, capped at 30 s.
    #[serde(deserialize_with = "de_duration")]
    pub retry_backoff: Duration,
    /// Recipients of help-request SMS, E.164 (a TOML array or one comma-separated string).
    #[serde(alias = "adminPhones", deserialize_with = "de_list")]
    pub admin_phones: Vec<String>,
    /// The SMS provider account: the top-level `[sms]` section, moved here when the file is read.
    #[serde(skip)]
    pub sms: SmsConfig,
}

/// The SMS provider account (Twilio): `[sms]`, the Go service's section and keys.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SmsConfig {
    /// `twilio`, the only provider (the Go file names it).
    pub provider: Option<String>,
    /// Twilio account SID (`AC...`); SMS is configured when it or the token is set.
    #[serde(alias = "accountSID")]
    pub account_sid: Option<SecretString>,
    /// Twilio auth token.
    #[serde(alias = "authToken")]
    pub auth_token: Option<SecretString>,
    /// The sending number, E.164.
    #[serde(alias = "fromNumber")]
    pub from_number: Option<String>,
    /// Base URL of the Messages API; requests go to
    /// `<api_base_url>/2010-04-01/Accounts/<account_sid>/Messages.json`.
    pub api_base_url: String,
    /// Timeout of one attempt.
    #[serde(deserialize_with = "de_duration")]
    pub timeout: Duration,
    /// Retries after the first attempt (connection errors, timeouts, HTTP 5xx and 429).
    pub retries: u32,
}

impl Default for SmsConfig {
    fn default() -> Self {
        Self {
            provider: None,
            account_sid: None,
            auth_token: None,
            from_number: None,
            api_base_url: TWILIO_API_BASE_URL.to_string(),
            timeout: Duration::from_secs(10),
            retries: 3,
        }
    }
}

impl SmsConfig {
    /// Applies `SMS_*` environment variables over the file values.
    pub fn apply_env(&mut self, env: &EnvVars) -> Result<(), ConfigError> {
        if let Some(sid) = env.get("SMS_ACCOUNT_SID") {
            self.account_sid = Some(SecretString::from(sid));
        }
        if let Some(token) = env.get("SMS_AUTH_TOKEN") {
            self.auth_token = Some(SecretString::from(token));
        }
        if let Some(from) = env.get("SMS_FROM_NUMBER") {
            self.from_number = Some(from.to_string());
        }
        if let Some(url) = env.get("SMS_API_BASE_URL") {
            self.api_base_url = url.to_string();
        }
        env_duration(env, "SMS_TIMEOUT", &mut self.timeout)?;
        env_retries(env, "SMS_RETRIES", &mut self.retries)?;
        Ok(())
    }

    /// Checks the values that are set; completeness is [`NotifyConfig::sms_missing`]'s business.
    fn validate(&self, production: bool) -> Result<(), ConfigError> {
        if let Some(provider) = &self.provider
            && !provider.trim().eq_ignore_ascii_case("twilio")
        {
            return Err(ConfigError::invalid(
                "sms.provider",
                "only \"twilio\" is supported",
            ));
        }
        if let Some(sid) = &self.account_sid {
            let sid = sid.expose_secret();
            if contains_placeholder(sid) {
                return Err(ConfigError::invalid(
                    "sms.account_sid",
                    "contains a placeholder value",
                ));
            }
            if !sid.chars().all(|c| c.is_ascii_alphanumeric()) {
                return Err(ConfigError::invalid(
                    "sms.account_sid",
                    "must be letters and digits only (a Twilio account SID, AC...) (SMS_ACCOUNT_SID)",
                ));
            }
        }
        if let Some(token) = &self.auth_token
            && contains_placeholder(token.expose_secret())
        {
            return Err(ConfigError::invalid(
                "sms.auth_token",
                "contains a placeholder value",
            ));
        }
        if let Some(from) = &self.from_number
            && !is_e164(from)
        {
            return Err(ConfigError::invalid(
                "sms.from_number",
                "must be an E.164 number: + and up to 15 digits, e.g. +14155550100 (SMS_FROM_NUMBER)",
            ));
        }
        let url = check_http_url("sms.api_base_url", &self.api_base_url)?;
        if production && url.scheme() != "https" && !is_loopback(url.host_str().unwrap_or_default())
        {
            return Err(ConfigError::invalid(
                "sms.api_base_url",
                "must be https in production: every request carries the auth token (SMS_API_BASE_URL)",
            ));
        }
        if self.timeout.is_zero() {
            return Err(ConfigError::invalid("sms.timeout", "must be positive"));
        }
        if self.retries > MAX_RETRIES {
            return Err(ConfigError::invalid(
                "sms.retries",
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        Ok(())
    }
}

/// True for E.164 numbers: `+`, a non-zero digit, at most 15 digits in all.
pub fn is_e164(number: &str) -> bool {
    let Some(digits) = number.strip_prefix('+') else {
        return false;
    };
    (2..=15).contains(&digits.len())
        && digits.chars().all(|c| c.is_ascii_digit())
        && !digits.starts_with('0')
}

impl Default for NotifyConfig {
    fn default() -> Self {
        Self {
            admin_panel_url: None,
            admin_emails: Vec::new(),
            email_from: None,
            smtp_host: None,
            smtp_port: None,
            smtp_username: None,
            smtp_password: None,
            smtp_tls: SmtpTls::default(),
            smtp_ca_file: None,
            smtp_timeout: Duration::from_secs(30),
            email_retries: 2,
            webhook_url: None,
            webhook_secret: None,
            webhook_retries: 3,
            webhook_timeout: Duration::from_secs(10),
            retry_backoff: Duration::from_secs(1),
            admin_phones: Vec::new(),
            sms: SmsConfig::default(),
        }
    }
}

/// A list written as a TOML array or as one comma-separated string (the Go service's form).
#[derive(Deserialize)]
#[serde(untagged)]
enum ListForm {
    List(Vec<String>),
    Joined(String),
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn de_list<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    Ok(match ListForm::deserialize(deserializer)? {
        ListForm::List(items) => items
            .iter()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect(),
        ListForm::Joined(text) => split_list(&text),
    })
}

fn de_duration<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_duration(&text).map_err(serde::de::Error::custom)
}

fn env_duration(env: &EnvVars, name: &str, target: &mut Duration) -> Result<(), ConfigError> {
    if let Some(value) = env.get(name) {
        *target = parse_duration(value).map_err(|e| ConfigError::invalid(name, e))?;
    }
    Ok(())
}

fn env_retries(env: &EnvVars, name: &str, target: &mut u32) -> Result<(), ConfigError> {
    if let Some(value) = env.get(name) {
        *target = value
            .parse()
            .map_err(|_| ConfigError::invalid(name, "must be a non-negative integer"))?;
    }
    Ok(())
}

/// True for `localhost` and loopback IP addresses (IPv6 with or without brackets).
fn is_loopback(host: &str) -> bool {
    let host = host.trim().trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

fn check_http_url(key: &str, text: &str) -> Result<reqwest::Url, ConfigError> {
    // The value itself is left out of the message: webhook URLs often carry a token.
    let url = reqwest::Url::parse(text.trim())
        .map_err(|_| ConfigError::invalid(key, "is not a valid URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(ConfigError::invalid(
            key,
            "must be an absolute http:// or https:// URL",
        ));
    }
    Ok(url)
}

impl NotifyConfig {
    /// Applies environment variables over the file values.
    pub fn apply_env(&mut self, env: &EnvVars) -> Result<(), ConfigError> {
        if let Some(url) = env.get("ADMIN_PANEL_URL") {
            self.admin_panel_url = Some(url.to_string());
        }
        if let Some(list) = env.get("ADMIN_EMAILS") {
            self.admin_emails = split_list(list);
        }
        if let Some(from) = env.get("EMAIL_FROM") {
            self.email_from = Some(from.to_string());
        }
        if let Some(host) = env.get("SMTP_HOST") {
            self.smtp_host = Some(host.to_string());
        }
        if let Some(port) = env.get("SMTP_PORT") {
            self.smtp_port = Some(
                port.parse()
                    .map_err(|_| ConfigError::invalid("SMTP_PORT", "must be a port number"))?,
            );
        }
        if let Some(user) = env.get("SMTP_USER") {
            self.smtp_username = Some(SecretString::from(user));
        }
        if let Some(pass) = env.get("SMTP_PASS") {
            self.smtp_password = Some(SecretString::from(pass));
        }
        if let Some(tls) = env.get("SMTP_TLS") {
            self.smtp_tls = SmtpTls::parse(tls).ok_or_else(|| {
                ConfigError::invalid("SMTP_TLS", "must be \"none\", \"starttls\" or \"tls\"")
            })?;
        }
        if let Some(path) = env.get("SMTP_CA_FILE") {
            self.smtp_ca_file = Some(path.into());
        }
        env_duration(env, "SMTP_TIMEOUT", &mut self.smtp_timeout)?;
        env_retries(env, "EMAIL_RETRIES", &mut self.email_retries)?;
        if let Some(url) = env.get("WEBHOOK_URL") {
            self.webhook_url = Some(SecretString::from(url));
        }
        if let Some(secret) = env.get("WEBHOOK_SECRET") {
            self.webhook_secret = Some(SecretString::from(secret));
        }
        env_retries(env, "WEBHOOK_RETRIES", &mut self.webhook_retries)?;
        env_duration(env, "WEBHOOK_TIMEOUT", &mut self.webhook_timeout)?;
        env_duration(env, "NOTIFY_RETRY_BACKOFF", &mut self.retry_backoff)?;
        if let Some(list) = env.get("ADMIN_PHONES") {
            self.admin_phones = split_list(list);
        }
        self.sms.apply_env(env)
    }

    /// Checks the settings. `production` also refuses a webhook without a secret, SMTP credentials sent
    /// without TLS to a host other than loopback, half an SMS configuration and a plain-HTTP SMS API.
    pub fn validate(&self, production: bool) -> Result<(), ConfigError> {
        for (position, phone) in self.admin_phones.iter().enumerate() {
            // The number itself stays out of the message: phone numbers are not logged.
            if !is_e164(phone) {
                return Err(ConfigError::invalid(
                    "notification.admin_phones",
                    format!(
                        "entry {} is not an E.164 number: + and up to 15 digits, e.g. +14155550100 (ADMIN_PHONES)",
                        position + 1
                    ),
                ));
            }
        }
        self.sms.validate(production)?;
        if production && let Some((key, hint)) = self.sms_missing() {
            return Err(ConfigError::invalid(
                key,
                format!("is required in production when SMS is configured ({hint})"),
            ));
        }
        if let Some(url) = self
            .admin_panel_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        {
            check_http_url("notification.admin_panel_url", url)?;
        }
        for email in &self.admin_emails {
            email.parse::<Mailbox>().map_err(|_| {
                ConfigError::invalid(
                    "notification.admin_emails",
                    format!("{email:?} is not an email address"),
                )
            })?;
        }
        if let Some(from) = &self.email_from {
            from.parse::<Mailbox>().map_err(|_| {
                ConfigError::invalid(
                    "notification.email_from",
                    format!("{from:?} is not an email address"),
                )
            })?;
        }
        if self.smtp_port == Some(0) {
            return Err(ConfigError::invalid(
                "notification.smtp_port",
                "must be a port number",
            ));
        }
        if self.smtp_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "notification.smtp_timeout",
                "must be positive",
            ));
        }
        if self.webhook_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "notification.webhook_timeout",
                "must be positive",
            ));
        }
        if self.email_retries > MAX_RETRIES {
            return Err(ConfigError::invalid(
                "notification.email_retries",
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        if self.webhook_retries > MAX_RETRIES {
            return Err(ConfigError::invalid(
                "notification.webhook_retries",
                format!("must be at most {MAX_RETRIES}"),
            ));
        }
        if let Some(password) = &self.smtp_password
            && contains_placeholder(password.expose_secret())
        {
            return Err(ConfigError::invalid(
                "notification.smtp_password",
                "contains a placeholder value",
            ));
        }
        if self.smtp_username.is_some() != self.smtp_password.is_some() {
            return Err(ConfigError::invalid(
                "notification.smtp_password",
                "smtp_username and smtp_password (SMTP_USER, SMTP_PASS) are set together or not at all",
            ));
        }
        if let Some(host) = &self.smtp_host {
            if host.trim().is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/') {
                return Err(ConfigError::invalid(
                    "notification.smtp_host",
                    "must be a host name or IP address",
                ));
            }
            if self.email_from.is_none() {
                return Err(ConfigError::invalid(
                    "notification.email_from",
                    "is required when smtp_host is set (EMAIL_FROM)",
                ));
            }
            if self.admin_emails.is_empty() {
                return Err(ConfigError::invalid(
                    "notification.admin_emails",
                    "needs at least one recipient when smtp_host is set (ADMIN_EMAILS)",
                ));
            }
            if production
                && self.smtp_username.is_some()
                && self.smtp_tls == SmtpTls::None
                && !is_loopback(host)
            {
                return Err(ConfigError::invalid(
                    "notification.smtp_tls",
                    "SMTP credentials would be sent in plain text: use \"starttls\" or \"tls\" in production",
                ));
            }
        }
        if let Some(secret) = &self.webhook_secret {
            let secret = secret.expose_secret();
            if contains_placeholder(secret) {
                return Err(ConfigError::invalid(
                    "notification.webhook_secret",
                    "contains a placeholder value",
                ));
            }
            if production && secret.len() < MIN_PRODUCTION_SECRET {
                return Err(ConfigError::invalid(
                    "notification.webhook_secret",
                    format!("must be at least {MIN_PRODUCTION_SECRET} bytes in production"),
                ));
            }
        }
        if let Some(url) = &self.webhook_url {
            check_http_url("notification.webhook_url", url.expose_secret())?;
            if production && self.webhook_secret.is_none() {
                return Err(ConfigError::invalid(
                    "notification.webhook_secret",
                    "is required in production when webhook_url is set (WEBHOOK_SECRET)",
                ));
            }
        }
        Ok(())
    }

    /// True when email is configured.
    pub fn email_enabled(&self) -> bool {
        self.smtp_host.is_some()
    }

    /// True when the webhook is configured.
    pub fn webhook_enabled(&self) -> bool {
        self.webhook_url.is_some()
    }

    /// True when SMS is configured: an account SID or auth token is set (complete or not).
    pub fn sms_configured(&self) -> bool {
        self.sms.account_sid.is_some() || self.sms.auth_token.is_some()
    }

    /// When SMS is configured but cannot be sent, the first missing setting: its key and a hint naming
    /// its environment variable. Production refuses to start then; development runs without SMS.
    pub fn sms_missing(&self) -> Option<(&'static str, &'static str)> {
        if !self.sms_configured() {
            return None;
        }
        if self.sms.account_sid.is_none() {
            Some(("sms.account_sid", "SMS_ACCOUNT_SID"))
        } else if self.sms.auth_token.is_none() {
            Some(("sms.auth_token", "SMS_AUTH_TOKEN"))
        } else if self.sms.from_number.is_none() {
            Some(("sms.from_number", "SMS_FROM_NUMBER"))
        } else if self.admin_phones.is_empty() {
            Some((
                "notification.admin_phones",
                "ADMIN_PHONES, at least one number",
            ))
        } else {
            None
        }
    }

    /// True when SMS is configured completely.
    pub fn sms_enabled(&self) -> bool {
        self.sms_configured() && self.sms_missing().is_none()
    }

    /// The SMTP port in use.
    pub fn smtp_port(&self) -> u16 {
        self.smtp_port
            .unwrap_or_else(|| self.smtp_tls.default_port())
    }

    /// The admin panel base URL without a trailing slash, if set.
    pub fn admin_panel_base(&self) -> Option<String> {
        self.admin_panel_url
            .as_deref()
            .map(|u| u.trim().trim_end_matches('/').to_string())
            .filter(|u| !u.is_empty())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn parse(text: &str) -> Result<NotifyConfig, toml::de::Error> {
        toml::from_str(text)
    }

    fn env(pairs: &[(&str, &str)]) -> EnvVars {
        EnvVars::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    fn smtp_base() -> NotifyConfig {
        let mut config = NotifyConfig::default();
        config
            .apply_env(&env(&[
                ("SMTP_HOST", "smtp.example.com"),
                ("EMAIL_FROM", "Chat <noreply@example.com>"),
                ("ADMIN_EMAILS", "a@example.com, b@example.com"),
            ]))
            .unwrap();
        config
    }

    #[test]
    fn nothing_configured_is_valid_everywhere() {
        let config = NotifyConfig::default();
        config.validate(true).unwrap();
        assert!(!config.email_enabled());
        assert!(!config.webhook_enabled());
        assert_eq!(config.smtp_port(), 587);
    }

    #[test]
    fn admin_emails_accept_an_array_or_a_comma_string_and_go_spellings() {
        let a = parse("admin_emails = [\"a@example.com\", \" b@example.com \"]").unwrap();
        assert_eq!(a.admin_emails, ["a@example.com", "b@example.com"]);
        let b = parse("adminEmails = \"a@example.com,b@example.com,\"\nadminPanelURL = \"https://x.example/admin/\"").unwrap();
        assert_eq!(b.admin_emails, ["a@example.com", "b@example.com"]);
        assert_eq!(
            b.admin_panel_base().as_deref(),
            Some("https://x.example/admin")
        );
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let err = parse("smtp_hots = \"x\"").unwrap_err().to_string();
        assert!(err.contains("smtp_hots"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let mut config =
            parse("smtp_host = \"file.example\"\nsmtp_tls = \"tls\"\nwebhook_retries = 1").unwrap();
        assert_eq!(config.smtp_port(), 465);
        config
            .apply_env(&env(&[
                ("SMTP_HOST", "env.example"),
                ("SMTP_PORT", "2525"),
                ("SMTP_TLS", "NONE"),
                ("WEBHOOK_RETRIES", "5"),
                ("NOTIFY_RETRY_BACKOFF", "20ms"),
            ]))
            .unwrap();
        assert_eq!(config.smtp_host.as_deref(), Some("env.example"));
        assert_eq!(config.smtp_port(), 2525);
        assert_eq!(config.smtp_tls, SmtpTls::None);
        assert_eq!(config.webhook_retries, 5);
        assert_eq!(config.retry_backoff, Duration::from_millis(20));
    }

    #[test]
    fn bad_environment_values_name_their_variable() {
        for (name, value) in [
            ("SMTP_PORT", "x"),
            ("SMTP_TLS", "ssl"),
            ("WEBHOOK_RETRIES", "-1"),
            ("WEBHOOK_TIMEOUT", "soon"),
        ] {
            let err = NotifyConfig::default()
                .apply_env(&env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn email_needs_a_sender_and_recipients() {
        smtp_base().validate(true).unwrap();
        let mut c = smtp_base();
        c.email_from = None;
        assert!(
            c.validate(false)
                .unwrap_err()
                .to_string()
                .contains("notification.email_from")
        );
        let mut c = smtp_base();
        c.admin_emails.clear();
        assert!(
            c.validate(false)
                .unwrap_err()
                .to_string()
                .contains("notification.admin_emails")
        );
        let mut c = smtp_base();
        c.admin_emails.push("not an address".into());
        assert!(
            c.validate(false)
                .unwrap_err()
                .to_string()
                .contains("notification.admin_emails")
        );
    }

    #[test]
    fn production_refuses_plaintext_credentials_to_a_remote_host() {
        let mut c = smtp_base();
        c.apply_env(&env(&[
            ("SMTP_TLS", "none"),
            ("SMTP_USER", "u"),
            ("SMTP_PASS", "p"),
        ]))
        .unwrap();
        c.validate(false).unwrap();
        let err = c.validate(true).unwrap_err().to_string();
        assert!(err.contains("notification.smtp_tls"), "{err}");
        for host in ["localhost", "127.0.0.1", "[::1]"] {
            c.smtp_host = Some(host.into());
            c.validate(true).unwrap();
        }
        c.smtp_password = None;
        assert!(
            c.validate(false)
                .unwrap_err()
                .to_string()
                .contains("smtp_password")
        );
    }

    #[test]
    fn production_refuses_an_unsigned_webhook() {
        let mut c = NotifyConfig::default();
        c.apply_env(&env(&[(
            "WEBHOOK_URL",
            "https://hooks.example/abc?token=t0k3n",
        )]))
        .unwrap();
        c.validate(false).unwrap();
        let err = c.validate(true).unwrap_err().to_string();
        assert!(err.contains("notification.webhook_secret"), "{err}");
        c.webhook_secret = Some(SecretString::from("short"));
        assert!(c.validate(true).is_err());
        c.webhook_secret = Some(SecretString::from("a-long-enough-random-secret"));
        c.validate(true).unwrap();
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        let c = NotifyConfig {
            webhook_url: Some(SecretString::from("ftp://hooks.example/t0k3n")),
            ..NotifyConfig::default()
        };
        let err = c.validate(false).unwrap_err().to_string();
        assert!(
            err.contains("notification.webhook_url") && !err.contains("t0k3n"),
            "{err}"
        );
        let c = NotifyConfig {
            admin_panel_url: Some("/admin".into()),
            ..NotifyConfig::default()
        };
        assert!(
            c.validate(false)
                .unwrap_err()
                .to_string()
                .contains("notification.admin_panel_url")
        );
    }

    /// Changes one setting of a valid configuration.
    type Spoil = fn(&mut NotifyConfig);

    fn sms_base() -> NotifyConfig {
        let mut config = NotifyConfig::default();
        config
            .apply_env(&env(&[
                ("SMS_ACCOUNT_SID", "AC0123456789abcdef0123456789abcdef"),
                ("SMS_AUTH_TOKEN", "f00dfeedc0ffee0123456789abcdef01"),
                ("SMS_FROM_NUMBER", "+14155550100"),
                ("ADMIN_PHONES", "+14155550101, +447700900123,"),
            ]))
            .unwrap();
        config
    }

    #[test]
    fn sms_settings_take_the_go_keys_and_the_environment_wins() {
        let sms: SmsConfig = toml::from_str(
            "provider = \"twilio\"\naccountSID = \"ACfile\"\nauthToken = \"t\"\nfromNumber = \"+15005550006\"\n\
             timeout = \"3s\"\nretries = 1",
        )
        .unwrap();
        assert_eq!(sms.account_sid.as_ref().unwrap().expose_secret(), "ACfile");
        assert_eq!(sms.from_number.as_deref(), Some("+15005550006"));
        assert_eq!(sms.api_base_url, TWILIO_API_BASE_URL);
        assert_eq!((sms.timeout, sms.retries), (Duration::from_secs(3), 1));
        let phones = parse("adminPhones = \"+15005550006,+15005550007\"").unwrap();
        assert_eq!(phones.admin_phones, ["+15005550006", "+15005550007"]);

        let mut config = NotifyConfig {
            sms,
            ..NotifyConfig::default()
        };
        config
            .apply_env(&env(&[
                ("SMS_ACCOUNT_SID", "ACenv"),
                ("SMS_API_BASE_URL", "http://127.0.0.1:9/twilio"),
                ("SMS_TIMEOUT", "250ms"),
                ("SMS_RETRIES", "4"),
                ("ADMIN_PHONES", "+15005550009"),
            ]))
            .unwrap();
        assert_eq!(
            config.sms.account_sid.as_ref().unwrap().expose_secret(),
            "ACenv"
        );
        assert_eq!(config.sms.api_base_url, "http://127.0.0.1:9/twilio");
        assert_eq!(config.sms.timeout, Duration::from_millis(250));
        assert_eq!(config.sms.retries, 4);
        assert_eq!(config.admin_phones, ["+15005550009"]);
        config.validate(true).unwrap();
        assert!(config.sms_enabled());
        for (name, value) in [("SMS_TIMEOUT", "soon"), ("SMS_RETRIES", "many")] {
            let err = NotifyConfig::default()
                .apply_env(&env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
        }
    }

    #[test]
    fn production_refuses_half_an_sms_configuration_naming_the_key() {
        let complete = sms_base();
        complete.validate(true).unwrap();
        assert!(complete.sms_enabled() && complete.sms_missing().is_none());
        let cases: [(&str, Spoil); 4] = [
            ("sms.auth_token", |c| c.sms.auth_token = None),
            ("sms.account_sid", |c| c.sms.account_sid = None),
            ("sms.from_number", |c| c.sms.from_number = None),
            ("notification.admin_phones", |c| c.admin_phones.clear()),
        ];
        for (key, unset) in cases {
            let mut c = sms_base();
            unset(&mut c);
            let err = c.validate(true).unwrap_err().to_string();
            assert!(err.starts_with(key), "{key}: {err}");
            // Development runs without SMS instead.
            c.validate(false).unwrap();
            assert!(!c.sms_enabled());
            assert_eq!(c.sms_missing().map(|(k, _)| k), Some(key));
        }
        // A sender and phones without an account (the Go file's defaults) are not an SMS configuration.
        let mut c = sms_base();
        c.sms.account_sid = None;
        c.sms.auth_token = None;
        c.validate(true).unwrap();
        assert!(!c.sms_configured() && c.sms_missing().is_none());
    }

    #[test]
    fn phone_numbers_must_be_e164_and_are_not_echoed() {
        for good in ["+14155550100", "+447700900123", "+12", "+123456789012345"] {
            assert!(is_e164(good), "{good}");
        }
        for bad in [
            "14155550100",
            "+0123456",
            "+1 415 555 0100",
            "+1234567890123456",
            "+",
            "+1",
        ] {
            assert!(!is_e164(bad), "{bad}");
        }
        let mut c = sms_base();
        c.admin_phones.push("0044 7700 900999".into());
        let err = c.validate(false).unwrap_err().to_string();
        assert!(
            err.contains("notification.admin_phones")
                && err.contains("entry 3")
                && !err.contains("900999"),
            "{err}"
        );
        let mut c = sms_base();
        c.sms.from_number = Some("6505550199".into());
        let err = c.validate(false).unwrap_err().to_string();
        assert!(
            err.contains("sms.from_number") && !err.contains("6505550199"),
            "{err}"
        );
    }

    #[test]
    fn bad_sms_values_are_refused_by_key() {
        let cases: [(&str, Spoil); 6] = [
            ("sms.provider", |c| c.sms.provider = Some("vonage".into())),
            ("sms.account_sid", |c| {
                c.sms.account_sid = Some(SecretString::from("PLACEHOLDER_SID"))
            }),
            ("sms.account_sid", |c| {
                c.sms.account_sid = Some(SecretString::from("AC../../x"))
            }),
            ("sms.auth_token", |c| {
                c.sms.auth_token = Some(SecretString::from("your-token-here"))
            }),
            ("sms.api_base_url", |c| {
                c.sms.api_base_url = "api.twilio.com".into()
            }),
            ("sms.retries", |c| c.sms.retries = 11),
        ];
        for (key, spoil) in cases {
            let mut c = sms_base();
            spoil(&mut c);
            let err = c.validate(false).unwrap_err().to_string();
            assert!(err.starts_with(key), "{key}: {err}");
            assert!(
                !err.contains("f00dfeed") && !err.contains("AC0123"),
                "{err}"
            );
        }
        // The token travels with every request: plain HTTP only to loopback in production.
        let mut c = sms_base();
        c.sms.api_base_url = "http://sms-proxy.internal".into();
        c.validate(false).unwrap();
        assert!(
            c.validate(true)
                .unwrap_err()
                .to_string()
                .starts_with("sms.api_base_url")
        );
        c.sms.api_base_url = "http://127.0.0.1:8080".into();
        c.validate(true).unwrap();
        c.sms.provider = Some(" Twilio ".into());
        c.validate(true).unwrap();
    }
}
