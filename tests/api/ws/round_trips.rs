//! Round trips to MongoDB per chat turn, counted by the driver's command monitoring
//! (`chatbox_mongodb_commands_total`): a turn in a session that is live on this node sends, in two steps,
//! the user's message (its document) and then the answer (its document, and the session's update with
//! both messages' counters and the turn's figures, at once): three commands, two inserts and one update by
//! `_id`, whatever the length of the conversation. The users' daily tokens are held back and sent for all
//! users in one command per flush (`store.flush_interval`). On the embedded store a turn costs two commits.
//! `docs/storage.md` documents the counts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use chatbox::store::{AppendOutcome, MessageRecord};
use serde_json::json;

use crate::support::app::{TestApp, TestAppBuilder, WsClient, app};
use crate::support::http::status;

/// Commands sent so far, by name.
fn commands(app: &TestApp) -> Vec<(String, u64)> {
    let families = app.state.metrics.store_commands.clone();
    let mut out = Vec::new();
    for name in [
        "find",
        "update",
        "insert",
        "delete",
        "aggregate",
        "count",
        "findAndModify",
    ] {
        let n = families.with_label_values(&[name]).get();
        if n > 0 {
            out.push((name.to_string(), n));
        }
    }
    out
}

fn total(counts: &[(String, u64)]) -> u64 {
    counts.iter().map(|(_, n)| n).sum()
}

/// Runs one turn, naming `session_id` when given; returns the seq of its final chunk.
async fn turn(ws: &mut WsClient, session_id: Option<&str>, content: &str) -> u64 {
    let mut frame = json!({"type": "user_message", "content": content});
    if let Some(id) = session_id {
        frame["session_id"] = json!(id);
    }
    ws.send(frame).await;
    let frames = ws.recv_turn().await;
    let last = frames.last().unwrap();
    assert_eq!(last["metadata"]["done"], "true", "{frames:?}");
    last["seq"].as_u64().unwrap()
}

/// Commands per turn in a live session.
const PER_TURN: u64 = 3;

/// A server on MongoDB whose held-back writes are flushed only when a test asks (or at shutdown).
fn mongo_app() -> TestAppBuilder {
    assert!(
        std::env::var("MONGODB_URI").is_ok_and(|u| !u.is_empty()),
        "MONGODB_URI is not set: run the tests through scripts/test.sh"
    );
    app().env("STORE_FLUSH_INTERVAL", "1h")
}

/// Counts the commands of 40 turns after a first one, with each message naming `session_id` (or none).
async fn turns_cost_three_commands(session_id: Option<&str>) {
    let app = mongo_app().spawn().await;
    let mut ws = app.connect_ws(&app.user_token("counted")).await;
    status(&mut ws).await;
    // The first turn creates the session and makes it live on this node.
    let first_seq = turn(&mut ws, session_id, "first").await;
    let mut per_turn = Vec::new();
    let mut last_seq = first_seq;
    for i in 0..40 {
        let before = commands(&app);
        last_seq = turn(&mut ws, session_id, &format!("message {i}")).await;
        let after = commands(&app);
        per_turn.push((total(&after) - total(&before), before, after));
    }
    let counts: Vec<u64> = per_turn.iter().map(|(n, _, _)| *n).collect();
    let over: Vec<_> = per_turn
        .iter()
        .filter(|(n, _, _)| *n > PER_TURN + 1)
        .collect();
    assert!(
        over.is_empty(),
        "a turn sent more than {} commands: {over:?}",
        PER_TURN + 1
    );
    // No find: a live session is never read again.
    let (first, last) = (&per_turn[0].1, &per_turn[per_turn.len() - 1].2);
    let finds = |c: &[(String, u64)]| c.iter().find(|(n, _)| n == "find").map_or(0, |(_, n)| *n);
    assert_eq!(finds(first), finds(last), "no turn reads the store");
    // Two inserts per turn: the messages' documents.
    let inserts =
        |c: &[(String, u64)]| c.iter().find(|(n, _)| n == "insert").map_or(0, |(_, n)| *n);
    assert_eq!(inserts(last) - inserts(first), 2 * counts.len() as u64);
    // Beyond three per turn, only the seq block reservations (one update per half block of seqs used).
    let half_block = chatbox::chat::SEQ_BLOCK / 2;
    let reservations = (last_seq - first_seq).div_ceil(half_block) + 1;
    let extra = counts.iter().sum::<u64>() - PER_TURN * counts.len() as u64;
    assert!(
        extra <= reservations,
        "turns cost {PER_TURN} commands, plus {reservations} seq block reservations at most: {counts:?}"
    );
}

#[tokio::test]
async fn a_turn_in_a_live_session_costs_three_commands_however_long_the_conversation() {
    turns_cost_three_commands(None).await;
}

/// Go clients name a session id of their own, which the server does not know: it stands for the user's
/// active session, and is not looked up again on every message.
#[tokio::test]
async fn a_client_made_session_id_costs_no_extra_round_trip() {
    turns_cost_three_commands(Some("client-made-0123456789")).await;
}

/// On the embedded store a turn in an active session takes the writer thread twice (the user's message,
/// then the answer with the turn's figures), each a commit of its own (the second waits for the first);
/// finding the active session and the history window are reads.
#[tokio::test]
async fn a_turn_on_the_embedded_store_costs_two_commits() {
    let app = app().embedded().spawn().await;
    let metrics = app.state.metrics.clone();
    let commits = || metrics.embedded_commits.get();
    let writes = || metrics.embedded_writes.get();
    let ops = |name: &str| {
        metrics
            .store_operation
            .with_label_values(&[name])
            .get_sample_count()
    };
    let mut ws = app.connect_ws(&app.user_token("counted")).await;
    status(&mut ws).await;
    let first_seq = turn(&mut ws, None, "first").await;
    let (commits_before, writes_before) = (commits(), writes());
    let created = ops("create_session");
    let mut last_seq = first_seq;
    let turns = 30;
    for i in 0..turns {
        let before = commits();
        last_seq = turn(&mut ws, None, &format!("message {i}")).await;
        let n = commits() - before;
        assert!((2..=3).contains(&n), "turn {i} took {n} commits");
    }
    let (commits_used, writes_used) = (commits() - commits_before, writes() - writes_before);
    // Beyond two per turn, only the seq block reservations.
    let half_block = chatbox::chat::SEQ_BLOCK / 2;
    let reservations = (last_seq - first_seq).div_ceil(half_block) + 1;
    assert!(
        writes_used >= 2 * turns && writes_used <= 2 * turns + reservations,
        "{writes_used} writes for {turns} turns"
    );
    // A reservation may share a commit with a turn's write.
    assert!(
        commits_used >= 2 * turns && commits_used <= writes_used,
        "{commits_used} commits for {turns} turns"
    );
    assert_eq!(
        ops("create_session"),
        created,
        "the active session is read, not written"
    );
    assert_eq!(
        ops("put_answer") + ops("record_usage"),
        0,
        "answer and figures in one write"
    );
}

/// The daily tokens of every user who had a turn since the last flush go out together: one command for up
/// to eight users once their day's documents exist (the first flush of a day inserts them first, all in
/// one command), and a flush with nothing held back sends none; budgets count the held-back tokens.
#[tokio::test]
async fn daily_usage_of_all_users_is_flushed_together() {
    let app = mongo_app().spawn().await;
    let today = time::OffsetDateTime::now_utc().date();
    let mut connections = Vec::new();
    for n in 0..4 {
        let user = format!("flushed-{n}");
        let mut ws = app.connect_ws(&app.user_token(&user)).await;
        status(&mut ws).await;
        turn(&mut ws, None, "hello").await;
        connections.push((user, ws));
    }
    let store = &app.state.store;
    for (round, commands_sent) in [(0, 2), (1, 1)] {
        if round > 0 {
            for (_, ws) in &mut connections {
                turn(ws, None, "again").await;
            }
        }
        let mut held = Vec::new();
        for (user, _) in &connections {
            held.push(store.user_tokens_on(user, today).await.unwrap());
        }
        assert!(
            held.iter().all(|t| *t > 0),
            "held-back tokens count: {held:?}"
        );
        let before = commands(&app);
        store.flush().await.unwrap();
        let after = commands(&app);
        assert_eq!(
            total(&after) - total(&before),
            commands_sent,
            "flush {round}: {before:?} -> {after:?}"
        );
        for ((user, _), tokens) in connections.iter().zip(&held) {
            assert_eq!(store.user_tokens_on(user, today).await.unwrap(), *tokens);
        }
    }
    let before = commands(&app);
    store.flush().await.unwrap();
    assert_eq!(
        total(&commands(&app)),
        total(&before),
        "nothing held back, nothing sent"
    );
}

/// Message documents of many sessions stored at the same moment go out in one command, and the sessions'
/// held-back counters, when flushed, eight to a command; lists then count every message.
#[tokio::test]
async fn writes_of_many_sessions_ready_together_go_out_together() {
    let app = mongo_app().spawn().await;
    let store = &app.state.store;
    let mut sessions = Vec::new();
    for n in 0..32 {
        let user = format!("grouped-{n}");
        let active = store
            .get_or_create_active(&user, None, "demo")
            .await
            .unwrap();
        // A first message makes the session known to the store without reading it again.
        let first = MessageRecord::new(format!("first-{n}"), 1, "user", "first");
        store
            .append_message(&active.session.id, &first)
            .await
            .unwrap();
        sessions.push((user, active.session.id));
    }
    store.flush().await.unwrap();
    let before = commands(&app);
    // This test's runtime has one thread: every append is asked for before the writer runs.
    let appended = futures::future::join_all(sessions.iter().enumerate().map(|(n, (_, id))| {
        let second = MessageRecord::new(format!("second-{n}"), 2, "user", "second");
        async move { store.append_message(id, &second).await }
    }))
    .await;
    assert!(
        appended
            .iter()
            .all(|a| matches!(a, Ok(AppendOutcome::Stored))),
        "{appended:?}"
    );
    let after = commands(&app);
    assert_eq!(
        (
            total(&after) - total(&before),
            after.iter().find(|(n, _)| n == "insert").map(|(_, n)| *n)
        ),
        (
            1,
            before
                .iter()
                .find(|(n, _)| n == "insert")
                .map(|(_, n)| n + 1)
        ),
        "32 message documents in one insert: {before:?} -> {after:?}"
    );
    let before = commands(&app);
    store.flush().await.unwrap();
    // Eight statements per `update` command (FerretDB 1.24 stalls on large ones).
    assert_eq!(
        total(&commands(&app)) - total(&before),
        4,
        "32 sessions' counters in four updates"
    );
    for (user, id) in &sessions {
        let listed = store.list_user_sessions(user, 10).await.unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|s| (&s.id, s.message_count))
                .collect::<Vec<_>>(),
            [(id, 2)]
        );
    }
    // In one command, an update of a session that does not exist is told apart from the others.
    let mut ids: Vec<&str> = sessions.iter().map(|(_, id)| id.as_str()).take(4).collect();
    ids.insert(2, "no-such-session");
    let set = futures::future::join_all(ids.iter().map(|id| store.set_model(id, "other"))).await;
    let missing: Vec<bool> = set
        .iter()
        .map(|r| matches!(r, Err(chatbox::store::StoreError::NotFound)))
        .collect();
    assert_eq!(missing, [false, false, true, false, false], "{set:?}");
    assert!(set.iter().filter(|r| r.is_ok()).count() == 4);
}

/// The daily usage of many users is stored in small groups: FerretDB 1.24 stalls (every client waits)
/// on one `update` command of about 100 statements.
#[tokio::test]
async fn usage_of_a_hundred_users_is_flushed_without_stalling_the_database() {
    let app = mongo_app().spawn().await;
    let store = &app.state.store;
    let today = time::OffsetDateTime::now_utc();
    let users: Vec<String> = (0..100).map(|n| format!("many-{n}")).collect();
    for user in &users {
        let active = store
            .get_or_create_active(user, None, "demo")
            .await
            .unwrap();
        let usage = chatbox::store::TurnUsage {
            tokens: 7,
            response_ms: 1,
            at: today,
        };
        store.record_usage(&active.session.id, usage).await.unwrap();
    }
    store.flush().await.unwrap();
    store.flush().await.unwrap();
    for user in &users {
        assert_eq!(store.user_tokens_on(user, today.date()).await.unwrap(), 7);
    }
}
