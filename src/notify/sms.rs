//! SMS through Twilio's Messages API, as the Go service sent them: one form-encoded
//! `POST <api_base_url>/2010-04-01/Accounts/<sid>/Messages.json` (HTTP basic auth `sid:token`, fields `To`,
//! `From`, `Body`) per admin phone, all at once, each retried on its own on connection errors, timeouts,
//! 429 and 5xx (honouring `Retry-After`); other 4xx fail at once. Phone numbers appear in logs and errors
//! only masked ([`mask_phone`]), the account SID only masked, the auth token never.

use futures::future::join_all;
use reqwest::header::{ACCEPT, HeaderValue, USER_AGENT};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::NotifyError;
use super::config::NotifyConfig;
use super::content::{HelpEvent, sms_text};
use super::retry::{Failure, RetryPolicy, with_retries};
use crate::backoff::millis;

/// The Messages API path under the base URL, before and after the account SID.
const MESSAGES_PATH: (&str, &str) = ("/2010-04-01/Accounts/", "/Messages.json");

/// `+`, then `*` for every character but the last two: `+14155550100` → `+*********00`.
pub fn mask_phone(number: &str) -> String {
    let chars: Vec<char> = number.chars().collect();
    let keep = chars.len().saturating_sub(2);
    chars
        .iter()
        .enumerate()
        .map(|(i, &c)| {
            if i >= keep || (i == 0 && c == '+') {
                c
            } else {
                '*'
            }
        })
        .collect()
}

/// The first two and last four characters of an account SID (`AC…cdef`), or `…` when it is short.
fn mask_sid(sid: &str) -> String {
    if sid.len() > 10 && sid.is_ascii() {
        format!("{}…{}", &sid[..2], &sid[sid.len() - 4..])
    } else {
        "…".to_string()
    }
}

/// What is read of a created message (201): its `sid` and `status`, for the debug log.
#[derive(Debug, Default, Deserialize)]
struct MessageAnswer {
    sid: Option<String>,
    status: Option<String>,
}

/// What is read of an error (`{code, message, more_info, status}`): the code. The message is left out: it
/// often repeats the phone number.
#[derive(Debug, Default, Deserialize)]
struct ErrorAnswer {
    code: Option<u64>,
}

/// `body` as `T`, or `T::default()` when it is not that JSON: the body is only informative.
fn read_answer<T: for<'de> Deserialize<'de> + Default>(body: Option<&[u8]>) -> T {
    body.and_then(|b| serde_json::from_slice(b).ok())
        .unwrap_or_default()
}

/// A configured SMS channel.
pub(crate) struct SmsChannel {
    client: reqwest::Client,
    url: reqwest::Url,
    account_sid: SecretString,
    auth_token: SecretString,
    from: String,
    to: Vec<String>,
    retry: RetryPolicy,
    /// Scheme, host and port of the API and the masked account SID, for logs.
    target: String,
}

impl SmsChannel {
    /// Builds the channel when SMS is configured completely (see [`NotifyConfig::sms_missing`]).
    pub(crate) fn from_config(config: &NotifyConfig) -> Result<Option<Self>, NotifyError> {
        let sms = &config.sms;
        let (Some(sid), Some(token), Some(from)) =
            (&sms.account_sid, &sms.auth_token, &sms.from_number)
        else {
            return Ok(None);
        };
        if config.admin_phones.is_empty() {
            return Ok(None);
        }
        let base = sms.api_base_url.trim().trim_end_matches('/');
        let url = reqwest::Url::parse(&format!(
            "{base}{}{}{}",
            MESSAGES_PATH.0,
            sid.expose_secret(),
            MESSAGES_PATH.1
        ))
        .map_err(|_| NotifyError::Setup("sms.api_base_url is not a valid URL".into()))?;
        let target = format!(
            "{}://{}{} account {}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default(),
            mask_sid(sid.expose_secret())
        );
        let client = reqwest::Client::builder()
            .timeout(sms.timeout)
            .connect_timeout(sms.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Setup(format!("SMS client: {}", e.without_url())))?;
        Ok(Some(Self {
            client,
            url,
            account_sid: sid.clone(),
            auth_token: token.clone(),
            from: from.trim().to_string(),
            to: config.admin_phones.clone(),
            retry: RetryPolicy {
                retries: sms.retries,
                backoff: config.retry_backoff,
            },
            target,
        }))
    }

    /// Texts every admin phone at once. Each phone's outcome goes to `done` (with the masked number) as
    /// soon as it is known; the values `done` returns come back in the order of the phones.
    pub(crate) async fn send<T>(
        &self,
        event: &HelpEvent,
        done: impl Fn(String, Result<(), NotifyError>) -> T,
    ) -> Vec<T> {
        let body = sms_text(event);
        let done = &done;
        join_all(self.to.iter().map(|to| async {
            let masked = mask_phone(to);
            let result = self.send_one(event, to, &masked, &body).await;
            done(masked, result)
        }))
        .await
    }

    async fn send_one(
        &self,
        event: &HelpEvent,
        to: &str,
        masked: &str,
        body: &str,
    ) -> Result<(), NotifyError> {
        with_retries(
            self.retry,
            || self.attempt(to, masked, body),
            |retry, delay, error| {
                tracing::warn!(
                    api = %self.target,
                    session_id = %event.session_id,
                    attempt = retry,
                    retry_in_ms = millis(delay),
                    error = %error,
                    "help notification SMS failed, retrying"
                );
            },
        )
        .await
    }

    async fn attempt(&self, to: &str, masked: &str, body: &str) -> Result<(), Failure> {
        let request = self
            .client
            .post(self.url.clone())
            .basic_auth(
                self.account_sid.expose_secret(),
                Some(self.auth_token.expose_secret()),
            )
            .header(USER_AGENT, concat!("chatbox/", env!("CARGO_PKG_VERSION")))
            .header(ACCEPT, HeaderValue::from_static("application/json"))
            .form(&[("To", to), ("From", self.from.as_str()), ("Body", body)]);
        let response = request.send().await.map_err(|e| {
            // Without the URL: its path holds the account SID.
            Failure::transient(NotifyError::SmsRequest {
                to: masked.to_string(),
                reason: e.without_url().to_string(),
            })
        })?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.bytes().await.ok();
        if status.is_success() {
            let answer: MessageAnswer = read_answer(body.as_deref());
            tracing::debug!(
                api = %self.target,
                to = %masked,
                message_sid = answer.sid.as_deref().unwrap_or_default(),
                message_status = answer.status.as_deref().unwrap_or_default(),
                "SMS accepted"
            );
            return Ok(());
        }
        Err(Failure::http(
            NotifyError::SmsStatus {
                to: masked.to_string(),
                status: status.as_u16(),
                code: read_answer::<ErrorAnswer>(body.as_deref()).code,
            },
            status,
            &headers,
        ))
    }

    /// Scheme, host and port of the API and the masked account SID, for logs.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }

    /// How many phones each notification texts.
    pub(crate) fn recipients(&self) -> usize {
        self.to.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn phone_numbers_and_account_sids_are_masked() {
        assert_eq!(mask_phone("+14155550100"), "+*********00");
        assert_eq!(mask_phone("+44"), "+44");
        assert_eq!(mask_phone("12"), "12");
        assert_eq!(mask_phone(""), "");
        assert_eq!(mask_sid("AC0123456789abcdef0123456789abcdef"), "AC…cdef");
        assert_eq!(mask_sid("AC12"), "…");
    }

    #[test]
    fn twilio_answers_are_read_leniently() {
        let created = br#"{"sid":"SM1","status":"queued","num_segments":"1","price":null}"#;
        let message: MessageAnswer = read_answer(Some(created));
        assert_eq!(message.sid.as_deref(), Some("SM1"));
        assert_eq!(message.status.as_deref(), Some("queued"));
        let error = br#"{"code":21211,"message":"The 'To' number +15005550001 is not a valid phone number.","more_info":"https://www.twilio.com/docs/errors/21211","status":400}"#;
        assert_eq!(read_answer::<ErrorAnswer>(Some(error)).code, Some(21211));
        assert_eq!(read_answer::<ErrorAnswer>(Some(b"<html>")).code, None);
        assert_eq!(read_answer::<ErrorAnswer>(None).code, None);
        let shown = NotifyError::SmsStatus {
            to: mask_phone("+15005550001"),
            status: 400,
            code: Some(21211),
        }
        .to_string();
        assert_eq!(
            shown,
            "sms to +*********01: the SMS API answered HTTP 400 (error 21211, https://www.twilio.com/docs/errors/21211)"
        );
    }

    #[test]
    fn the_text_is_the_go_services() {
        let event = HelpEvent::now("u42", Some("Ada".into()), "s-1");
        assert_eq!(
            sms_text(&event),
            "Help Request - User u42 needs assistance. Session: s-1"
        );
    }
}
