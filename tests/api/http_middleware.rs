//! HTTP middleware: CORS (preflight, allowed and refused origins, disabled by default) and the request
//! duration histogram labelled by route template.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;

use crate::helpers::{app, spawn_app};
use crate::http_support::prometheus;

const ORIGIN: &str = "https://app.example.org";

#[tokio::test]
async fn http_cors_preflights_are_answered_for_allowed_origins() {
    let app = app()
        .env(
            "CORS_ALLOWED_ORIGINS",
            format!("{ORIGIN},https://other.example.org"),
        )
        .spawn()
        .await;
    let response = app
        .http
        .request(Method::OPTIONS, format!("{}/sessions", app.base))
        .header("origin", ORIGIN)
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 204);
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert_eq!(
        h["access-control-allow-methods"],
        "GET,POST,PUT,PATCH,DELETE,OPTIONS"
    );
    assert_eq!(
        h["access-control-allow-headers"],
        "Origin,Content-Type,Accept,Authorization"
    );
    assert_eq!(h["access-control-max-age"], "43200");
    assert_eq!(
        h["x-content-type-options"], "nosniff",
        "security headers on preflights too"
    );

    // A real request from the allowed origin carries the CORS headers.
    let response = app
        .http
        .get(format!("{}/sessions", app.base))
        .header("origin", ORIGIN)
        .bearer_auth(app.user_token("alice"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let h = response.headers();
    assert_eq!(h["access-control-allow-origin"], ORIGIN);
    assert_eq!(h["access-control-allow-credentials"], "true");
    assert!(
        h["access-control-expose-headers"]
            .to_str()
            .unwrap()
            .contains("Content-Length")
    );
}

#[tokio::test]
async fn http_cors_refuses_other_origins_but_not_same_host_or_originless_requests() {
    let app = app().env("CORS_ALLOWED_ORIGINS", ORIGIN).spawn().await;
    for method in [Method::OPTIONS, Method::GET] {
        let response = app
            .http
            .request(method, format!("{}/healthz", app.base))
            .header("origin", "https://evil.example.com")
            .header("access-control-request-method", "GET")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 403);
        assert!(
            response
                .headers()
                .get("access-control-allow-origin")
                .is_none()
        );
    }
    // No Origin: not a CORS request.
    let plain = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(plain.status(), 200);
    // The server's own host as Origin: not cross-origin.
    let host = app
        .base
        .trim_start_matches("http://")
        .split('/')
        .next()
        .unwrap()
        .to_string();
    let same = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("origin", format!("http://{host}"))
        .send()
        .await
        .unwrap();
    assert_eq!(same.status(), 200);
    assert!(same.headers().get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn http_cors_is_off_without_configured_origins() {
    let app = spawn_app().await;
    let response = app
        .http
        .get(format!("{}/healthz", app.base))
        .header("origin", "https://anywhere.example.com")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .headers()
            .get("access-control-allow-origin")
            .is_none()
    );
}

#[tokio::test]
async fn http_request_durations_are_labelled_by_route_template() {
    let app = spawn_app().await;
    let token = app.user_token("alice");
    for id in ["aaa", "bbb"] {
        let response = app
            .http
            .get(format!("{}/sessions/{id}", app.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 404);
    }
    let missing = app
        .http
        .get(format!("{}/no/such/route", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    prometheus(&app).await;
    let text = prometheus(&app).await;
    let count = |labels: &str| {
        let prefix = format!("chatbox_http_request_duration_seconds_count{{{labels}}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .map_or(0.0, |v| v.trim().parse::<f64>().unwrap())
    };
    assert_eq!(
        count("endpoint=\"/chatbox/sessions/:sessionID\",method=\"GET\""),
        2.0,
        "{text}"
    );
    assert_eq!(
        count("endpoint=\"\",method=\"GET\""),
        1.0,
        "unmatched routes: {text}"
    );
    assert!(
        !text.contains("/sessions/aaa"),
        "concrete paths never become labels"
    );
}
