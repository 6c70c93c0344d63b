//! HTTP middleware: CORS (preflight, allowed and refused origins, disabled by default), the request
//! duration histogram labelled by route template, security headers on every answer, the Prometheus
//! network allow-list and trusted proxies.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;

use crate::support::app::{app, spawn_app};
use crate::support::http::prometheus;

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
    let host = app.host();
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
    assert_eq!(
        missing.text().await.unwrap(),
        "404 page not found",
        "the Go router's text"
    );
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

/// A GET of `path` with extra headers: its status, headers and JSON body.
async fn fetch(
    app: &crate::support::app::TestApp,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, serde_json::Value) {
    let mut request = app.http.request(method, format!("{}{path}", app.base));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = serde_json::from_str(&response.text().await.unwrap()).unwrap_or_default();
    (status, headers, body)
}

fn assert_forbidden(status: u16, body: &serde_json::Value) {
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["error"], "Insufficient permissions", "{body}");
    assert_eq!(body["code"], "FORBIDDEN", "{body}");
}

#[tokio::test]
async fn http_prometheus_answers_only_inside_its_network_allow_list() {
    // The test client connects from 127.0.0.1.
    let outside = app()
        .env("METRICS_ALLOWED_NETWORKS", "203.0.113.0/24")
        .spawn()
        .await;
    let (status, _, body) = fetch(&outside, Method::GET, "/metrics/prometheus", &[]).await;
    assert_forbidden(status, &body);
    let inside = app()
        .env("METRICS_ALLOWED_NETWORKS", "203.0.113.0/24,127.0.0.0/8")
        .spawn()
        .await;
    assert!(
        prometheus(&inside)
            .await
            .contains("chatbox_websocket_connections")
    );
}

#[tokio::test]
async fn http_forwarded_addresses_count_only_from_trusted_proxies() {
    let allowed = "203.0.113.0/24";
    let behind_proxy = app()
        .env("METRICS_ALLOWED_NETWORKS", allowed)
        .env("TRUSTED_PROXIES", "127.0.0.1/32")
        .spawn()
        .await;
    let path = "/metrics/prometheus";
    let (status, _, _) = fetch(
        &behind_proxy,
        Method::GET,
        path,
        &[("x-forwarded-for", "198.51.100.9, 203.0.113.7")],
    )
    .await;
    assert_eq!(
        status, 200,
        "the right-most untrusted address is the client"
    );
    let (status, _, _) = fetch(
        &behind_proxy,
        Method::GET,
        path,
        &[("x-real-ip", "203.0.113.8")],
    )
    .await;
    assert_eq!(status, 200, "X-Real-IP from a trusted proxy");
    let (status, _, body) = fetch(
        &behind_proxy,
        Method::GET,
        path,
        &[("x-forwarded-for", "198.51.100.9")],
    )
    .await;
    assert_forbidden(status, &body);
    let (status, _, body) = fetch(&behind_proxy, Method::GET, path, &[]).await;
    assert_forbidden(status, &body);

    // The same header from a peer that is not a trusted proxy is ignored.
    let direct = app()
        .env("METRICS_ALLOWED_NETWORKS", allowed)
        .env("TRUSTED_PROXIES", "10.0.0.0/8")
        .spawn()
        .await;
    let (status, _, body) = fetch(
        &direct,
        Method::GET,
        path,
        &[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-real-ip", "203.0.113.7"),
        ],
    )
    .await;
    assert_forbidden(status, &body);
}

#[tokio::test]
async fn http_security_headers_are_on_answers_errors_and_preflights() {
    let app = app().env("CORS_ALLOWED_ORIGINS", ORIGIN).spawn().await;
    let answers = [
        fetch(&app, Method::GET, "/healthz", &[]).await,
        fetch(&app, Method::GET, "/no/such/route", &[]).await,
        fetch(
            &app,
            Method::OPTIONS,
            "/sessions",
            &[("origin", ORIGIN), ("access-control-request-method", "GET")],
        )
        .await,
    ];
    let statuses: Vec<_> = answers.iter().map(|a| a.0).collect();
    assert_eq!(statuses, [200, 404, 204]);
    for (status, headers, _) in &answers {
        for (name, value) in [
            ("x-content-type-options", "nosniff"),
            ("x-frame-options", "DENY"),
            ("referrer-policy", "strict-origin-when-cross-origin"),
            ("x-xss-protection", "1; mode=block"),
            (
                "content-security-policy",
                "default-src 'none'; frame-ancestors 'none'",
            ),
        ] {
            assert_eq!(
                headers.get(name).map(|v| v.to_str().unwrap()),
                Some(value),
                "{name} on a {status}"
            );
        }
    }
    // The Swagger UI page loads its own scripts: no policy that would block them.
    let (status, headers, _) = fetch(&app, Method::GET, "/docs", &[]).await;
    assert_eq!(status, 200);
    assert!(headers.get("content-security-policy").is_none());
    assert_eq!(headers["x-frame-options"], "DENY");
}
