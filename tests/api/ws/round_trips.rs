//! Round trips to MongoDB per chat turn, counted by the driver's command monitoring
//! (`chatbox_mongodb_commands_total`): a turn in a session that is live on this node sends, in two steps,
//! the user's message (its document and the session's counters, at once) and then the answer (its
//! document, the session's counters with the turn's figures, and the user's daily tokens, at once): five
//! commands, two of them inserts and three updates by `_id`, whatever the length of the conversation.
//! `docs/storage.md` documents the count.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::json;

use crate::support::app::{TestApp, WsClient, app};
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
const PER_TURN: u64 = 5;

/// Counts the commands of 40 turns after a first one, with each message naming `session_id` (or none).
async fn turns_cost_five_commands(session_id: Option<&str>) {
    assert!(
        std::env::var("MONGODB_URI").is_ok_and(|u| !u.is_empty()),
        "MONGODB_URI is not set: run the tests through scripts/test.sh"
    );
    let app = app().spawn().await;
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
    // Beyond five per turn, only the seq block reservations (one update per half block of seqs used).
    let half_block = chatbox::chat::SEQ_BLOCK / 2;
    let reservations = (last_seq - first_seq).div_ceil(half_block) + 1;
    let extra = counts.iter().sum::<u64>() - PER_TURN * counts.len() as u64;
    assert!(
        extra <= reservations,
        "turns cost {PER_TURN} commands, plus {reservations} seq block reservations at most: {counts:?}"
    );
}

#[tokio::test]
async fn a_turn_in_a_live_session_costs_five_commands_however_long_the_conversation() {
    turns_cost_five_commands(None).await;
}

/// Go clients name a session id of their own, which the server does not know: it stands for the user's
/// active session, and is not looked up again on every message.
#[tokio::test]
async fn a_client_made_session_id_costs_no_extra_round_trip() {
    turns_cost_five_commands(Some("client-made-0123456789")).await;
}
