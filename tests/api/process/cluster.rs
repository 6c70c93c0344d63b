//! Cluster mode with real processes: three `chatbox` binaries on one FerretDB and one Redis, real
//! WebSocket clients spread over them. A user's devices on different nodes share one conversation (one
//! seq order), a device joins mid-answer on another node, cancel, the per-user connection limit and the
//! message rate limit and the daily token budget hold across nodes, help requests reach admins on every node, and an admin on one node
//! takes over a user on another, over WebSocket and over HTTP.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use crate::support::app::{WsClient, answer_text};
use crate::support::nodes::{Nodes, new_user};
use crate::support::wait::eventually_async;

/// The seqs of `frames` that carry one.
pub fn seqs(frames: &[Value]) -> Vec<i64> {
    frames.iter().filter_map(|f| f["seq"].as_i64()).collect()
}

/// Whether `seqs` only go up.
pub fn strictly_increasing(seqs: &[i64]) -> bool {
    seqs.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test]
async fn devices_on_three_nodes_share_one_conversation() {
    let cluster = Nodes::start(3, &[]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    let mut devices = Vec::new();
    for i in 0..3 {
        devices.push(cluster.connect(i, &token).await.0);
    }
    let mut seen: Vec<Vec<Value>> = vec![Vec::new(); 3];
    for (round, sender) in [1usize, 2, 0].into_iter().enumerate() {
        let content = format!("hello from node {sender}, round {round}");
        devices[sender]
            .send(json!({"type": "user_message", "content": content, "client_msg_id": format!("m{round}")}))
            .await;
        for (i, device) in devices.iter_mut().enumerate() {
            let turn = device.recv_turn().await;
            assert_eq!(
                turn.last().unwrap()["type"],
                "ai_response",
                "node {i}: {turn:?}"
            );
            assert!(
                !answer_text(&turn).is_empty(),
                "node {i} got the whole answer: {turn:?}"
            );
            if i != sender {
                assert!(
                    turn.iter()
                        .any(|f| f["type"] == "user_message" && f["content"] == content),
                    "node {i} saw the message sent on node {sender}: {turn:?}"
                );
            }
            seen[i].extend(turn);
        }
    }
    // One conversation: the same answers, in one strictly increasing seq order, on every node.
    let answers = |frames: &[Value]| answer_text(frames);
    for i in 0..3 {
        assert!(
            strictly_increasing(&seqs(&seen[i])),
            "node {i}: {:?}",
            seqs(&seen[i])
        );
        assert_eq!(answers(&seen[i]), answers(&seen[0]));
        let session = seen[i]
            .iter()
            .find_map(|f| f["session_id"].as_str())
            .unwrap();
        assert_eq!(
            session,
            seen[0]
                .iter()
                .find_map(|f| f["session_id"].as_str())
                .unwrap()
        );
    }
}

#[tokio::test]
async fn a_device_joining_on_another_node_mid_answer_gets_the_partial_answer_then_the_rest() {
    let cluster = Nodes::start(2, &[("LLM_DEMO_TOKEN_DELAY_MS", "40")]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    let (mut first, _) = cluster.connect(0, &token).await;
    let long = "tell me a long story about a crab who learns to run servers ".repeat(2);
    first
        .send(json!({"type": "user_message", "content": long, "client_msg_id": "long-1"}))
        .await;
    let mut head = Vec::new();
    while head
        .iter()
        .filter(|f: &&Value| f["type"] == "ai_response")
        .count()
        < 3
    {
        head.push(first.recv().await);
    }
    let (mut second, status) = cluster.connect(1, &token).await;
    assert!(status["last_seq"].as_i64().unwrap() > 0, "{status}");
    let partial = second.recv().await;
    assert_eq!(partial["type"], "ai_response", "{partial}");
    assert_eq!(partial["metadata"]["partial"], "true", "{partial}");
    let mut late = vec![partial.clone()];
    late.extend(second.recv_turn().await);
    let mut whole = head;
    whole.extend(first.recv_turn().await);
    assert_eq!(
        answer_text(&late),
        answer_text(&whole),
        "the partial answer and the live chunks make the whole answer, no gap, no repeat"
    );
    assert!(strictly_increasing(&seqs(&late)), "{:?}", seqs(&late));

    // A third device resuming after the user's message on the other node gets every later frame once.
    let echo_seq = whole
        .iter()
        .find(|f| f["type"] == "user_message")
        .map(|f| f["seq"].as_i64().unwrap())
        .unwrap_or(0);
    let frames = cluster.resume(1, &token, echo_seq).await;
    let replayed: Vec<_> = frames
        .iter()
        .filter(|f| f["type"] != "connection_status")
        .cloned()
        .collect();
    assert!(
        strictly_increasing(&seqs(&replayed)),
        "{:?}",
        seqs(&replayed)
    );
    assert!(
        replayed
            .iter()
            .all(|f| f["seq"].as_i64().unwrap() > echo_seq)
    );
    assert!(!answer_text(&replayed).is_empty(), "{frames:?}");
}

#[tokio::test]
async fn cancel_on_one_node_stops_the_turn_running_for_a_device_on_another() {
    let cluster = Nodes::start(2, &[("LLM_DEMO_TOKEN_DELAY_MS", "50")]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    let (mut asker, _) = cluster.connect(0, &token).await;
    let (mut other, _) = cluster.connect(1, &token).await;
    asker
        .send(json!({"type": "user_message", "content": "a long answer please ".repeat(8)}))
        .await;
    // The answer streams on both devices; the second one cancels it.
    loop {
        let frame = other.recv().await;
        if frame["type"] == "ai_response" {
            break;
        }
    }
    other.send(json!({"type": "cancel"})).await;
    let turn = asker.recv_turn().await;
    let last = turn.last().unwrap();
    assert_eq!(last["metadata"]["done"], "true", "{last}");
    assert_eq!(last["metadata"]["finish_reason"], "cancelled", "{last}");
}

#[tokio::test]
async fn the_per_user_connection_limit_counts_every_node() {
    let cluster = Nodes::start(3, &[]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    let mut open = Vec::new();
    for i in 0..10 {
        open.push(cluster.connect(i % 3, &token).await.0);
    }
    for i in 0..3 {
        assert_eq!(
            cluster.try_connect(i, &token).await.err(),
            Some(429),
            "an 11th connection on node {i} is refused"
        );
    }
    // A closed connection frees its slot for any node.
    open.pop().unwrap().close().await;
    eventually_async("the freed slot to be given back", async || {
        cluster.try_connect(2, &token).await.ok()
    })
    .await;
}

#[tokio::test]
async fn the_message_rate_limit_counts_every_node() {
    let cluster = Nodes::start(2, &[("RATE_LIMIT", "3"), ("RATE_LIMIT_WINDOW", "1m")]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    let (mut a, _) = cluster.connect(0, &token).await;
    let (mut b, _) = cluster.connect(1, &token).await;
    let mut refused = 0;
    for n in 0..4 {
        let (sender, other) = if n % 2 == 0 {
            (&mut a, &mut b)
        } else {
            (&mut b, &mut a)
        };
        sender
            .send(json!({"type": "user_message", "content": format!("message {n}")}))
            .await;
        let turn = sender.recv_turn().await;
        if turn.last().unwrap()["type"] == "error" {
            assert_eq!(
                turn.last().unwrap()["error"]["code"],
                "TOO_MANY_REQUESTS",
                "{turn:?}"
            );
            refused += 1;
        } else {
            other.recv_turn().await;
        }
    }
    assert_eq!(
        refused, 1,
        "the fourth message in the window is refused, whichever node"
    );
}

#[tokio::test]
async fn help_requests_reach_admins_on_every_node_and_an_admin_takes_over_across_nodes() {
    let cluster = Nodes::start(3, &[]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    let admin = format!("admin-{}", uuid::Uuid::new_v4().simple());
    let admin_token = cluster.token(&admin, &["admin"]);
    let (mut device, _) = cluster.connect(0, &token).await;
    let (mut watcher, _) = cluster.connect(1, &admin_token).await;
    let (mut helper, _) = cluster.connect(2, &admin_token).await;
    device
        .send(json!({"type": "user_message", "content": "hello"}))
        .await;
    let turn = device.recv_turn().await;
    let session_id = turn[0]["session_id"].as_str().unwrap().to_string();
    device
        .send(
            json!({"type": "help_request", "session_id": session_id, "content": "a human please"}),
        )
        .await;
    for admin_ws in [&mut watcher, &mut helper] {
        let frames = admin_ws.recv_until("help_request").await;
        assert_eq!(frames.last().unwrap()["session_id"], session_id.as_str());
    }

    // The admin on node 3 takes the session over: the AI pauses, messages go both ways.
    admin_assists_then_leaves(&mut helper, &mut [&mut device], &session_id).await;
}

/// `helper` (an admin) takes session `session_id` over: every device sees the join and the admin's
/// message, the admin sees a message of the last device, the AI stays quiet until the admin leaves, then
/// answers the first device again.
pub async fn admin_assists_then_leaves(
    helper: &mut WsClient,
    devices: &mut [&mut WsClient],
    session_id: &str,
) {
    helper
        .send(json!({"type": "admin_join", "session_id": session_id, "sender": "admin"}))
        .await;
    for device in devices.iter_mut() {
        let joined = device.recv_until("admin_join").await;
        assert_eq!(joined.last().unwrap()["session_id"], session_id);
    }
    helper
        .send(json!({"type": "admin_message", "session_id": session_id, "sender": "admin", "content": "hi, I am here"}))
        .await;
    for device in devices.iter_mut() {
        let got = device.recv_until("admin_message").await;
        assert_eq!(got.last().unwrap()["content"], "hi, I am here");
    }
    let last = devices.len() - 1;
    devices[last]
        .send(json!({"type": "user_message", "session_id": session_id, "content": "thanks, human"}))
        .await;
    // (after the conversation so far, replayed to the admin when joining)
    loop {
        let frame = helper.recv().await;
        if frame["type"] == "user_message" && frame["content"] == "thanks, human" {
            break;
        }
    }
    // Leaving hands the session back to the AI, which answers the next message.
    helper
        .send(json!({"type": "admin_leave", "session_id": session_id, "sender": "admin"}))
        .await;
    let meanwhile = devices[0].recv_until("admin_leave").await;
    assert!(
        meanwhile.iter().all(|f| f["type"] != "ai_response"),
        "the AI stays quiet while an admin assists: {meanwhile:?}"
    );
    devices[0]
        .send(
            json!({"type": "user_message", "session_id": session_id, "content": "and now the AI"}),
        )
        .await;
    let turn = devices[0].recv_turn().await;
    assert_eq!(turn.last().unwrap()["type"], "ai_response", "{turn:?}");
    assert_eq!(turn.last().unwrap()["metadata"]["done"], "true");
}

#[tokio::test]
async fn http_admin_actions_on_any_node_take_effect_where_the_user_is_served() {
    let cluster = Nodes::start(3, &[]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    let admin = cluster.token(
        &format!("admin-{}", uuid::Uuid::new_v4().simple()),
        &["admin"],
    );
    let other = cluster.token(
        &format!("admin-{}", uuid::Uuid::new_v4().simple()),
        &["admin"],
    );
    let (mut device, _) = cluster.connect(0, &token).await;
    device
        .send(json!({"type": "user_message", "content": "hello"}))
        .await;
    let turn = device.recv_turn().await;
    let session_id = turn[0]["session_id"].as_str().unwrap().to_string();

    let (status, body) = cluster
        .http(2, "POST", &format!("/admin/takeover/{session_id}"), &admin)
        .await;
    assert_eq!(status, 200, "{body}");
    device.recv_until("admin_join").await;
    // One assisting admin at a time, whichever node asks.
    let (status, body) = cluster
        .http(1, "POST", &format!("/admin/takeover/{session_id}"), &other)
        .await;
    assert_eq!(status, 400, "{body}");
    device
        .send(json!({"type": "user_message", "session_id": session_id, "content": "is anyone there?"}))
        .await;
    let (status, body) = cluster
        .http(
            1,
            "DELETE",
            &format!("/admin/takeover/{session_id}"),
            &admin,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let meanwhile = device.recv_until("admin_leave").await;
    assert!(
        meanwhile.iter().all(|f| f["type"] != "ai_response"),
        "the AI stayed quiet while the admin assisted: {meanwhile:?}"
    );

    let (status, body) = cluster
        .http(
            2,
            "POST",
            &format!("/admin/sessions/{session_id}/end"),
            &admin,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let ended = device.recv_until("notification").await;
    assert_eq!(
        ended.last().unwrap()["metadata"]["event"],
        "session_ended",
        "{ended:?}"
    );
}

#[tokio::test]
async fn the_daily_token_budget_counts_turns_on_every_node() {
    let cluster = Nodes::start(2, &[("LLM_DAILY_TOKEN_BUDGET", "5")]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    let (mut a, _) = cluster.connect(0, &token).await;
    let (mut b, _) = cluster.connect(1, &token).await;
    a.send(json!({"type": "user_message", "content": "first question"}))
        .await;
    let first = a.recv_turn().await;
    assert_eq!(
        first.last().unwrap()["metadata"]["done"],
        "true",
        "{first:?}"
    );
    b.recv_turn().await;
    // The budget spent through node 1 refuses the next turn sent through node 2.
    b.send(json!({"type": "user_message", "content": "second question"}))
        .await;
    let refused = b.recv_turn().await;
    let error = refused.last().unwrap();
    assert_eq!(error["type"], "error", "{refused:?}");
    assert_eq!(error["error"]["code"], "TOKEN_BUDGET_EXCEEDED", "{error}");
}

#[tokio::test]
async fn a_node_stopped_with_sigterm_hands_its_users_over_at_once() {
    // A lease far longer than the test's deadlines: only a lease given back lets the other node serve.
    let cluster = Nodes::start(2, &[("REDIS_LEASE", "60s")]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    let (mut first, _) = cluster.connect(0, &token).await;
    let (mut second, _) = cluster.connect(1, &token).await;
    first
        .send(json!({"type": "user_message", "content": "before the restart"}))
        .await;
    let before = first.recv_turn().await;
    second.recv_turn().await;
    let last_seen = *seqs(&before).last().unwrap();

    let mut nodes = cluster;
    let mut stopped = nodes.nodes.remove(0);
    stopped.stop_with("TERM").await;
    // Its connection was told to reconnect: 1001, "Server shutting down".
    let closed = first.closed().await;
    assert_eq!(closed.code, 1001, "{}", closed.reason);

    // The other node serves the user at once (the lease was given back, no wait for it to expire) and
    // the device that was on the stopped node resumes there without a gap.
    second
        .send(json!({"type": "user_message", "content": "after the restart"}))
        .await;
    let after = second.recv_turn().await;
    assert_eq!(after.last().unwrap()["type"], "ai_response", "{after:?}");
    let frames = nodes.resume(0, &token, last_seen).await;
    let contents: Vec<&str> = frames
        .iter()
        .filter(|f| f["type"] == "user_message")
        .filter_map(|f| f["content"].as_str())
        .collect();
    assert_eq!(contents, ["after the restart"], "{frames:?}");
}
