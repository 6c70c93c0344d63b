//! Email through SMTP with lettre: one multipart (text + HTML) message to every admin address, retried on
//! connection errors, timeouts and transient (4xx) replies.

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use secrecy::ExposeSecret;

use super::NotifyError;
use super::config::{NotifyConfig, SmtpTls};
use super::content::{HelpEvent, email_html, email_subject, email_text};
use super::retry::{Failure, RetryPolicy, with_retries};
use crate::backoff::millis;

/// A configured SMTP channel.
pub(crate) struct EmailChannel {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    to: Vec<Mailbox>,
    retry: RetryPolicy,
    /// `host:port`, for logs.
    server: String,
}

fn mailbox(key: &str, text: &str) -> Result<Mailbox, NotifyError> {
    text.parse::<Mailbox>()
        .map_err(|_| NotifyError::Setup(format!("{key}: {text:?} is not an email address")))
}

impl EmailChannel {
    /// Builds the channel when `smtp_host` is set.
    pub(crate) fn from_config(config: &NotifyConfig) -> Result<Option<Self>, NotifyError> {
        let Some(host) = config.smtp_host.as_deref().map(str::trim) else {
            return Ok(None);
        };
        let from = mailbox(
            "notification.email_from",
            config.email_from.as_deref().ok_or_else(|| {
                NotifyError::Setup("notification.email_from is required with smtp_host".into())
            })?,
        )?;
        let to = config
            .admin_emails
            .iter()
            .map(|a| mailbox("notification.admin_emails", a))
            .collect::<Result<Vec<_>, _>>()?;
        if to.is_empty() {
            return Err(NotifyError::Setup(
                "notification.admin_emails has no recipient".into(),
            ));
        }
        let port = config.smtp_port();
        let tls_host = host.trim_start_matches('[').trim_end_matches(']');
        let tls = match config.smtp_tls {
            SmtpTls::None => Tls::None,
            SmtpTls::Starttls => Tls::Required(tls_parameters(tls_host, config)?),
            SmtpTls::Tls => Tls::Wrapper(tls_parameters(tls_host, config)?),
        };
        let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(tls_host)
            .port(port)
            .tls(tls)
            .timeout(Some(config.smtp_timeout));
        if let (Some(user), Some(pass)) = (&config.smtp_username, &config.smtp_password) {
            builder = builder.credentials(Credentials::new(
                user.expose_secret().to_string(),
                pass.expose_secret().to_string(),
            ));
        }
        Ok(Some(Self {
            transport: builder.build(),
            from,
            to,
            retry: RetryPolicy {
                retries: config.email_retries,
                backoff: config.retry_backoff,
            },
            server: format!("{host}:{port}"),
        }))
    }

    /// The message for `event`.
    pub(crate) fn message(
        &self,
        event: &HelpEvent,
        link: Option<&str>,
    ) -> Result<Message, NotifyError> {
        let mut builder = Message::builder()
            .from(self.from.clone())
            .subject(email_subject(event));
        for to in &self.to {
            builder = builder.to(to.clone());
        }
        builder
            .multipart(MultiPart::alternative_plain_html(
                email_text(event),
                email_html(event, link),
            ))
            .map_err(|e| NotifyError::Message(e.to_string()))
    }

    /// Sends the notification, retrying what may succeed later.
    pub(crate) async fn send(
        &self,
        event: &HelpEvent,
        link: Option<&str>,
    ) -> Result<(), NotifyError> {
        let message = self.message(event, link)?;
        with_retries(
            self.retry,
            || async {
                self.transport
                    .send(message.clone())
                    .await
                    .map(drop)
                    .map_err(|e| {
                        let error = NotifyError::Smtp(e.to_string());
                        if e.is_permanent() || e.is_client() || e.is_tls() {
                            Failure::permanent(error)
                        } else {
                            Failure::transient(error)
                        }
                    })
            },
            |retry, delay, error| {
                tracing::warn!(
                    server = %self.server,
                    session_id = %event.session_id,
                    attempt = retry,
                    retry_in_ms = millis(delay),
                    error = %error,
                    "help notification email failed, retrying"
                );
            },
        )
        .await
    }

    /// `host:port` of the SMTP server.
    pub(crate) fn server(&self) -> &str {
        &self.server
    }
}

/// TLS for `host`: the built-in public roots plus the certificates of `smtp_ca_file`, if set.
fn tls_parameters(host: &str, config: &NotifyConfig) -> Result<TlsParameters, NotifyError> {
    let mut builder = TlsParameters::builder(host.to_string());
    if let Some(path) = &config.smtp_ca_file {
        let pem = std::fs::read(path).map_err(|e| {
            NotifyError::Setup(format!("notification.smtp_ca_file {}: {e}", path.display()))
        })?;
        let certificate = Certificate::from_pem(&pem).map_err(|e| {
            NotifyError::Setup(format!(
                "notification.smtp_ca_file {}: not a PEM certificate: {e}",
                path.display()
            ))
        })?;
        builder = builder.add_root_certificate(certificate);
    }
    builder
        .build()
        .map_err(|e| NotifyError::Setup(format!("SMTP TLS for {host}: {e}")))
}
