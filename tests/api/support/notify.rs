//! Set-ups of the help-request tests: an app wired to the real receivers, a user with a session, and the
//! help request itself.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::support::app::{TestApp, TestAppBuilder, WsClient};
use crate::support::receivers::{SmtpServer, WebhookReceiver};

/// The webhook signing secret of [`with_webhook`].
pub const SECRET: &str = "whsec-test-0123456789abcdef";
/// What the user is told once a help request is taken.
const CONFIRMATION: &str = "Help request sent. An administrator will join your session shortly.";

/// `builder` sending help-request mails to two admins through `smtp`, without TLS.
pub fn with_smtp(builder: TestAppBuilder, smtp: &SmtpServer) -> TestAppBuilder {
    builder
        .env("SMTP_HOST", "127.0.0.1")
        .env("SMTP_PORT", smtp.port.to_string())
        .env("SMTP_TLS", "none")
        .env("EMAIL_FROM", "Chatbox <chatbox@example.com>")
        .env("ADMIN_EMAILS", "ops1@example.com, ops2@example.com")
}

/// `builder` posting help requests to `hook`, signed with [`SECRET`], retried after 20 ms.
pub fn with_webhook(builder: TestAppBuilder, hook: &WebhookReceiver) -> TestAppBuilder {
    builder
        .env("WEBHOOK_URL", hook.url.clone())
        .env("WEBHOOK_SECRET", SECRET)
        .env("NOTIFY_RETRY_BACKOFF", "20ms")
}

pub fn counter(app: &TestApp, channel: &str, outcome: &str) -> u64 {
    app.state
        .metrics
        .notifications
        .with_label_values(&[channel, outcome])
        .get()
}

/// Connects `user`, sends one message (a help request needs a session) and returns the socket and session id.
pub async fn user_with_session(app: &TestApp, user: &str) -> (WsClient, String) {
    let mut ws = app.connect_ws(&app.user_token(user)).await;
    assert_eq!(ws.recv().await["type"], "connection_status");
    ws.send(json!({"type": "user_message", "content": "I am stuck"}))
        .await;
    let session = ws.recv_turn().await[0]["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    (ws, session)
}

/// Sends `help_request` and asserts the very next frame is the confirmation (no error ever).
pub async fn ask_for_help(ws: &mut WsClient) -> Value {
    ws.send(json!({"type": "help_request"})).await;
    let frame = ws.recv().await;
    assert_eq!(frame["type"], "connection_status", "{frame}");
    assert_eq!(frame["content"], CONFIRMATION);
    frame
}
