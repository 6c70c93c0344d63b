//! Administration over HTTP: role and rate-limit order, the session list with the Go service's parameter
//! quirks and cursor paging, metrics in both namings, per-user sessions, export and deletion, and the
//! audit log (recorded once per action whichever door it came through, and kept across restarts).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::app::{SharedData, TestApp, app, spawn_app};
use crate::support::http::{
    assert_error, call, delete, end_in_store, get, is_http_time, post, status, stored_session,
};

/// Every admin route with a method and a path (the session and user need not exist for a 403).
fn admin_routes() -> Vec<(Method, &'static str)> {
    vec![
        (Method::GET, "/admin/sessions"),
        (Method::GET, "/admin/metrics"),
        (Method::GET, "/admin/audit"),
        (Method::POST, "/admin/takeover/s1"),
        (Method::DELETE, "/admin/takeover/s1"),
        (Method::POST, "/admin/takeover/s1/transfer"),
        (Method::GET, "/admin/users/u1/sessions"),
        (Method::GET, "/admin/users/u1/export"),
        (Method::DELETE, "/admin/users/u1"),
    ]
}

#[tokio::test]
async fn http_non_admins_get_403_on_every_admin_route() {
    let app = spawn_app().await;
    let user = app.user_token("mallory");
    let other_role = app.token("mallory", &["moderator", "user"], Some("Mallory"));
    for (method, path) in admin_routes() {
        for token in [&user, &other_role] {
            let answer = call(&app, method.clone(), path, Some(token)).await;
            assert_error(&answer, 403, "Insufficient permissions", "FORBIDDEN");
        }
        let answer = call(&app, method.clone(), path, None).await;
        assert_error(&answer, 401, "Invalid authorization header", "UNAUTHORIZED");
    }
    // `chat_admin` is an admin role too.
    let chat_admin = app.token("ops", &["chat_admin"], None);
    assert_eq!(get(&app, "/admin/sessions", &chat_admin).await.status, 200);
}

#[tokio::test]
async fn http_the_admin_rate_limit_counts_per_admin_after_authentication() {
    let app = app().env("ADMIN_RATE_LIMIT", "2").spawn().await;
    let admin = app.admin_token("root");
    for _ in 0..2 {
        assert_eq!(get(&app, "/admin/sessions", &admin).await.status, 200);
    }
    let limited = get(&app, "/admin/metrics", &admin).await;
    assert_eq!(limited.status, 429, "{limited:?}");
    let after: i64 = limited.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=60).contains(&after), "{after}");
    assert_eq!(limited.body["error"], "rate_limit_exceeded");
    assert_eq!(
        limited.body["message"],
        "Too many requests. Please try again later."
    );
    let ms = limited.body["retry_after_ms"].as_i64().unwrap();
    assert!((1..=60_000).contains(&ms), "{ms}");
    assert_eq!(after, (ms + 999) / 1000);
    // Authentication and the role come first.
    let answer = call(&app, Method::GET, "/admin/sessions", None).await;
    assert_error(&answer, 401, "Invalid authorization header", "UNAUTHORIZED");
    let answer = get(&app, "/admin/sessions", &app.user_token("root")).await;
    assert_error(&answer, 403, "Insufficient permissions", "FORBIDDEN");
    // Another administrator has their own budget; user routes have none.
    assert_eq!(
        get(&app, "/admin/sessions", &app.admin_token("other"))
            .await
            .status,
        200
    );
    assert_eq!(
        get(&app, "/sessions", &app.user_token("root")).await.status,
        200
    );
    // Every sliding-window limiter counts under `limiter="message"`, as in the Go service.
    assert!(
        app.state
            .metrics
            .ratelimit_blocked
            .with_label_values(&["message"])
            .get()
            >= 1,
        "blocked requests are counted"
    );
}

/// Four users' sessions: alice (ended, 30 tokens), bob (active, 20), carol (active, 10), dave (ended, 40).
async fn four_sessions(app: &crate::support::app::TestApp) -> Vec<String> {
    let mut ids = Vec::new();
    for (user, tokens) in [("alice", 30), ("bob", 20), ("carol", 10), ("dave", 40)] {
        ids.push(stored_session(app, user, &format!("{user} asks"), tokens, tokens * 10).await);
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    end_in_store(app, &ids[0]).await;
    end_in_store(app, &ids[3]).await;
    ids
}

fn users(body: &Value) -> Vec<String> {
    body["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["user_id"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test]
async fn http_the_admin_list_filters_sorts_and_pages() {
    let app = app().env("ADMIN_RATE_LIMIT", "1000").spawn().await;
    four_sessions(&app).await;
    let admin = app.admin_token("root");

    let all = get(&app, "/admin/sessions", &admin).await;
    assert_eq!(all.status, 200, "{all:?}");
    assert_eq!(
        users(&all.body),
        ["dave", "carol", "bob", "alice"],
        "newest first by default"
    );
    assert_eq!(all.body["count"], 4);
    assert_eq!(all.body["limit"], 100);
    assert_eq!(all.body["offset"], 0);
    assert!(all.body.get("next_cursor").is_none());
    let dave = &all.body["sessions"][0];
    assert_eq!(dave["is_active"], false);
    assert!(is_http_time(&dave["end_time"]));
    assert_eq!(dave["total_tokens"], 40);
    assert_eq!(dave["max_response_time"], 400);

    let by = |query: &'static str| {
        let admin = admin.clone();
        let app = &app;
        async move { get(app, &format!("/admin/sessions?{query}"), &admin).await }
    };
    assert_eq!(users(&by("user_id=bob").await.body), ["bob"]);
    assert_eq!(users(&by("status=active").await.body), ["carol", "bob"]);
    assert_eq!(users(&by("status=ended").await.body), ["dave", "alice"]);
    assert_eq!(
        users(&by("status=whatever").await.body).len(),
        4,
        "other values are ignored"
    );
    assert_eq!(users(&by("admin_assisted=true").await.body).len(), 0);
    assert_eq!(users(&by("admin_assisted=no").await.body).len(), 4);
    assert_eq!(
        users(&by("sort_by=user_id&sort_order=asc").await.body),
        ["alice", "bob", "carol", "dave"]
    );
    assert_eq!(
        users(&by("sort_by=total_tokens").await.body),
        ["dave", "alice", "bob", "carol"]
    );
    assert_eq!(
        users(&by("sort_by=message_count&sort_order=asc").await.body).len(),
        4
    );
    assert_eq!(users(&by("sort_by=end_time").await.body).len(), 4);
    let from = all.body["sessions"][1]["start_time"]
        .as_str()
        .unwrap()
        .to_string();
    let newer = get(
        &app,
        &format!("/admin/sessions?start_time_from={from}"),
        &admin,
    )
    .await;
    assert_eq!(users(&newer.body), ["dave", "carol"]);
    let older = get(
        &app,
        &format!("/admin/sessions?start_time_to={from}"),
        &admin,
    )
    .await;
    assert_eq!(users(&older.body), ["carol", "bob", "alice"]);

    // Lenient paging numbers, as the Go service parsed them.
    let page = by("limit=2abc&offset=1").await;
    assert_eq!(page.body["limit"], 2);
    assert_eq!(page.body["offset"], 1);
    assert_eq!(users(&page.body), ["carol", "bob"]);
    for (query, limit) in [
        ("limit=0", 100),
        ("limit=-4", 100),
        ("limit=5000", 100),
        ("limit=x", 100),
        ("limit=1000", 1000),
    ] {
        let answer = by(query).await;
        assert_eq!(answer.body["limit"], limit, "{query}");
    }
    assert_eq!(by("offset=-3").await.body["offset"], 0);
    assert_eq!(by("offset=zz").await.body["offset"], 0);

    // Cursor paging: stable pages, offset ignored.
    let first = by("limit=3").await;
    assert_eq!(users(&first.body), ["dave", "carol", "bob"]);
    let cursor = first.body["next_cursor"].as_str().unwrap().to_string();
    let second = get(
        &app,
        &format!("/admin/sessions?limit=3&offset=2&cursor={cursor}"),
        &admin,
    )
    .await;
    assert_eq!(second.status, 200, "{second:?}");
    assert_eq!(users(&second.body), ["alice"]);
    assert_eq!(second.body["offset"], 0);
    assert!(second.body.get("next_cursor").is_none());
}

#[tokio::test]
async fn http_the_admin_list_refuses_bad_parameters_with_the_go_texts() {
    let app = spawn_app().await;
    let admin = app.admin_token("root");
    let cases = [
        (
            "sort_by=duration".to_string(),
            "invalid sort_by field \"duration\"; allowed: start_time, end_time, message_count, total_tokens, user_id",
        ),
        (
            "sort_order=up".to_string(),
            "invalid sort_order \"up\"; allowed: asc, desc",
        ),
        (
            "start_time_from=yesterday".to_string(),
            "Invalid time format, expected RFC3339",
        ),
        (
            "start_time_to=2026-01-01".to_string(),
            "Invalid time format, expected RFC3339",
        ),
        ("cursor=not-a-cursor".to_string(), "Invalid cursor"),
        (
            format!("user_id={}&sort_by=duration", "u".repeat(256)),
            "user_id exceeds maximum length of 255 characters",
        ),
    ];
    for (query, text) in cases {
        let answer = get(&app, &format!("/admin/sessions?{query}"), &admin).await;
        assert_error(&answer, 400, text, "BAD_REQUEST");
    }
    let ok = get(
        &app,
        &format!("/admin/sessions?user_id={}", "u".repeat(255)),
        &admin,
    )
    .await;
    assert_eq!(ok.status, 200);
    // A cursor issued for another sort is foreign.
    four_sessions(&app).await;
    let page = get(&app, "/admin/sessions?limit=1", &admin).await;
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let foreign = get(
        &app,
        &format!("/admin/sessions?limit=1&sort_by=user_id&cursor={cursor}"),
        &admin,
    )
    .await;
    assert_error(&foreign, 400, "Invalid cursor", "BAD_REQUEST");
}

#[tokio::test]
async fn http_admin_metrics_carry_the_go_names_and_the_snake_case_figures() {
    let app = spawn_app().await;
    four_sessions(&app).await;
    let admin = app.admin_token("root");
    let answer = get(&app, "/admin/metrics", &admin).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let body = &answer.body;
    let metrics = &body["metrics"];
    assert_eq!(metrics["TotalSessions"], 4);
    assert_eq!(metrics["ActiveSessions"], 2);
    assert_eq!(metrics["TotalTokens"], 100);
    assert_eq!(metrics["MaxResponseTime"], 400);
    assert_eq!(metrics["AvgResponseTime"], 250);
    assert_eq!(metrics["AdminAssistedCount"], 0);
    for (go, snake) in [
        ("TotalSessions", "total_sessions"),
        ("ActiveSessions", "active_sessions"),
        ("TotalTokens", "total_tokens"),
        ("AvgResponseTime", "avg_response_time"),
        ("MaxResponseTime", "max_response_time"),
        ("AdminAssistedCount", "admin_assisted_count"),
    ] {
        assert_eq!(metrics[go], body[snake], "{go} = {snake}");
    }
    assert!(body["avg_concurrent"].as_f64().unwrap() >= 0.0);
    assert!(is_http_time(&body["time_range"]["start"]));
    assert!(is_http_time(&body["time_range"]["end"]));

    // Dates mean whole UTC days; a range in the past is empty.
    let past = get(
        &app,
        "/admin/metrics?start_time=2020-01-01&end_time=2020-01-31",
        &admin,
    )
    .await;
    assert_eq!(past.status, 200);
    assert_eq!(past.body["total_sessions"], 0);
    assert_eq!(past.body["time_range"]["start"], "2020-01-01T00:00:00Z");
    assert_eq!(past.body["time_range"]["end"], "2020-01-31T23:59:59Z");
    let rfc = get(
        &app,
        "/admin/metrics?start_time=2020-01-01T00:00:00Z&end_time=2999-01-01T00:00:00Z",
        &admin,
    )
    .await;
    assert_eq!(rfc.body["total_sessions"], 4);

    let bad = get(&app, "/admin/metrics?start_time=last-week", &admin).await;
    assert_error(
        &bad,
        400,
        "Invalid time format, expected RFC3339",
        "BAD_REQUEST",
    );
    let reversed = get(
        &app,
        "/admin/metrics?start_time=2026-02-02&end_time=2026-02-01",
        &admin,
    )
    .await;
    assert_error(
        &reversed,
        400,
        "end_time must not be before start_time",
        "BAD_REQUEST",
    );
}

#[tokio::test]
async fn http_an_admin_lists_exports_and_deletes_one_users_data() {
    let app = spawn_app().await;
    let admin = app.admin_token("root");
    let first = stored_session(&app, "alice", "First question", 5, 50).await;
    end_in_store(&app, &first).await;
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let second = stored_session(&app, "alice", "Second question", 7, 70).await;
    stored_session(&app, "bob", "Bob asks", 1, 1).await;

    let list = get(&app, "/admin/users/alice/sessions", &admin).await;
    assert_eq!(list.status, 200, "{list:?}");
    assert_eq!(list.body["user_id"], "alice");
    assert_eq!(list.body["count"], 2);
    assert_eq!(
        list.body["sessions"][0]["id"],
        second.as_str(),
        "newest first"
    );
    assert_eq!(list.body["sessions"][1]["id"], first.as_str());
    let page = get(&app, "/admin/users/alice/sessions?limit=1", &admin).await;
    assert_eq!(page.body["count"], 1);
    let cursor = page.body["next_cursor"].as_str().unwrap();
    let next = get(
        &app,
        &format!("/admin/users/alice/sessions?limit=1&cursor={cursor}"),
        &admin,
    )
    .await;
    assert_eq!(next.body["sessions"][0]["id"], first.as_str());
    let unknown = get(&app, "/admin/users/nobody/sessions", &admin).await;
    assert_eq!(unknown.body["sessions"], json!([]));
    let bad = get(&app, "/admin/users/alice/sessions?limit=ten", &admin).await;
    assert_error(&bad, 400, "Invalid query parameter: limit", "BAD_REQUEST");
    let bad = get(&app, "/admin/users/alice/sessions?offset=1.5", &admin).await;
    assert_error(&bad, 400, "Invalid query parameter: offset", "BAD_REQUEST");
    let long = "x".repeat(256);
    for (method, path) in [
        (Method::GET, format!("/admin/users/{long}/sessions")),
        (Method::GET, format!("/admin/users/{long}/export")),
        (Method::DELETE, format!("/admin/users/{long}")),
    ] {
        let answer = call(&app, method, &path, Some(&admin)).await;
        assert_error(
            &answer,
            400,
            "user_id exceeds maximum length of 255 characters",
            "BAD_REQUEST",
        );
    }

    let export = get(&app, "/admin/users/alice/export", &admin).await;
    assert_eq!(export.status, 200, "{export:?}");
    assert_eq!(export.body["user_id"], "alice");
    assert!(is_http_time(&export.body["exported_at"]));
    let sessions = export.body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[0]["session"]["id"], first.as_str(), "oldest first");
    assert_eq!(sessions[0]["messages"][0]["content"], "First question");
    assert_eq!(sessions[0]["messages"][1]["sender"], "ai");
    assert_eq!(sessions[1]["session"]["total_tokens"], 7);

    // Alice is online: her device is told that her active session ended before it is deleted.
    let mut device = app.connect_ws(&app.user_token("alice")).await;
    status(&mut device).await;
    let deleted = delete(&app, "/admin/users/alice", &admin).await;
    assert_eq!(deleted.status, 200, "{deleted:?}");
    assert_eq!(
        deleted.body,
        json!({"status": "deleted", "user_id": "alice", "sessions_deleted": 2, "messages_deleted": 4})
    );
    let frame = device.recv().await;
    assert_eq!(frame["type"], "notification", "{frame}");
    assert_eq!(frame["metadata"]["event"], "session_ended");
    assert_eq!(frame["session_id"], second.as_str());

    assert_eq!(
        get(&app, "/admin/users/alice/sessions", &admin).await.body["count"],
        0
    );
    assert_eq!(
        get(&app, "/admin/users/alice/export", &admin).await.body["sessions"],
        json!([])
    );
    assert!(
        app.state
            .store
            .get_session(&second)
            .await
            .unwrap()
            .is_none()
    );
    let again = delete(&app, "/admin/users/alice", &admin).await;
    assert_eq!(again.body["sessions_deleted"], 0);
    // Bob is untouched.
    assert_eq!(
        get(&app, "/admin/users/bob/sessions", &admin).await.body["count"],
        1
    );
}

#[tokio::test]
async fn http_the_audit_log_lists_admin_actions_newest_first() {
    let app = app().env("ADMIN_RATE_LIMIT", "1000").spawn().await;
    let id = stored_session(&app, "alice", "Help me", 1, 1).await;
    let root = app.admin_token("root");
    let ops = app.token("ops", &["chat_admin"], None);
    assert_eq!(
        post(&app, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    assert_eq!(
        post(&app, &format!("/admin/takeover/{id}/transfer"), &ops)
            .await
            .status,
        200
    );
    assert_eq!(
        delete(&app, &format!("/admin/takeover/{id}"), &ops)
            .await
            .status,
        200
    );
    assert_eq!(
        get(&app, "/admin/users/alice/sessions", &root).await.status,
        200
    );
    assert_eq!(
        get(&app, "/admin/users/alice/export", &root).await.status,
        200
    );
    assert_eq!(delete(&app, "/admin/users/alice", &root).await.status, 200);
    // Listing every user's sessions is audited with its filters; metrics are not.
    assert_eq!(
        get(
            &app,
            "/admin/sessions?user_id=alice&status=ended&sort_by=user_id",
            &root
        )
        .await
        .status,
        200
    );
    assert_eq!(get(&app, "/admin/metrics", &root).await.status, 200);

    let log = get(&app, "/admin/audit", &root).await;
    assert_eq!(log.status, 200, "{log:?}");
    let entries = log.body["entries"].as_array().unwrap();
    let actions: Vec<_> = entries
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions,
        [
            "session_list",
            "user_delete",
            "user_export",
            "user_sessions_view",
            "takeover_end",
            "takeover_transfer",
            "takeover"
        ]
    );
    assert_eq!(log.body["count"], 7);
    assert_eq!(log.body["limit"], 100);
    assert_eq!(log.body["offset"], 0);
    let list_entry = &entries[0];
    assert_eq!(list_entry["admin_id"], "root");
    assert_eq!(list_entry["user_id"], "alice");
    assert!(list_entry.get("session_id").is_none());
    assert_eq!(list_entry["details"], json!({"status": "ended"}));
    let delete_entry = &entries[1];
    assert_eq!(delete_entry["admin_id"], "root");
    assert_eq!(delete_entry["admin_name"], "Admin root");
    assert_eq!(delete_entry["user_id"], "alice");
    assert!(delete_entry.get("session_id").is_none());
    assert_eq!(delete_entry["details"]["sessions_deleted"], "1");
    assert!(is_http_time(&delete_entry["timestamp"]));
    let transfer = &entries[5];
    assert_eq!(transfer["admin_id"], "ops");
    assert!(
        transfer.get("admin_name").is_none(),
        "the ops token has no name: {transfer}"
    );
    assert_eq!(transfer["session_id"], id.as_str());
    assert_eq!(transfer["user_id"], "alice");
    assert_eq!(transfer["details"]["previous_admin_id"], "root");
    assert_eq!(entries[6]["admin_id"], "root");

    let first = get(&app, "/admin/audit?limit=5", &root).await;
    assert_eq!(first.body["count"], 5);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = get(
        &app,
        &format!("/admin/audit?limit=5&cursor={cursor}"),
        &root,
    )
    .await;
    let rest: Vec<_> = second.body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].clone())
        .collect();
    assert_eq!(rest, [json!("takeover_transfer"), json!("takeover")]);
    let skipped = get(&app, "/admin/audit?offset=6", &root).await;
    assert_eq!(skipped.body["entries"][0]["action"], "takeover");
    assert_eq!(
        get(&app, "/admin/audit?offset=-2", &root).await.body["offset"],
        0
    );
    assert_eq!(
        get(&app, "/admin/audit?limit=0", &root).await.body["limit"],
        100
    );

    let bad = get(&app, "/admin/audit?limit=many", &root).await;
    assert_error(&bad, 400, "Invalid query parameter: limit", "BAD_REQUEST");
    let bad = get(&app, "/admin/audit?offset=x", &root).await;
    assert_error(&bad, 400, "Invalid query parameter: offset", "BAD_REQUEST");
    let bad = get(&app, "/admin/audit?cursor=zzz", &root).await;
    assert_error(&bad, 400, "Invalid cursor", "BAD_REQUEST");
}

/// The audit entries once there are `n` of them (they are written right after the action is answered),
/// checking that no more follow.
async fn audit_entries(app: &TestApp, token: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = get(app, "/admin/audit", token).await;
        assert_eq!(log.status, 200, "{log:?}");
        let entries = log.body["entries"].as_array().unwrap().clone();
        if entries.len() >= n {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let again = get(app, "/admin/audit", token).await;
            let again = again.body["entries"].as_array().unwrap().clone();
            assert_eq!(again.len(), n, "exactly {n} entries: {again:#?}");
            return again;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "expected {n} audit entries, got {entries:#?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

fn summary(entries: &[Value]) -> Vec<(String, String, String)> {
    entries
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["admin_id"].as_str().unwrap().to_string(),
                e["details"]["via"].as_str().unwrap_or("-").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn ws_admin_join_and_leave_are_audited_once_and_the_log_survives_a_restart() {
    let data = SharedData::new();
    let first = app()
        .env("ADMIN_RATE_LIMIT", "1000")
        .data(&data)
        .spawn()
        .await;
    let id = stored_session(&first, "alice", "Help me", 1, 1).await;
    let root = first.admin_token("root");
    let ops = first.token("ops", &["chat_admin"], None);

    let mut ws = first.connect_ws(&root).await;
    status(&mut ws).await;
    ws.send(json!({"type": "admin_join", "session_id": id, "sender": "admin"}))
        .await;
    ws.recv_until("admin_join").await;
    let joined = audit_entries(&first, &root, 1).await;
    ws.send(json!({"type": "admin_leave", "session_id": id, "sender": "admin"}))
        .await;
    let entries = audit_entries(&first, &root, 2).await;
    assert_eq!(entries[1], joined[0]);
    let join = &entries[1];
    assert_eq!(join["action"], "takeover");
    assert_eq!(join["admin_id"], "root");
    assert_eq!(join["admin_name"], "Admin root");
    assert_eq!(join["session_id"], id.as_str());
    assert_eq!(join["user_id"], "alice");
    assert_eq!(join["details"], json!({"via": "websocket"}));
    assert!(is_http_time(&join["timestamp"]));
    let leave = &entries[0];
    assert_eq!(leave["action"], "takeover_end");
    assert_eq!(leave["session_id"], id.as_str());
    assert_eq!(leave["details"], json!({"via": "websocket"}));

    // The HTTP doors go through the same recording: one entry each.
    assert_eq!(
        post(&first, &format!("/admin/takeover/{id}"), &root)
            .await
            .status,
        200
    );
    assert_eq!(
        post(&first, &format!("/admin/takeover/{id}/transfer"), &ops)
            .await
            .status,
        200
    );
    assert_eq!(
        delete(&first, &format!("/admin/takeover/{id}"), &ops)
            .await
            .status,
        200
    );
    let entries = audit_entries(&first, &root, 5).await;
    let s = |a: &str, b: &str, c: &str| (a.to_string(), b.to_string(), c.to_string());
    let expected = vec![
        s("takeover_end", "ops", "http"),
        s("takeover_transfer", "ops", "http"),
        s("takeover", "root", "http"),
        s("takeover_end", "root", "websocket"),
        s("takeover", "root", "websocket"),
    ];
    assert_eq!(summary(&entries), expected);
    assert_eq!(entries[1]["details"]["previous_admin_id"], "root");
    assert_eq!(entries[1]["details"]["previous_admin_name"], "Admin root");
    ws.close().await;
    first.stop().await;

    // A new server on the same data dir (and database) lists the same entries, and keeps appending.
    let again = app().data(&data).spawn().await;
    let root = again.admin_token("root");
    let kept = get(&again, "/admin/audit", &root).await;
    assert_eq!(kept.status, 200, "{kept:?}");
    assert_eq!(kept.body["entries"].as_array().unwrap(), &entries);
    assert_eq!(
        get(&again, "/admin/users/alice/sessions", &root)
            .await
            .status,
        200
    );
    let after = audit_entries(&again, &root, 6).await;
    assert_eq!(after[0]["action"], "user_sessions_view");
    assert_eq!(&after[1..], &entries[..]);
}
