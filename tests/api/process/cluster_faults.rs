//! Cluster mode under faults, with real processes: a node killed with SIGKILL hands its users over within
//! the lease, and Redis stopped and restarted empty leaves every node serving its own connections, readiness
//! reporting Redis, and the nodes together again afterwards with nothing lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::cluster::{seqs, strictly_increasing};
use crate::support::app::{WsClient, answer_text};
use crate::support::nodes::{Nodes, new_user};
use crate::support::redis::RedisServer;
use crate::support::wait::eventually_async;

/// Sends a message from `sender` and reads the turn there; returns its frames.
async fn turn(sender: &mut WsClient, content: &str, id: &str) -> Vec<Value> {
    sender
        .send(json!({"type": "user_message", "content": content, "client_msg_id": id}))
        .await;
    let frames = sender.recv_turn().await;
    assert_eq!(frames.last().unwrap()["type"], "ai_response", "{frames:?}");
    frames
}

/// `/readyz` of node `i`: its HTTP status and body.
async fn readiness(cluster: &Nodes, i: usize) -> (u16, Value) {
    let url = format!("{}/readyz", cluster.nodes[i].banner.base);
    let response = reqwest::get(url).await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_killed_node_hands_its_users_over_within_the_lease() {
    let redis = RedisServer::start().await;
    let cluster = Nodes::start_on(&redis.url(), 2, &[("REDIS_LEASE", "2s")]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    // The device on node 1 makes it the owner; the device on node 2 forwards to it.
    let (mut first, _) = cluster.connect(0, &token).await;
    let (mut second, _) = cluster.connect(1, &token).await;
    let before = turn(&mut second, "before the crash", "k-1").await;
    first.recv_turn().await;
    let last_seen = *seqs(&before).last().unwrap();
    assert_eq!(redis.keys("chatbox:h:*").await.len(), 2);

    let mut nodes = cluster;
    let killed = nodes.nodes.remove(0);
    killed.kill().await;
    eventually_async("the killed node's heartbeat to expire", async || {
        (redis.keys("chatbox:h:*").await.len() == 1).then_some(())
    })
    .await;

    // The surviving node takes the user over: it answers, above the seqs seen before.
    let after = turn(&mut second, "after the crash", "k-2").await;
    let after_seqs = seqs(&after);
    assert!(
        after_seqs.iter().all(|s| *s > last_seen),
        "{after_seqs:?} after {last_seen}"
    );
    assert!(strictly_increasing(&after_seqs), "{after_seqs:?}");

    // The device of the killed node reconnects to the survivor and resumes: what it missed, once.
    let frames = nodes.resume(0, &token, last_seen).await;
    let replayed: Vec<Value> = frames
        .iter()
        .filter(|f| f["type"] != "connection_status")
        .cloned()
        .collect();
    assert!(
        replayed
            .iter()
            .any(|f| f["type"] == "user_message" && f["content"] == "after the crash"),
        "{frames:?}"
    );
    assert_eq!(answer_text(&replayed), answer_text(&after), "{frames:?}");
    assert!(
        strictly_increasing(&seqs(&replayed)),
        "{:?}",
        seqs(&replayed)
    );
}

#[tokio::test]
async fn with_redis_down_every_node_serves_its_own_connections_and_they_meet_again_after() {
    let mut redis = RedisServer::start().await;
    let cluster = Nodes::start_on(&redis.url(), 2, &[("REDIS_LEASE", "2s")]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    let (mut first, _) = cluster.connect(0, &token).await;
    let (mut second, _) = cluster.connect(1, &token).await;
    turn(&mut second, "all is well", "r-1").await;
    let seen = first.recv_turn().await;
    let last_seen_first = *seqs(&seen).last().unwrap();
    for i in 0..2 {
        let (status, body) = readiness(&cluster, i).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["checks"]["redis"]["status"], "ready", "{body}");
    }

    redis.stop();
    for i in 0..2 {
        let body = eventually_async("readiness to report Redis down", async || {
            let (status, body) = readiness(&cluster, i).await;
            (status == 503).then_some(body)
        })
        .await;
        assert_eq!(body["checks"]["redis"]["status"], "not ready", "{body}");
        assert_eq!(body["checks"]["mongodb"]["status"], "ready", "{body}");
    }
    // Each node serves the connection it holds: both devices chat, neither waits on Redis.
    turn(&mut first, "redis is down, node 1", "r-2").await;
    turn(&mut second, "redis is down, node 2", "r-3").await;

    redis.start_again().await;
    for i in 0..2 {
        eventually_async("readiness to recover", async || {
            (readiness(&cluster, i).await.0 == 200).then_some(())
        })
        .await;
    }
    // Together again: a message on node 2 reaches the device on node 1 live (its node subscribed again).
    let again = turn(&mut second, "redis is back", "r-4").await;
    let live = loop {
        let frame = first.recv().await;
        if frame["type"] == "user_message" && frame["content"] == "redis is back" {
            break first.recv_turn().await;
        }
    };
    assert_eq!(answer_text(&live), answer_text(&again));

    // The device on node 1 missed node 2's messages during the outage: a resume fills the gap, once.
    let frames = cluster.resume(1, &token, last_seen_first).await;
    let contents: Vec<&str> = frames
        .iter()
        .filter(|f| f["type"] == "user_message")
        .filter_map(|f| f["content"].as_str())
        .collect();
    for expected in [
        "redis is down, node 1",
        "redis is down, node 2",
        "redis is back",
    ] {
        assert_eq!(
            contents.iter().filter(|c| **c == expected).count(),
            1,
            "{expected:?} once in {contents:?}"
        );
    }
    assert!(strictly_increasing(&seqs(&frames)), "{:?}", seqs(&frames));
}

#[tokio::test]
async fn a_turn_of_a_node_killed_mid_answer_is_ended_on_the_other_devices() {
    let redis = RedisServer::start().await;
    let cluster = Nodes::start_on(
        &redis.url(),
        2,
        &[
            ("REDIS_LEASE", "2s"),
            ("LLM_DEMO_TOKEN_DELAY_MS", "50"),
            ("CHECKPOINT_INTERVAL", "100ms"),
        ],
    )
    .await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    // Node 1 serves the user and runs the turn; the device on node 2 watches the answer stream.
    let (mut asker, _) = cluster.connect(0, &token).await;
    let (mut watcher, _) = cluster.connect(1, &token).await;
    asker
        .send(json!({"type": "user_message", "content": "a very long story please ".repeat(6), "client_msg_id": "orphan-1"}))
        .await;
    let (session_id, streamed) = watcher.recv_chunks(8).await;
    let mut nodes = cluster;
    nodes.nodes.remove(0).kill().await;

    // Within the lease, the surviving node ends the answer on the device: the final chunk, then the
    // error frame.
    let mut rest = Vec::new();
    loop {
        let frame = watcher.recv().await;
        let end = frame["type"] == "error";
        rest.push(frame);
        if end {
            break;
        }
    }
    let last_chunk = rest
        .iter()
        .rev()
        .find(|f| f["type"] == "ai_response")
        .expect("a final chunk");
    assert_eq!(last_chunk["metadata"]["done"], "true", "{rest:?}");
    assert_eq!(last_chunk["metadata"]["finish_reason"], "error", "{rest:?}");
    assert_eq!(last_chunk["client_msg_id"], "orphan-1", "{rest:?}");
    let error = rest.last().unwrap();
    assert_eq!(error["session_id"], session_id.as_str(), "{error}");
    assert_eq!(error["error"]["code"], "LLM_UNAVAILABLE", "{error}");
    assert!(strictly_increasing(&seqs(&rest)), "{:?}", seqs(&rest));

    // The answer streamed before the crash is stored, marked partial.
    let (status, detail) = nodes
        .http(0, "GET", &format!("/sessions/{session_id}"), &token)
        .await;
    assert_eq!(status, 200, "{detail}");
    let messages = detail["messages"].as_array().unwrap();
    let answer = messages
        .iter()
        .find(|m| m["sender"] == "ai")
        .expect("answer");
    assert_eq!(answer["metadata"]["partial"], "true", "{answer}");
    let stored = answer["content"].as_str().unwrap();
    assert!(!stored.is_empty(), "{answer}");
    assert!(
        streamed.starts_with(stored) || stored.starts_with(&streamed),
        "the stored part is what was streamed: {stored:?} / {streamed:?}"
    );

    // A retry of the same message on the surviving node is not answered a second time (its answer is
    // the stored partial one); the next message is answered as usual.
    watcher
        .send(json!({"type": "user_message", "content": "a very long story please ".repeat(6), "client_msg_id": "orphan-1"}))
        .await;
    watcher
        .send(json!({"type": "user_message", "content": "and then?", "client_msg_id": "orphan-2"}))
        .await;
    let after = watcher.recv_turn().await;
    assert_eq!(
        after.last().unwrap()["client_msg_id"],
        "orphan-2",
        "{after:?}"
    );
    assert!(
        after
            .iter()
            .all(|f| f["type"] != "ai_response" || f["client_msg_id"] == "orphan-2"),
        "{after:?}"
    );
    let (_, detail) = nodes
        .http(0, "GET", &format!("/sessions/{session_id}"), &token)
        .await;
    let answers = detail["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["sender"] == "ai")
        .count();
    assert_eq!(answers, 2, "{detail}");
}

#[tokio::test]
async fn the_owner_forgets_the_connections_of_a_killed_node() {
    let redis = RedisServer::start().await;
    let cluster = Nodes::start_on(&redis.url(), 2, &[("REDIS_LEASE", "2s")]).await;
    let user = new_user();
    let token = cluster.token(&user, &["user"]);
    // Node 1 owns the user; its only device left is on node 2, which forwards to node 1.
    let (first, _) = cluster.connect(0, &token).await;
    let (mut second, _) = cluster.connect(1, &token).await;
    turn(&mut second, "from node 2", "g-1").await;
    first.close().await;
    let lease = format!("chatbox:o:{user}");
    assert_eq!(redis.keys(&lease).await.len(), 1);

    // Node 2 dies without closing its connection: once node 1 sees it gone, the user has no connection
    // left and node 1 gives the lease back.
    let mut nodes = cluster;
    nodes.nodes.remove(1).kill().await;
    eventually_async("the owner to give the user's lease back", async || {
        redis.keys(&lease).await.is_empty().then_some(())
    })
    .await;
}
