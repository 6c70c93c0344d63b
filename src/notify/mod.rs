//! Help-request notifications: email (SMTP through lettre), a signed webhook and SMS (Twilio), delivered
//! in the background and independently of each other, so the user's request is never delayed or failed by
//! them. Failures are logged (never with secrets or whole phone numbers) and counted in
//! `chatbox_notifications_total{channel,outcome}` (SMS once per phone); shutdown waits for deliveries in
//! flight up to a deadline ([`Notifier::drain`]). The live `help_request` event to connected admins is
//! sent by the chat service through the hub, not here.

mod config;
mod content;
mod email;
mod error;
mod retry;
mod sms;
mod webhook;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::sync::Notify;
use tokio::time::Instant;

pub use config::{NotifyConfig, SmsConfig, SmtpTls, TWILIO_API_BASE_URL, is_e164};
pub use content::{
    HelpEvent, WebhookPayload, admin_link, email_html, email_subject, email_text, escape_html,
    sms_text,
};
pub use error::NotifyError;
pub use sms::mask_phone;
pub use webhook::{DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, signature};

use crate::metrics::Metrics;
use email::EmailChannel;
use sms::SmsChannel;
use webhook::WebhookChannel;

/// A notification channel; its name is the `channel` label of the metric.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Channel {
    /// SMTP email.
    Email,
    /// Signed JSON webhook.
    Webhook,
    /// SMS through Twilio, one message per admin phone.
    Sms,
}

impl Channel {
    /// `email`, `webhook` or `sms`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Webhook => "webhook",
            Self::Sms => "sms",
        }
    }
}

/// Counts deliveries in flight and wakes [`Notifier::drain`] when none is left.
#[derive(Default)]
struct InFlight {
    count: AtomicUsize,
    idle: Notify,
}

/// Held by a delivery task; dropping it marks the delivery finished.
struct InFlightGuard(Arc<InFlight>);

impl InFlight {
    fn enter(self: &Arc<Self>) -> InFlightGuard {
        self.count.fetch_add(1, Ordering::SeqCst);
        InFlightGuard(Arc::clone(self))
    }
}

impl Drop for InFlightGuard {
    fn drop(&mut self) {
        if self.0.count.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

struct Channels {
    admin_panel_base: Option<String>,
    email: Option<EmailChannel>,
    webhook: Option<WebhookChannel>,
    sms: Option<SmsChannel>,
}

impl Channels {
    /// Deliveries one notification makes on `channel`: one per phone for SMS, else one.
    fn deliveries(&self, channel: Channel) -> u64 {
        match (channel, &self.sms) {
            (Channel::Sms, Some(sms)) => u64::try_from(sms.recipients()).unwrap_or(u64::MAX),
            _ => 1,
        }
    }
}

/// What one delivery ended with: `recipient` is the masked phone number of an SMS.
struct Outcome {
    channel: Channel,
    recipient: Option<String>,
    result: Result<(), NotifyError>,
}

/// Sends help-request notifications on every configured channel.
pub struct Notifier {
    channels: Arc<Channels>,
    metrics: Arc<Metrics>,
    in_flight: Arc<InFlight>,
    closing: AtomicBool,
}

impl Notifier {
    /// Builds the channels `config` enables (none: every notification is skipped quietly).
    pub fn new(config: &NotifyConfig, metrics: Arc<Metrics>) -> Result<Self, NotifyError> {
        let channels = Channels {
            admin_panel_base: config.admin_panel_base(),
            email: EmailChannel::from_config(config)?,
            webhook: WebhookChannel::from_config(config)?,
            sms: SmsChannel::from_config(config)?,
        };
        if let Some(email) = &channels.email {
            tracing::info!(server = %email.server(), "help notifications by email enabled");
        }
        if let Some(webhook) = &channels.webhook {
            tracing::info!(target_url = %webhook.target(), "help notifications by webhook enabled");
        }
        if let Some(sms) = &channels.sms {
            tracing::info!(api = %sms.target(), phones = sms.recipients(), "help notifications by SMS enabled");
        } else if let Some((key, hint)) = config.sms_missing() {
            // Production refuses this at start-up; development runs on without SMS.
            tracing::warn!(
                missing = key,
                env = hint,
                "SMS is configured without {key}: help notifications by SMS disabled"
            );
        }
        Ok(Self {
            channels: Arc::new(channels),
            metrics,
            in_flight: Arc::new(InFlight::default()),
            closing: AtomicBool::new(false),
        })
    }

    /// The configured channels.
    pub fn channels(&self) -> Vec<Channel> {
        let mut list = Vec::new();
        if self.channels.email.is_some() {
            list.push(Channel::Email);
        }
        if self.channels.webhook.is_some() {
            list.push(Channel::Webhook);
        }
        if self.channels.sms.is_some() {
            list.push(Channel::Sms);
        }
        list
    }

    /// Starts delivering `event` on every configured channel and returns at once: delivery runs on its
    /// own task, its outcome is logged and counted, never reported to the caller. After
    /// [`Notifier::drain`] has begun, events are skipped.
    pub fn help_requested(&self, event: HelpEvent) {
        let channels = self.channels();
        if channels.is_empty() {
            tracing::debug!(session_id = %event.session_id, "no notification channel configured, help notification skipped");
            return;
        }
        if self.closing.load(Ordering::SeqCst) {
            tracing::info!(session_id = %event.session_id, "shutting down, help notification skipped");
            self.count_skipped();
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::error!(session_id = %event.session_id, "no async runtime, help notification skipped");
            self.count_skipped();
            return;
        };
        let guard = self.in_flight.enter();
        let channels = Arc::clone(&self.channels);
        let metrics = Arc::clone(&self.metrics);
        runtime.spawn(async move {
            let _guard = guard;
            deliver(&channels, &metrics, &event).await;
        });
    }

    /// Delivers `event` on every configured channel and waits for the outcome (what
    /// [`Notifier::help_requested`] runs in the background): one entry per email, webhook and SMS phone.
    /// Outcomes are logged and counted here too.
    pub async fn deliver(&self, event: &HelpEvent) -> Vec<(Channel, Result<(), NotifyError>)> {
        let _guard = self.in_flight.enter();
        deliver(&self.channels, &self.metrics, event)
            .await
            .into_iter()
            .map(|o| (o.channel, o.result))
            .collect()
    }

    /// Records a help request whose notification the per-session limit suppressed: `skipped` for every
    /// configured channel.
    pub fn help_limited(&self, session_id: &str) {
        if !self.channels().is_empty() {
            tracing::debug!(session_id = %session_id, "help notifications skipped by the per-session limit");
            self.count_skipped();
        }
    }

    /// Stops accepting new notifications and waits until the deliveries in flight have finished or
    /// `deadline` has passed. Returns true when none is left.
    pub async fn drain(&self, deadline: Instant) -> bool {
        self.closing.store(true, Ordering::SeqCst);
        loop {
            let notified = self.in_flight.idle.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let left = self.in_flight.count.load(Ordering::SeqCst);
            if left == 0 {
                return true;
            }
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep_until(deadline) => {
                    let left = self.in_flight.count.load(Ordering::SeqCst);
                    if left > 0 {
                        tracing::warn!(in_flight = left, "shutdown deadline reached with help notifications still being delivered");
                    }
                    return left == 0;
                }
            }
        }
    }

    /// Deliveries currently running.
    pub fn in_flight(&self) -> usize {
        self.in_flight.count.load(Ordering::SeqCst)
    }

    fn count_skipped(&self) {
        for channel in self.channels() {
            self.metrics
                .notifications
                .with_label_values(&[channel.as_str(), "skipped"])
                .inc_by(self.channels.deliveries(channel));
        }
    }
}

/// Runs every configured channel concurrently and records each outcome as soon as it is known: a slow or
/// failing channel never holds up the others, nor their logs and counts.
async fn deliver(channels: &Channels, metrics: &Metrics, event: &HelpEvent) -> Vec<Outcome> {
    let link = admin_link(channels.admin_panel_base.as_deref(), &event.session_id);
    let single = |channel, result| {
        let outcome = Outcome {
            channel,
            recipient: None,
            result,
        };
        record(metrics, event, &outcome);
        vec![outcome]
    };
    let email = async {
        match &channels.email {
            Some(email) => single(Channel::Email, email.send(event, link.as_deref()).await),
            None => Vec::new(),
        }
    };
    let webhook = async {
        match &channels.webhook {
            Some(webhook) => single(Channel::Webhook, webhook.send(event, link.as_deref()).await),
            None => Vec::new(),
        }
    };
    let sms = async {
        match &channels.sms {
            Some(sms) => {
                sms.send(event, |to, result| {
                    let outcome = Outcome {
                        channel: Channel::Sms,
                        recipient: Some(to),
                        result,
                    };
                    record(metrics, event, &outcome);
                    outcome
                })
                .await
            }
            None => Vec::new(),
        }
    };
    let (email, webhook, sms) = tokio::join!(email, webhook, sms);
    [email, webhook, sms].into_iter().flatten().collect()
}

/// Logs `outcome` and counts it in `chatbox_notifications_total`.
fn record(metrics: &Metrics, event: &HelpEvent, outcome: &Outcome) {
    let channel = outcome.channel.as_str();
    let to = outcome.recipient.as_deref();
    let label = match &outcome.result {
        Ok(()) => {
            tracing::info!(channel, to, session_id = %event.session_id, "help notification sent");
            "sent"
        }
        Err(e) => {
            tracing::error!(channel, to, session_id = %event.session_id, error = %e, "help notification failed");
            "failed"
        }
    };
    metrics
        .notifications
        .with_label_values(&[channel, label])
        .inc();
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use std::time::Duration;

    use super::*;

    fn counter(metrics: &Metrics, channel: &str, outcome: &str) -> u64 {
        metrics
            .notifications
            .with_label_values(&[channel, outcome])
            .get()
    }

    #[tokio::test]
    async fn nothing_configured_skips_quietly() {
        let metrics = Arc::new(Metrics::new());
        let notifier = Notifier::new(&NotifyConfig::default(), Arc::clone(&metrics)).unwrap();
        assert!(notifier.channels().is_empty());
        notifier.help_requested(HelpEvent::now("u", None, "s"));
        notifier.help_limited("s");
        assert!(
            notifier
                .deliver(&HelpEvent::now("u", None, "s"))
                .await
                .is_empty()
        );
        assert_eq!(notifier.in_flight(), 0);
        assert!(notifier.drain(Instant::now()).await);
        for outcome in ["sent", "failed", "skipped"] {
            assert_eq!(counter(&metrics, "email", outcome), 0);
            assert_eq!(counter(&metrics, "webhook", outcome), 0);
            assert_eq!(counter(&metrics, "sms", outcome), 0);
        }
    }

    #[tokio::test]
    async fn an_unreachable_webhook_fails_after_its_retries_and_drain_waits_for_it() {
        // A port that was free a moment ago: connections are refused.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = NotifyConfig {
            webhook_url: Some(format!("http://127.0.0.1:{port}/hook").into()),
            webhook_retries: 2,
            retry_backoff: Duration::from_millis(5),
            ..NotifyConfig::default()
        };
        let metrics = Arc::new(Metrics::new());
        let notifier = Notifier::new(&config, Arc::clone(&metrics)).unwrap();
        notifier.help_requested(HelpEvent::now("u", None, "s"));
        assert!(
            notifier
                .drain(Instant::now() + Duration::from_secs(10))
                .await
        );
        assert_eq!(counter(&metrics, "webhook", "failed"), 1);
        // Once draining, new events are skipped and counted as such.
        notifier.help_requested(HelpEvent::now("u", None, "s"));
        notifier.help_limited("s");
        assert_eq!(counter(&metrics, "webhook", "skipped"), 2);
        assert_eq!(counter(&metrics, "email", "skipped"), 0);
    }
}
