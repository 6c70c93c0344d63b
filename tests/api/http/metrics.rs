//! Prometheus metrics: the Go service's names and labels, counted once, gauges never negative.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::support::app::spawn_app;
use crate::support::http::prometheus;
use crate::support::wait::eventually;

/// Value of a sample line `name{labels} value` (or `name value`), if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|line| line.starts_with(series) && line[series.len()..].starts_with(' '))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn every_reference_metric_is_exported_with_its_labels() {
    let app = spawn_app().await;
    let mut ws = app.connect_ws(&app.user_token("metered")).await;
    ws.recv().await;
    ws.send(json!({"type": "user_message", "content": "count me"}))
        .await;
    ws.recv_turn().await;
    ws.send_text("not json").await;
    ws.recv().await;
    let text = prometheus(&app).await;
    for name in [
        "chatbox_websocket_connections_total",
        "chatbox_messages_received_total",
        "chatbox_messages_sent_total",
        "chatbox_llm_requests_total{provider=\"demo\"}",
        "chatbox_llm_latency_seconds_count{provider=\"demo\"}",
        "chatbox_llm_errors_total{provider=\"demo\"}",
        "chatbox_active_sessions_total",
        "chatbox_sessions_created_total",
        "chatbox_sessions_ended_total",
        "chatbox_admin_takeovers_total",
        "chatbox_message_errors_total",
        "chatbox_tokens_used_total{provider=\"demo\"}",
        "chatbox_ratelimit_blocked_total{limiter=\"connection\"}",
        "chatbox_ratelimit_blocked_total{limiter=\"message\"}",
        "chatbox_admin_messages_dropped_total",
        "chatbox_turn_first_token_seconds_count{provider=\"demo\"}",
        "chatbox_turn_duration_seconds_count{provider=\"demo\"}",
        "chatbox_queue_dropped_total{reason=\"slow_consumer\"}",
    ] {
        assert!(sample(&text, name).is_some(), "{name} missing from\n{text}");
    }
    assert!(text.contains("chatbox_mongodb_operation_seconds_bucket{operation="));
    assert!(text.contains("chatbox_http_request_duration_seconds_bucket{endpoint="));
    assert_eq!(
        sample(&text, "chatbox_websocket_connections_total"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "chatbox_sessions_created_total"), Some(1.0));
    assert_eq!(sample(&text, "chatbox_active_sessions_total"), Some(1.0));
    assert_eq!(
        sample(&text, "chatbox_llm_requests_total{provider=\"demo\"}"),
        Some(1.0)
    );
    assert_eq!(sample(&text, "chatbox_message_errors_total"), Some(1.0));
    assert!(sample(&text, "chatbox_tokens_used_total{provider=\"demo\"}").unwrap() > 0.0);
    // user_message; the malformed frame is not counted as received.
    assert_eq!(sample(&text, "chatbox_messages_received_total"), Some(1.0));
}

#[tokio::test]
async fn the_connection_gauge_returns_to_zero_and_never_goes_negative() {
    let app = spawn_app().await;
    let token = app.user_token("gauge");
    let mut clients = Vec::new();
    for _ in 0..3 {
        let mut ws = app.connect_ws(&token).await;
        ws.recv().await;
        clients.push(ws);
    }
    assert_eq!(app.state.metrics.websocket_connections.get(), 3);
    for ws in clients {
        ws.close().await;
    }
    eventually("the connections to be released", || {
        (app.state.hub.connection_count() == 0).then_some(())
    })
    .await;
    assert_eq!(app.state.metrics.websocket_connections.get(), 0);
    // Each closed connection is observed once (when its writer has finished), in the reference's buckets.
    eventually("the three durations to be observed", || {
        (app.state.metrics.connection_duration.get_sample_count() >= 3).then_some(())
    })
    .await;
    let text = prometheus(&app).await;
    assert_eq!(
        sample(&text, "chatbox_websocket_connection_duration_seconds_count"),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            "chatbox_websocket_connection_duration_seconds_bucket{le=\"3600\"}"
        ),
        Some(3.0)
    );
}

#[tokio::test]
async fn process_figures_are_exported_like_the_go_service() {
    let app = spawn_app().await;
    let text = prometheus(&app).await;
    for name in [
        "process_resident_memory_bytes",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            sample(&text, name).is_some_and(|v| v > 0.0),
            "{name} missing or zero in\n{text}"
        );
    }
    assert!(sample(&text, "process_cpu_seconds_total").is_some_and(|v| v >= 0.0));
}

/// The `operation` label values of `chatbox_mongodb_operation_seconds` in `text`.
fn store_operations(text: &str) -> std::collections::BTreeSet<String> {
    text.lines()
        .filter_map(|line| {
            line.strip_prefix("chatbox_mongodb_operation_seconds_count{operation=\"")
        })
        .filter_map(|rest| rest.split_once('"').map(|(op, _)| op.to_string()))
        .collect()
}

#[tokio::test]
async fn store_operations_carry_the_reference_label_values() {
    let app = spawn_app().await;
    let token = app.user_token("labelled");
    let mut ws = app.connect_ws(&token).await;
    ws.recv().await;
    ws.send(json!({"type": "user_message", "content": "label me"}))
        .await;
    let turn = ws.recv_turn().await;
    let id = turn.last().unwrap()["session_id"]
        .as_str()
        .unwrap()
        .to_string();
    let ended = app
        .http
        .post(format!("{}/sessions/{id}/end", app.base))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(ended.status(), 200);
    let admin = app.admin_token("boss");
    for path in ["/admin/sessions", "/admin/metrics"] {
        let response = app
            .http
            .get(format!("{}{path}", app.base))
            .bearer_auth(&admin)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path}");
    }
    let text = app.state.metrics.render();
    let operations = store_operations(&text);
    for reference in [
        "create_session",
        "end_session",
        "list_all_sessions_with_options",
        "get_session_metrics",
    ] {
        assert!(
            operations.contains(reference),
            "{reference} missing from {operations:?}"
        );
        assert!(
            sample(
                &text,
                &format!("chatbox_mongodb_operation_seconds_count{{operation=\"{reference}\"}}")
            )
            .unwrap()
                >= 1.0
        );
    }
    for renamed in ["get_or_create_session", "list_sessions", "metrics"] {
        assert!(
            !operations.contains(renamed),
            "{renamed} is not a reference operation name: {operations:?}"
        );
    }
    app.stop().await;
}

#[tokio::test]
async fn active_sessions_in_the_store_before_start_are_counted() {
    let data = crate::support::app::SharedData::new();
    let first = crate::support::app::app().data(&data).spawn().await;
    for user in ["before-a", "before-b", "before-c"] {
        let mut ws = first.connect_ws(&first.user_token(user)).await;
        ws.recv().await;
        ws.send(json!({"type": "user_message", "content": "hello"}))
            .await;
        ws.recv_turn().await;
        ws.close().await;
    }
    first.stop().await;
    let second = crate::support::app::app().data(&data).spawn().await;
    assert_eq!(
        second.state.metrics.active_sessions.get(),
        3,
        "seeded from the store, not from zero"
    );
    let text = prometheus(&second).await;
    assert_eq!(sample(&text, "chatbox_active_sessions_total"), Some(3.0));
    second.stop().await;
}
