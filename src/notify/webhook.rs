//! The webhook: a JSON POST signed with HMAC-SHA256, retried with exponential backoff on connection
//! errors, timeouts, HTTP 5xx and 429 (honouring `Retry-After`), with a timeout per attempt.
//!
//! Headers: `X-Chatbox-Event: help_request`, `X-Chatbox-Delivery: <id>` (same on every retry),
//! `X-Chatbox-Timestamp: <unix seconds>` and, when a secret is configured,
//! `X-Chatbox-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`.

use hmac::{Hmac, Mac};
use reqwest::header::{CONTENT_TYPE, HeaderValue, USER_AGENT};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use super::NotifyError;
use super::config::NotifyConfig;
use super::content::{HelpEvent, WebhookPayload};
use super::retry::{Failure, RetryPolicy, with_retries};
use crate::backoff::millis;

/// Header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Chatbox-Signature";
/// Header carrying the Unix time (seconds) that is part of the signed text.
pub const TIMESTAMP_HEADER: &str = "X-Chatbox-Timestamp";
/// Header naming the event (`help_request`).
pub const EVENT_HEADER: &str = "X-Chatbox-Event";
/// Header carrying the delivery id, identical on retries.
pub const DELIVERY_HEADER: &str = "X-Chatbox-Delivery";

/// `sha256=<hex HMAC-SHA256(secret, "<timestamp>.<body>")>`: the value of [`SIGNATURE_HEADER`].
pub fn signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    // HMAC accepts keys of any length: construction cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret) else {
        unreachable!("HMAC-SHA256 takes keys of any length");
    };
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A configured webhook.
pub(crate) struct WebhookChannel {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Option<SecretString>,
    retry: RetryPolicy,
    /// Scheme, host and port only: paths and queries of webhook URLs often hold tokens.
    target: String,
}

impl WebhookChannel {
    /// Builds the channel when `webhook_url` is set.
    pub(crate) fn from_config(config: &NotifyConfig) -> Result<Option<Self>, NotifyError> {
        let Some(url) = &config.webhook_url else {
            return Ok(None);
        };
        let url = reqwest::Url::parse(url.expose_secret().trim()).map_err(|_| {
            NotifyError::Setup("notification.webhook_url is not a valid URL".into())
        })?;
        let target = format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.port().map(|p| format!(":{p}")).unwrap_or_default()
        );
        let client = reqwest::Client::builder()
            .timeout(config.webhook_timeout)
            .connect_timeout(config.webhook_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| NotifyError::Setup(format!("webhook client: {}", e.without_url())))?;
        Ok(Some(Self {
            client,
            url,
            secret: config.webhook_secret.clone(),
            retry: RetryPolicy {
                retries: config.webhook_retries,
                backoff: config.retry_backoff,
            },
            target,
        }))
    }

    /// Posts the notification, retrying what may succeed later.
    pub(crate) async fn send(
        &self,
        event: &HelpEvent,
        link: Option<&str>,
    ) -> Result<(), NotifyError> {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let body = serde_json::to_vec(&WebhookPayload::new(&id, event, link))
            .map_err(|e| NotifyError::WebhookRequest(format!("encoding the payload: {e}")))?;
        with_retries(
            self.retry,
            || self.attempt(&id, &body),
            |retry, delay, error| {
                tracing::warn!(
                    target_url = %self.target,
                    session_id = %event.session_id,
                    delivery = %id,
                    attempt = retry,
                    retry_in_ms = millis(delay),
                    error = %error,
                    "help notification webhook failed, retrying"
                );
            },
        )
        .await
    }

    async fn attempt(&self, id: &str, body: &[u8]) -> Result<(), Failure> {
        let timestamp = time::OffsetDateTime::now_utc().unix_timestamp().to_string();
        let mut request = self
            .client
            .post(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(USER_AGENT, concat!("chatbox/", env!("CARGO_PKG_VERSION")))
            .header(EVENT_HEADER, "help_request")
            .header(DELIVERY_HEADER, id)
            .header(TIMESTAMP_HEADER, &timestamp)
            .body(body.to_vec());
        if let Some(secret) = &self.secret {
            request = request.header(
                SIGNATURE_HEADER,
                signature(secret.expose_secret().as_bytes(), &timestamp, body),
            );
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => Ok(()),
            Ok(response) => Err(Failure::http(
                NotifyError::WebhookStatus(response.status().as_u16()),
                response.status(),
                response.headers(),
            )),
            // Without the URL: it may hold a token.
            Err(e) => Err(Failure::transient(NotifyError::WebhookRequest(
                e.without_url().to_string(),
            ))),
        }
    }

    /// Scheme, host and port of the receiver, for logs.
    pub(crate) fn target(&self) -> &str {
        &self.target
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    #[test]
    fn the_signature_covers_timestamp_and_body() {
        // Reference value: printf '1700000000.{"a":1}' | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(b"secret", "1700000000", br#"{"a":1}"#),
            "sha256=49f24e537407743fa4a0242bb63b94b9a47ee99cbbe071ccd8a22550ae411686"
        );
        assert_ne!(
            signature(b"secret", "1700000001", br#"{"a":1}"#),
            signature(b"secret", "1700000000", br#"{"a":1}"#)
        );
        assert_ne!(
            signature(b"other", "1700000000", br#"{"a":1}"#),
            signature(b"secret", "1700000000", br#"{"a":1}"#)
        );
    }
}
