//! `[sms]`: the SMS provider account (Twilio), the Go service's section and keys, and when the
//! notifier's SMS configuration is complete.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::{MAX_RETRIES, NotifyConfig, TWILIO_API_BASE_URL};
use crate::settings_kit::{
    ConfigError, EnvVars, at_most, de, ensure, env_duration, env_parse_into, env_secret,
    env_string, http_url, is_loopback, no_placeholder, positive,
};

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
    #[serde(deserialize_with = "de::duration")]
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
        env_secret(env, "SMS_ACCOUNT_SID", &mut self.account_sid);
        env_secret(env, "SMS_AUTH_TOKEN", &mut self.auth_token);
        env_string(env, "SMS_FROM_NUMBER", &mut self.from_number);
        if let Some(url) = env.get("SMS_API_BASE_URL") {
            self.api_base_url = url.to_string();
        }
        env_duration(env, "SMS_TIMEOUT", &mut self.timeout)?;
        env_parse_into(env, "SMS_RETRIES", super::NON_NEGATIVE, &mut self.retries)?;
        Ok(())
    }

    /// Checks the values that are set; completeness is [`NotifyConfig::sms_missing`]'s business.
    fn validate(&self, production: bool) -> Result<(), ConfigError> {
        if let Some(provider) = &self.provider {
            ensure(
                provider.trim().eq_ignore_ascii_case("twilio"),
                "sms.provider",
                "only \"twilio\" is supported",
            )?;
        }
        if let Some(sid) = &self.account_sid {
            let sid = sid.expose_secret();
            no_placeholder("sms.account_sid", sid)?;
            ensure(
                sid.chars().all(|c| c.is_ascii_alphanumeric()),
                "sms.account_sid",
                "must be letters and digits only (a Twilio account SID, AC...) (SMS_ACCOUNT_SID)",
            )?;
        }
        if let Some(token) = &self.auth_token {
            no_placeholder("sms.auth_token", token.expose_secret())?;
        }
        if let Some(from) = &self.from_number {
            ensure(
                is_e164(from),
                "sms.from_number",
                "must be an E.164 number: + and up to 15 digits, e.g. +14155550100 (SMS_FROM_NUMBER)",
            )?;
        }
        let url = http_url("sms.api_base_url", &self.api_base_url)?;
        ensure(
            !production
                || url.scheme() == "https"
                || is_loopback(url.host_str().unwrap_or_default()),
            "sms.api_base_url",
            "must be https in production: every request carries the auth token (SMS_API_BASE_URL)",
        )?;
        positive("sms.timeout", self.timeout)?;
        at_most("sms.retries", self.retries, MAX_RETRIES)
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

impl NotifyConfig {
    /// Checks the admin phones and the `[sms]` values; `production` also refuses half an SMS
    /// configuration.
    pub(super) fn validate_sms(&self, production: bool) -> Result<(), ConfigError> {
        for (position, phone) in self.admin_phones.iter().enumerate() {
            // The number itself stays out of the message: phone numbers are not logged.
            ensure(
                is_e164(phone),
                "notification.admin_phones",
                format!(
                    "entry {} is not an E.164 number: + and up to 15 digits, e.g. +14155550100 (ADMIN_PHONES)",
                    position + 1
                ),
            )?;
        }
        self.sms.validate(production)?;
        if production && let Some((key, hint)) = self.sms_missing() {
            return Err(ConfigError::invalid(
                key,
                format!("is required in production when SMS is configured ({hint})"),
            ));
        }
        Ok(())
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
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::tests::{assert_refused_naming_the_variable, env, parse};
    use super::*;

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
        assert_refused_naming_the_variable(&[("SMS_TIMEOUT", "soon"), ("SMS_RETRIES", "many")]);
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
