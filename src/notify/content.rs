//! What a help-request notification says: the event, the admin link, the email subject and bodies and the
//! SMS text (the Go service's texts) and the webhook payload. Pure functions, so they are tested without a network.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A help request to notify about.
#[derive(Debug, Clone)]
pub struct HelpEvent {
    /// The requesting user.
    pub user_id: String,
    /// The user's display name, when the token had one.
    pub user_name: Option<String>,
    /// The session that needs help.
    pub session_id: String,
    /// When the request was accepted (UTC).
    pub time: OffsetDateTime,
}

impl HelpEvent {
    /// A request made now.
    pub fn now(
        user_id: impl Into<String>,
        user_name: Option<String>,
        session_id: impl Into<String>,
    ) -> Self {
        Self {
            user_id: user_id.into(),
            user_name,
            session_id: session_id.into(),
            time: OffsetDateTime::now_utc(),
        }
    }

    /// The time as RFC 3339 in UTC with whole seconds, as the Go service wrote it (`2024-05-01T12:00:00Z`).
    pub fn time_rfc3339(&self) -> String {
        let t = self.time.to_offset(time::UtcOffset::UTC);
        let t = t.replace_nanosecond(0).unwrap_or(t);
        t.format(&Rfc3339)
            .unwrap_or_else(|_| t.unix_timestamp().to_string())
    }
}

/// `<admin_panel_url>/<session_id>`, when an admin panel URL is configured.
pub fn admin_link(admin_panel_base: Option<&str>, session_id: &str) -> Option<String> {
    admin_panel_base.map(|base| format!("{}/{session_id}", base.trim_end_matches('/')))
}

/// Escapes text for HTML element content and attribute values.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&#34;"),
            '\'' => out.push_str("&#39;"),
            other => out.push(other),
        }
    }
    out
}

/// `Help Request - User <userID>`, with control characters replaced so the header stays one line.
pub fn email_subject(event: &HelpEvent) -> String {
    let user: String = event
        .user_id
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    format!("Help Request - User {user}")
}

/// `Help Request - User: <uid>, Session: <sid>, Time: <RFC3339>`.
pub fn email_text(event: &HelpEvent) -> String {
    format!(
        "Help Request - User: {}, Session: {}, Time: {}",
        event.user_id,
        event.session_id,
        event.time_rfc3339()
    )
}

/// The SMS text, the Go service's: `Help Request - User <uid> needs assistance. Session: <sid>`.
pub fn sms_text(event: &HelpEvent) -> String {
    format!(
        "Help Request - User {} needs assistance. Session: {}",
        event.user_id, event.session_id
    )
}

/// The HTML body: every value escaped; a "View Session" link or a pointer to the admin panel.
pub fn email_html(event: &HelpEvent, link: Option<&str>) -> String {
    let action = match link {
        Some(url) => format!("<p><a href=\"{}\">View Session</a></p>", escape_html(url)),
        None => "<p>Please check the admin panel to view this session.</p>".to_string(),
    };
    format!(
        "<!DOCTYPE html>\n<html>\n<body>\n<h2>Help Request</h2>\n<p>A user has requested help.</p>\n\
         <p><strong>User ID:</strong> {}</p>\n<p><strong>Session ID:</strong> {}</p>\n\
         <p><strong>Time:</strong> {}</p>\n{action}\n</body>\n</html>\n",
        escape_html(&event.user_id),
        escape_html(&event.session_id),
        escape_html(&event.time_rfc3339()),
    )
}

/// The webhook's JSON body.
#[derive(Debug, Serialize)]
pub struct WebhookPayload<'a> {
    /// Always `help_request`.
    pub event: &'static str,
    /// Unique per notification and repeated on retries (also `X-Chatbox-Delivery`): receivers deduplicate
    /// with it.
    pub id: &'a str,
    /// The requesting user.
    pub user_id: &'a str,
    /// The user's display name, or null.
    pub user_name: Option<&'a str>,
    /// The session that needs help.
    pub session_id: &'a str,
    /// RFC 3339 UTC time of the request.
    pub time: String,
    /// `<admin_panel_url>/<session_id>`, or null when no admin panel URL is configured.
    pub admin_url: Option<&'a str>,
}

impl<'a> WebhookPayload<'a> {
    /// The payload of `event` with delivery id `id`.
    pub fn new(id: &'a str, event: &'a HelpEvent, link: Option<&'a str>) -> Self {
        Self {
            event: "help_request",
            id,
            user_id: &event.user_id,
            user_name: event.user_name.as_deref(),
            session_id: &event.session_id,
            time: event.time_rfc3339(),
            admin_url: link,
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use proptest::prelude::*;
    use time::macros::datetime;

    fn event(user: &str) -> HelpEvent {
        HelpEvent {
            user_id: user.into(),
            user_name: None,
            session_id: "s-1".into(),
            time: datetime!(2024-05-01 12:00:00.123456 UTC),
        }
    }

    #[test]
    fn texts_match_the_go_service() {
        let e = event("u42");
        assert_eq!(e.time_rfc3339(), "2024-05-01T12:00:00Z");
        assert_eq!(email_subject(&e), "Help Request - User u42");
        assert_eq!(
            email_text(&e),
            "Help Request - User: u42, Session: s-1, Time: 2024-05-01T12:00:00Z"
        );
        let link = admin_link(Some("https://admin.example/sessions/"), "s-1");
        assert_eq!(link.as_deref(), Some("https://admin.example/sessions/s-1"));
        let html = email_html(&e, link.as_deref());
        assert!(
            html.contains("<a href=\"https://admin.example/sessions/s-1\">View Session</a>"),
            "{html}"
        );
        assert!(!html.contains("Please check the admin panel"));
        let html = email_html(&e, None);
        assert!(
            html.contains("Please check the admin panel to view this session."),
            "{html}"
        );
        assert!(!html.contains("View Session"));
    }

    #[test]
    fn html_values_are_escaped_and_the_subject_stays_one_line() {
        let e = event("<script>alert('x')</script>&\"");
        let html = email_html(&e, Some("https://a.example/?a=1&b=\"2\""));
        assert!(!html.contains("<script>"), "{html}");
        assert!(
            html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;&#34;"),
            "{html}"
        );
        assert!(
            html.contains("href=\"https://a.example/?a=1&amp;b=&#34;2&#34;\""),
            "{html}"
        );
        assert_eq!(
            email_subject(&event("a\r\nBcc: x@y")),
            "Help Request - User a  Bcc: x@y"
        );
    }

    #[test]
    fn the_webhook_payload_names_every_field() {
        let e = event("u1");
        let value =
            serde_json::to_value(WebhookPayload::new("d1", &e, Some("https://a/s-1"))).unwrap();
        assert_eq!(
            value,
            serde_json::json!({"event": "help_request", "id": "d1", "user_id": "u1", "user_name": null,
                "session_id": "s-1", "time": "2024-05-01T12:00:00Z", "admin_url": "https://a/s-1"})
        );
    }

    proptest! {
        #[test]
        fn escaped_text_has_no_markup_and_round_trips(text in ".*") {
            let escaped = escape_html(&text);
            prop_assert!(!escaped.contains(['<', '>', '"', '\'']));
            let back = escaped
                .replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&#34;", "\"")
                .replace("&#39;", "'")
                .replace("&amp;", "&");
            prop_assert_eq!(back, text);
        }
    }
}
