//! Help-request notifications end to end: a real SMTP server (aiosmtpd) and a webhook receiver that checks
//! the signature; retries, the per-session limit, failures kept from the user, and shutdown waiting for
//! deliveries in flight.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;

use crate::support::app::{TestAppBuilder, app};
use crate::support::notify::{
    SECRET, ask_for_help, counter, user_with_session, with_smtp, with_webhook,
};

use crate::support::receivers::{SmtpServer, TestCa, WebhookReceiver, free_port};
use crate::support::wait::eventually;

const PANEL: &str = "https://admin.example/chatbox/admin/sessions";

#[tokio::test]
async fn a_help_request_reaches_admins_live_by_email_and_by_signed_webhook() {
    let smtp = SmtpServer::start().await;
    let hook = WebhookReceiver::start(&[], Duration::ZERO).await;
    let app = with_webhook(with_smtp(app(), &smtp), &hook)
        .env("ADMIN_PANEL_URL", format!("{PANEL}/"))
        .spawn()
        .await;
    let mut admin = app.connect_ws(&app.admin_token("root")).await;
    assert_eq!(admin.recv().await["type"], "connection_status");
    let (mut user, session) = user_with_session(&app, "needy<&>").await;

    ask_for_help(&mut user).await;
    let live = admin.recv().await;
    assert_eq!(live["type"], "help_request");
    assert_eq!(live["session_id"], session);
    assert_eq!(live["user_id"], "needy<&>");

    let mails = smtp.wait_for_mails(1).await;
    let mail = &mails[0].json;
    let link = format!("{PANEL}/{session}");
    assert_eq!(mail["subject"], "Help Request - User needy<&>");
    assert_eq!(mail["from"], "Chatbox <chatbox@example.com>");
    assert!(
        mail["to"].as_str().unwrap().contains("ops1@example.com"),
        "{mail}"
    );
    assert!(
        mail["rcpt_to"]
            .as_str()
            .unwrap()
            .contains("ops2@example.com"),
        "{mail}"
    );
    assert_eq!(mail["content_type"], "multipart/alternative");
    let text = mail["text"].as_str().unwrap().trim_end();
    assert!(
        text.starts_with(&format!(
            "Help Request - User: needy<&>, Session: {session}, Time: "
        )),
        "{text}"
    );
    let time = text.rsplit("Time: ").next().unwrap();
    time::OffsetDateTime::parse(time, &time::format_description::well_known::Rfc3339).unwrap();
    let html = mail["html"].as_str().unwrap();
    assert!(
        html.contains(&format!("<a href=\"{link}\">View Session</a>")),
        "{html}"
    );
    assert!(
        html.contains("needy&lt;&amp;&gt;") && !html.contains("needy<&>"),
        "values are escaped: {html}"
    );
    assert!(html.contains(&session));

    let requests = hook.wait_for(1).await;
    let request = &requests[0];
    request.assert_signed_with(SECRET);
    assert_eq!(request.headers["content-type"], "application/json");
    assert_eq!(request.headers["x-chatbox-event"], "help_request");
    let body = request.json();
    assert_eq!(body["event"], "help_request");
    assert_eq!(body["user_id"], "needy<&>");
    assert_eq!(body["session_id"], session);
    assert_eq!(body["admin_url"], link);
    assert_eq!(body["id"], request.headers["x-chatbox-delivery"]);
    time::OffsetDateTime::parse(
        body["time"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();

    eventually("both sent counters", || {
        (counter(&app, "email", "sent") == 1 && counter(&app, "webhook", "sent") == 1).then_some(())
    })
    .await;
    assert_eq!(
        counter(&app, "email", "failed") + counter(&app, "webhook", "failed"),
        0
    );
}

#[tokio::test]
async fn without_an_admin_panel_url_the_mail_points_to_the_admin_panel() {
    let smtp = SmtpServer::start().await;
    let app = with_smtp(app(), &smtp).spawn().await;
    let (mut user, _) = user_with_session(&app, "u-nolink").await;
    ask_for_help(&mut user).await;
    let mails = smtp.wait_for_mails(1).await;
    let html = mails[0].json["html"].as_str().unwrap().to_string();
    assert!(
        html.contains("Please check the admin panel to view this session."),
        "{html}"
    );
    assert!(!html.contains("View Session"), "{html}");
}

#[tokio::test]
async fn a_failing_webhook_is_retried_with_the_same_delivery_id_until_it_succeeds() {
    let hook = WebhookReceiver::start(&[500, 429], Duration::ZERO).await;
    let app = with_webhook(app(), &hook).spawn().await;
    let (mut user, session) = user_with_session(&app, "retry-me").await;
    ask_for_help(&mut user).await;
    let requests = hook.wait_for(3).await;
    for request in &requests {
        request.assert_signed_with(SECRET);
        assert_eq!(request.json()["session_id"], session);
        assert_eq!(
            request.headers["x-chatbox-delivery"],
            requests[0].headers["x-chatbox-delivery"]
        );
    }
    eventually("webhook sent", || {
        (counter(&app, "webhook", "sent") == 1).then_some(())
    })
    .await;
    assert_eq!(counter(&app, "webhook", "failed"), 0);
    assert_eq!(hook.received().len(), 3, "no attempt after the success");
}

#[tokio::test]
async fn the_per_session_limit_skips_the_sixth_notification_but_still_confirms() {
    let hook = WebhookReceiver::start(&[], Duration::ZERO).await;
    let app = with_webhook(app(), &hook).spawn().await;
    let mut admin = app.connect_ws(&app.admin_token("root")).await;
    assert_eq!(admin.recv().await["type"], "connection_status");
    let (mut user, session) = user_with_session(&app, "impatient").await;
    for _ in 0..6 {
        ask_for_help(&mut user).await;
    }
    for _ in 0..5 {
        assert_eq!(admin.recv().await["type"], "help_request");
    }
    eventually("five sent and one skipped", || {
        (counter(&app, "webhook", "sent") == 5 && counter(&app, "webhook", "skipped") == 1)
            .then_some(())
    })
    .await;
    let requests = hook.received();
    assert_eq!(requests.len(), 5);
    assert!(requests.iter().all(|r| r.json()["session_id"] == session));
    // The admin got no sixth live event: the next frame it sees is the answer to its own ping.
    admin.send(json!({"type": "ping"})).await;
    assert_eq!(admin.recv().await["type"], "pong");
}

#[tokio::test]
async fn failed_notifications_are_counted_and_never_shown_to_the_user() {
    let hook = WebhookReceiver::start(&[500, 500, 500, 500], Duration::ZERO).await;
    // An SMTP port where nobody listens.
    let closed_port = free_port();
    let app = with_webhook(app(), &hook)
        .env("SMTP_HOST", "127.0.0.1")
        .env("SMTP_PORT", closed_port.to_string())
        .env("SMTP_TLS", "none")
        .env("EMAIL_FROM", "chatbox@example.com")
        .env("ADMIN_EMAILS", "ops@example.com")
        .env("WEBHOOK_RETRIES", "1")
        .env("EMAIL_RETRIES", "1")
        .spawn()
        .await;
    let (mut user, _) = user_with_session(&app, "unlucky").await;
    ask_for_help(&mut user).await;
    eventually("both failures counted", || {
        (counter(&app, "email", "failed") == 1 && counter(&app, "webhook", "failed") == 1)
            .then_some(())
    })
    .await;
    assert_eq!(hook.received().len(), 2, "one attempt and one retry");
    // Nothing about the failures reached the user: the next frame is the answer to its ping.
    user.send(json!({"type": "ping"})).await;
    assert_eq!(user.recv().await["type"], "pong");
}

#[tokio::test]
async fn shutdown_waits_for_a_notification_in_flight() {
    let hook = WebhookReceiver::start(&[], Duration::from_secs(2)).await;
    let app = with_webhook(app(), &hook).spawn().await;
    let (mut user, _) = user_with_session(&app, "late").await;
    ask_for_help(&mut user).await;
    hook.wait_for(1).await;
    let state = std::sync::Arc::clone(&app.state);
    assert_eq!(
        state.notifier.in_flight(),
        1,
        "the receiver is still answering"
    );
    app.stop().await;
    assert_eq!(state.notifier.in_flight(), 0);
    assert_eq!(
        state
            .metrics
            .notifications
            .with_label_values(&["webhook", "sent"])
            .get(),
        1
    );
}

/// An app mailing through `smtp` with `tls` and the given CA file and credentials.
fn with_secure_smtp(
    smtp: &SmtpServer,
    tls: &str,
    ca_file: Option<&TestCa>,
    password: &str,
) -> TestAppBuilder {
    let builder = with_smtp(app(), smtp)
        .env("SMTP_TLS", tls)
        .env("SMTP_USER", "mailer")
        .env("SMTP_PASS", password)
        .env("EMAIL_RETRIES", "0");
    match ca_file {
        Some(ca) => builder.env("SMTP_CA_FILE", ca.ca.display().to_string()),
        None => builder,
    }
}

const RELAY_PASSWORD: &str = "s3cret-relay-pass";

/// Starts a TLS relay in `mode` and checks that a help request is mailed through it with the private CA and
/// the right password; returns the relay and its CA.
async fn mails_through_tls(mode: &str) -> (SmtpServer, TestCa) {
    let ca = TestCa::new();
    let smtp = SmtpServer::start_tls(mode, &ca, "mailer", RELAY_PASSWORD).await;
    let app = with_secure_smtp(&smtp, mode, Some(&ca), RELAY_PASSWORD)
        .spawn()
        .await;
    let (mut user, session) = user_with_session(&app, "secure-mail").await;
    ask_for_help(&mut user).await;
    let mails = smtp.wait_for_mails(1).await;
    assert!(
        mails[0].json["text"].as_str().unwrap().contains(&session),
        "{:?}",
        mails[0].json
    );
    // The relay has the mail before the client has its final reply: wait for the count.
    eventually("the mail counted as sent", || {
        (counter(&app, "email", "sent") == 1).then_some(())
    })
    .await;
    (smtp, ca)
}

#[tokio::test]
async fn mail_goes_through_starttls_with_a_private_ca_and_authentication() {
    mails_through_tls("starttls").await;
}

#[tokio::test]
async fn mail_goes_through_implicit_tls_and_a_wrong_password_or_unknown_ca_fails_quietly() {
    let (smtp, ca) = mails_through_tls("tls").await;
    for (name, ca_file, password) in [
        ("wrong password", Some(&ca), "not-the-password"),
        ("certificate of an unknown CA", None, RELAY_PASSWORD),
    ] {
        let bad = with_secure_smtp(&smtp, "tls", ca_file, password)
            .spawn()
            .await;
        let (mut user, _) = user_with_session(&bad, "tls-mail").await;
        ask_for_help(&mut user).await;
        eventually(name, || {
            (counter(&bad, "email", "failed") == 1).then_some(())
        })
        .await;
        // Nothing about the failure reached the user.
        user.send(json!({"type": "ping"})).await;
        assert_eq!(user.recv().await["type"], "pong", "{name}");
    }
    assert_eq!(smtp.count(), 1, "only the good configuration delivered");
}
