//! Help-request SMS through a fake of Twilio's Messages API on loopback: the exact request (path, basic
//! auth, form fields, the Go service's text), a 400 for an invalid number failing at once, a 429 retried
//! after its `Retry-After`, a 500 retried, numbers and credentials kept out of the logs, and a failing SMS
//! never holding up the help request, the email or the webhook.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use serde_json::json;

use crate::support::app::{TestAppBuilder, app};
use crate::support::logs::capture_logs;
use crate::support::notify::{ask_for_help, counter, user_with_session, with_smtp, with_webhook};
use crate::support::receivers::{FakeTwilio, SmtpServer, WebhookReceiver};
use crate::support::wait::eventually;

const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "f00dfeedc0ffee0123456789abcdef01";
const FROM: &str = "+14155550100";
const PHONE_A: &str = "+14155550171";
const PHONE_B: &str = "+447700900123";

/// An app texting `PHONE_A` and `PHONE_B` through `twilio`.
fn with_sms(builder: TestAppBuilder, twilio: &FakeTwilio) -> TestAppBuilder {
    builder
        .env("SMS_ACCOUNT_SID", SID)
        .env("SMS_AUTH_TOKEN", TOKEN)
        .env("SMS_FROM_NUMBER", FROM)
        .env("ADMIN_PHONES", format!("{PHONE_A}, {PHONE_B}"))
        .env("SMS_API_BASE_URL", twilio.base_url.clone())
        .env("NOTIFY_RETRY_BACKOFF", "20ms")
}

/// Asserts `logs` hold no phone number, account SID or auth token in clear.
fn assert_nothing_secret_in(logs: &str) {
    for secret in [
        SID,
        TOKEN,
        FROM,
        PHONE_A,
        PHONE_B,
        "14155550171",
        "7700900123",
    ] {
        assert!(!logs.contains(secret), "{secret} in the logs:\n{logs}");
    }
}

#[tokio::test]
async fn a_help_request_is_texted_to_every_admin_phone_as_the_go_service_did() {
    let (logs, _guard) = capture_logs();
    let twilio = FakeTwilio::start(SID, TOKEN, &[]).await;
    let app = with_sms(app(), &twilio).spawn().await;
    let (mut user, session) = user_with_session(&app, "u-sms").await;
    ask_for_help(&mut user).await;

    let requests = twilio.wait_for(2).await;
    let auth = format!(
        "Basic {}",
        base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            format!("{SID}:{TOKEN}")
        )
    );
    let mut recipients = Vec::new();
    for request in &requests {
        assert_eq!(request.method, "POST");
        assert_eq!(
            request.path,
            format!("/2010-04-01/Accounts/{SID}/Messages.json")
        );
        assert_eq!(request.headers["authorization"], auth);
        assert_eq!(
            request.headers["content-type"],
            "application/x-www-form-urlencoded"
        );
        let mut names: Vec<&str> = request.form.iter().map(|(k, _)| k.as_str()).collect();
        names.sort_unstable();
        assert_eq!(names, ["Body", "From", "To"], "{:?}", request.form);
        assert_eq!(request.field("From"), FROM);
        assert_eq!(
            request.field("Body"),
            format!("Help Request - User u-sms needs assistance. Session: {session}")
        );
        recipients.push(request.field("To").to_string());
    }
    recipients.sort_unstable();
    assert_eq!(recipients, [PHONE_A, PHONE_B]);
    eventually("both SMS counted as sent", || {
        (counter(&app, "sms", "sent") == 2).then_some(())
    })
    .await;
    assert_eq!(counter(&app, "sms", "failed"), 0);
    assert_eq!(twilio.received().len(), 2, "no retry after a 201");
    app.stop().await;

    let logs = logs.text();
    assert!(logs.contains("help notifications by SMS enabled"), "{logs}");
    assert!(logs.contains("AC…cdef"), "{logs}");
    assert!(logs.contains("+*********71"), "{logs}");
    assert!(logs.contains("+**********23"), "{logs}");
    assert_nothing_secret_in(&logs);
}

#[tokio::test]
async fn an_invalid_number_fails_at_once_and_the_other_phone_still_gets_its_sms() {
    let (logs, _guard) = capture_logs();
    let twilio = FakeTwilio::start(SID, TOKEN, &[(PHONE_A, &[400])]).await;
    let app = with_sms(app(), &twilio).spawn().await;
    let (mut user, _) = user_with_session(&app, "u-invalid").await;
    ask_for_help(&mut user).await;
    eventually("one SMS sent and one failed", || {
        (counter(&app, "sms", "sent") == 1 && counter(&app, "sms", "failed") == 1).then_some(())
    })
    .await;
    assert_eq!(
        twilio.received_for(PHONE_A).len(),
        1,
        "a 400 is not retried"
    );
    assert_eq!(twilio.received_for(PHONE_B).len(), 1);
    // Nothing about the failure reached the user.
    user.send(json!({"type": "ping"})).await;
    assert_eq!(user.recv().await["type"], "pong");
    app.stop().await;

    let logs = logs.text();
    let failure = logs
        .lines()
        .find(|l| l.contains("help notification failed"))
        .unwrap_or_else(|| panic!("no failure line in {logs}"));
    assert!(
        failure.contains("HTTP 400")
            && failure.contains("21211")
            && failure.contains("+*********71"),
        "{failure}"
    );
    // Twilio's message repeats the number: it is not logged.
    assert_nothing_secret_in(&logs);
}

#[tokio::test]
async fn a_429_is_retried_after_its_retry_after_and_a_500_until_success() {
    let twilio = FakeTwilio::start(SID, TOKEN, &[(PHONE_A, &[429]), (PHONE_B, &[500, 500])]).await;
    let app = with_sms(app(), &twilio).spawn().await;
    let (mut user, session) = user_with_session(&app, "u-retry").await;
    ask_for_help(&mut user).await;
    eventually("both SMS sent after retries", || {
        (counter(&app, "sms", "sent") == 2).then_some(())
    })
    .await;
    assert_eq!(counter(&app, "sms", "failed"), 0);

    let limited = twilio.received_for(PHONE_A);
    assert_eq!(limited.len(), 2);
    let waited = limited[1].at - limited[0].at;
    assert!(
        waited >= Duration::from_millis(950),
        "Retry-After: 1 was not honoured (backoff is 20 ms): retried after {waited:?}"
    );
    let failing = twilio.received_for(PHONE_B);
    assert_eq!(failing.len(), 3, "two 500s, then the 201");
    for request in &failing {
        assert_eq!(
            request.form, failing[0].form,
            "every attempt sends the same message"
        );
        assert!(request.field("Body").ends_with(&session));
    }
}

#[tokio::test]
async fn a_failing_sms_never_delays_the_help_request_the_email_or_the_webhook() {
    let twilio = FakeTwilio::start(
        SID,
        TOKEN,
        &[(PHONE_A, &[500, 500]), (PHONE_B, &[500, 500])],
    )
    .await;
    twilio.hold(true);
    let smtp = SmtpServer::start().await;
    let hook = WebhookReceiver::start(&[], Duration::ZERO).await;
    let app = with_sms(with_webhook(with_smtp(app(), &smtp), &hook), &twilio)
        .env("SMS_RETRIES", "1")
        .spawn()
        .await;
    let mut admin = app.connect_ws(&app.admin_token("root")).await;
    assert_eq!(admin.recv().await["type"], "connection_status");
    let (mut user, session) = user_with_session(&app, "u-no-sms").await;

    // The confirmation comes at once although the SMS API has not answered.
    ask_for_help(&mut user).await;
    assert_eq!(admin.recv().await["type"], "help_request");
    twilio.wait_for(2).await;
    // Email and webhook are delivered and counted while both SMS are still waiting for Twilio.
    assert!(
        smtp.wait_for_mails(1).await[0].json["text"]
            .as_str()
            .unwrap()
            .contains(&session)
    );
    assert_eq!(hook.wait_for(1).await[0].json()["session_id"], session);
    eventually("email and webhook sent", || {
        (counter(&app, "email", "sent") == 1 && counter(&app, "webhook", "sent") == 1).then_some(())
    })
    .await;
    assert_eq!(
        counter(&app, "sms", "sent") + counter(&app, "sms", "failed"),
        0
    );
    assert_eq!(
        app.state.notifier.in_flight(),
        1,
        "the SMS are still in flight"
    );

    twilio.hold(false);
    eventually("both SMS failed after one retry", || {
        (counter(&app, "sms", "failed") == 2).then_some(())
    })
    .await;
    assert_eq!(
        twilio.received().len(),
        4,
        "one attempt and one retry per phone"
    );
    assert_eq!(
        counter(&app, "email", "failed") + counter(&app, "webhook", "failed"),
        0
    );
    // Nothing about the failures reached the user.
    user.send(json!({"type": "ping"})).await;
    assert_eq!(user.recv().await["type"], "pong");
}
