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

mod sms;

use std::time::Duration;

use lettre::message::Mailbox;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use sms::{SmsConfig, is_e164};

use crate::settings_kit::{
    ConfigError, EnvVars, at_most, de, ensure, env_duration, env_list, env_parse_into, env_parsed,
    env_secret, env_string, http_url, is_loopback, no_placeholder, positive,
};

/// Most retries accepted for one channel.
const MAX_RETRIES: u32 = 10;
/// Why a retry count from the environment is refused.
const NON_NEGATIVE: &str = "must be a non-negative integer";
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
    #[serde(alias = "adminEmails", deserialize_with = "de::list")]
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
    #[serde(deserialize_with = "de::duration")]
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
    #[serde(deserialize_with = "de::duration")]
    pub webhook_timeout: Duration,
    /// Delay before the first retry; doubled for each further retry, capped at 30 s.
    #[serde(deserialize_with = "de::duration")]
    pub retry_backoff: Duration,
    /// Recipients of help-request SMS, E.164 (a TOML array or one comma-separated string).
    #[serde(alias = "adminPhones", deserialize_with = "de::list")]
    pub admin_phones: Vec<String>,
    /// The SMS provider account: the top-level `[sms]` section, moved here when the file is read.
    #[serde(skip)]
    pub sms: SmsConfig,
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

impl NotifyConfig {
    /// Applies environment variables over the file values.
    pub fn apply_env(&mut self, env: &EnvVars) -> Result<(), ConfigError> {
        env_string(env, "ADMIN_PANEL_URL", &mut self.admin_panel_url);
        env_list(env, "ADMIN_EMAILS", &mut self.admin_emails);
        env_string(env, "EMAIL_FROM", &mut self.email_from);
        env_string(env, "SMTP_HOST", &mut self.smtp_host);
        self.smtp_port = env_parsed(env, "SMTP_PORT", "must be a port number")?.or(self.smtp_port);
        env_secret(env, "SMTP_USER", &mut self.smtp_username);
        env_secret(env, "SMTP_PASS", &mut self.smtp_password);
        if let Some(tls) = env.get("SMTP_TLS") {
            self.smtp_tls = SmtpTls::parse(tls).ok_or_else(|| {
                ConfigError::invalid("SMTP_TLS", "must be \"none\", \"starttls\" or \"tls\"")
            })?;
        }
        if let Some(path) = env.get("SMTP_CA_FILE") {
            self.smtp_ca_file = Some(path.into());
        }
        env_duration(env, "SMTP_TIMEOUT", &mut self.smtp_timeout)?;
        env_parse_into(env, "EMAIL_RETRIES", NON_NEGATIVE, &mut self.email_retries)?;
        env_secret(env, "WEBHOOK_URL", &mut self.webhook_url);
        env_secret(env, "WEBHOOK_SECRET", &mut self.webhook_secret);
        env_parse_into(
            env,
            "WEBHOOK_RETRIES",
            NON_NEGATIVE,
            &mut self.webhook_retries,
        )?;
        env_duration(env, "WEBHOOK_TIMEOUT", &mut self.webhook_timeout)?;
        env_duration(env, "NOTIFY_RETRY_BACKOFF", &mut self.retry_backoff)?;
        env_list(env, "ADMIN_PHONES", &mut self.admin_phones);
        self.sms.apply_env(env)
    }

    /// Checks the settings. `production` also refuses a webhook without a secret, SMTP credentials sent
    /// without TLS to a host other than loopback, half an SMS configuration and a plain-HTTP SMS API.
    pub fn validate(&self, production: bool) -> Result<(), ConfigError> {
        self.validate_sms(production)?;
        if let Some(url) = self
            .admin_panel_url
            .as_deref()
            .filter(|u| !u.trim().is_empty())
        {
            http_url("notification.admin_panel_url", url)?;
        }
        for email in &self.admin_emails {
            ensure(
                email.parse::<Mailbox>().is_ok(),
                "notification.admin_emails",
                format!("{email:?} is not an email address"),
            )?;
        }
        if let Some(from) = &self.email_from {
            ensure(
                from.parse::<Mailbox>().is_ok(),
                "notification.email_from",
                format!("{from:?} is not an email address"),
            )?;
        }
        ensure(
            self.smtp_port != Some(0),
            "notification.smtp_port",
            "must be a port number",
        )?;
        positive("notification.smtp_timeout", self.smtp_timeout)?;
        positive("notification.webhook_timeout", self.webhook_timeout)?;
        at_most(
            "notification.email_retries",
            self.email_retries,
            MAX_RETRIES,
        )?;
        at_most(
            "notification.webhook_retries",
            self.webhook_retries,
            MAX_RETRIES,
        )?;
        if let Some(password) = &self.smtp_password {
            no_placeholder("notification.smtp_password", password.expose_secret())?;
        }
        ensure(
            self.smtp_username.is_some() == self.smtp_password.is_some(),
            "notification.smtp_password",
            "smtp_username and smtp_password (SMTP_USER, SMTP_PASS) are set together or not at all",
        )?;
        if let Some(host) = &self.smtp_host {
            self.validate_smtp_host(host, production)?;
        }
        if let Some(secret) = &self.webhook_secret {
            let secret = secret.expose_secret();
            no_placeholder("notification.webhook_secret", secret)?;
            ensure(
                !production || secret.len() >= MIN_PRODUCTION_SECRET,
                "notification.webhook_secret",
                format!("must be at least {MIN_PRODUCTION_SECRET} bytes in production"),
            )?;
        }
        if let Some(url) = &self.webhook_url {
            http_url("notification.webhook_url", url.expose_secret())?;
            ensure(
                !production || self.webhook_secret.is_some(),
                "notification.webhook_secret",
                "is required in production when webhook_url is set (WEBHOOK_SECRET)",
            )?;
        }
        Ok(())
    }

    /// Checks the SMTP host and what sending through it needs: a sender, recipients, and in production
    /// no credentials in plain text to a host other than loopback.
    fn validate_smtp_host(&self, host: &str, production: bool) -> Result<(), ConfigError> {
        ensure(
            !(host.trim().is_empty() || host.contains(|c: char| c.is_whitespace() || c == '/')),
            "notification.smtp_host",
            "must be a host name or IP address",
        )?;
        ensure(
            self.email_from.is_some(),
            "notification.email_from",
            "is required when smtp_host is set (EMAIL_FROM)",
        )?;
        ensure(
            !self.admin_emails.is_empty(),
            "notification.admin_emails",
            "needs at least one recipient when smtp_host is set (ADMIN_EMAILS)",
        )?;
        ensure(
            !(production
                && self.smtp_username.is_some()
                && self.smtp_tls == SmtpTls::None
                && !is_loopback(host)),
            "notification.smtp_tls",
            "SMTP credentials would be sent in plain text: use \"starttls\" or \"tls\" in production",
        )
    }

    /// True when email is configured.
    pub fn email_enabled(&self) -> bool {
        self.smtp_host.is_some()
    }

    /// True when the webhook is configured.
    pub fn webhook_enabled(&self) -> bool {
        self.webhook_url.is_some()
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

    pub(super) fn parse(text: &str) -> Result<NotifyConfig, toml::de::Error> {
        toml::from_str(text)
    }

    pub(super) fn env(pairs: &[(&str, &str)]) -> EnvVars {
        EnvVars::from_pairs(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// Asserts that each variable set to its bad value is refused by an error naming it.
    pub(super) fn assert_refused_naming_the_variable(cases: &[(&str, &str)]) {
        for &(name, value) in cases {
            let err = NotifyConfig::default()
                .apply_env(&env(&[(name, value)]))
                .unwrap_err()
                .to_string();
            assert!(err.contains(name), "{err}");
        }
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
        assert_refused_naming_the_variable(&[
            ("SMTP_PORT", "x"),
            ("SMTP_TLS", "ssl"),
            ("WEBHOOK_RETRIES", "-1"),
            ("WEBHOOK_TIMEOUT", "soon"),
        ]);
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
}
