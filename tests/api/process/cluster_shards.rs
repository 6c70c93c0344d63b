//! Cluster mode over two Redis processes (shards): three real nodes place each user on one Redis by the
//! same hash, conversations and admin takeovers work across nodes whichever shard the user and the admin
//! are on, and a shard that stops affects only the users placed on it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use serde_json::{Value, json};

use super::cluster::{admin_assists_then_leaves, seqs, strictly_increasing};
use crate::support::app::answer_text;
use crate::support::nodes::{Nodes, new_user};
use crate::support::redis::RedisServer;
use crate::support::wait::eventually_async;
use chatbox::cluster::place;

/// A new user id placed on shard `shard` of two.
fn user_on(shard: usize) -> String {
    loop {
        let user = new_user();
        if place(&user, 2) == shard {
            return user;
        }
    }
}

/// A new admin id placed on shard `shard` of two.
fn admin_on(shard: usize) -> String {
    loop {
        let admin = format!("admin-{}", new_user());
        if place(&admin, 2) == shard {
            return admin;
        }
    }
}

/// Two Redis processes and three nodes listing both.
async fn start() -> (RedisServer, RedisServer, Nodes) {
    let first = RedisServer::start().await;
    let second = RedisServer::start().await;
    let urls = format!("{},{}", first.url(), second.url());
    let nodes = Nodes::start_on(&urls, 3, &[]).await;
    (first, second, nodes)
}

#[tokio::test]
async fn users_on_either_shard_share_conversations_across_three_nodes() {
    let (first, second, cluster) = start().await;
    let shards = [&first, &second];
    // Heartbeats on both; what belongs to the whole cluster only on the first.
    assert_eq!(first.keys("chatbox:h:*").await.len(), 3);
    assert_eq!(second.keys("chatbox:h:*").await.len(), 3);
    assert_eq!(first.keys("chatbox:members").await.len(), 1);
    assert!(second.keys("chatbox:members").await.is_empty());

    for shard in 0..2 {
        let user = user_on(shard);
        let token = cluster.token(&user, &["user"]);
        let mut devices = Vec::new();
        for i in 0..3 {
            devices.push(cluster.connect(i, &token).await.0);
        }
        // The user's lease and connection count are on its shard, nowhere else.
        let lease = format!("chatbox:o:{user}");
        assert_eq!(
            shards[shard].keys(&lease).await,
            std::slice::from_ref(&lease)
        );
        assert!(shards[1 - shard].keys(&lease).await.is_empty());
        assert_eq!(
            shards[shard].keys(&format!("chatbox:c:{user}")).await.len(),
            1
        );

        let content = format!("hello from node 3, shard {shard}");
        devices[2]
            .send(json!({"type": "user_message", "content": content, "client_msg_id": "s1"}))
            .await;
        let mut answers = Vec::new();
        for (i, device) in devices.iter_mut().enumerate() {
            let turn = device.recv_turn().await;
            assert_eq!(
                turn.last().unwrap()["metadata"]["done"],
                "true",
                "node {i}: {turn:?}"
            );
            // The sender's own message is echoed to its other devices only.
            assert_eq!(
                turn.iter()
                    .any(|f| f["type"] == "user_message" && f["content"] == content),
                i != 2,
                "node {i}: {turn:?}"
            );
            assert!(strictly_increasing(&seqs(&turn)), "node {i}: {turn:?}");
            answers.push(answer_text(&turn));
        }
        assert!(!answers[0].is_empty());
        assert!(answers.iter().all(|a| *a == answers[0]), "{answers:?}");
    }
}

#[tokio::test]
async fn an_admin_on_one_shard_takes_over_a_user_on_the_other_across_nodes() {
    let (_first, _second, cluster) = start().await;
    let user = user_on(0);
    let admin = admin_on(1);
    let token = cluster.token(&user, &["user"]);
    let admin_token = cluster.token(&admin, &["admin"]);
    let (mut device, _) = cluster.connect(0, &token).await;
    let (mut other_device, _) = cluster.connect(1, &token).await;
    let (mut helper, _) = cluster.connect(2, &admin_token).await;
    device
        .send(json!({"type": "user_message", "content": "hello"}))
        .await;
    let turn = device.recv_turn().await;
    other_device.recv_turn().await;
    let session_id = turn[0]["session_id"].as_str().unwrap().to_string();
    // A help request reaches the admin through the first shard's admins' channel.
    device
        .send(
            json!({"type": "help_request", "session_id": session_id, "content": "a human please"}),
        )
        .await;
    let frames = helper.recv_until("help_request").await;
    assert_eq!(frames.last().unwrap()["session_id"], session_id.as_str());

    admin_assists_then_leaves(
        &mut helper,
        &mut [&mut device, &mut other_device],
        &session_id,
    )
    .await;
}

#[tokio::test]
async fn a_stopped_shard_leaves_the_users_of_the_other_served_across_nodes() {
    let (_first, mut second, cluster) = start().await;
    let user = user_on(0);
    let token = cluster.token(&user, &["user"]);
    let (mut sender, _) = cluster.connect(0, &token).await;
    let (mut receiver, _) = cluster.connect(1, &token).await;
    second.stop();

    // Readiness names the shard that is gone.
    let url = format!("{}/readyz", cluster.nodes[1].banner.base);
    let response = reqwest::get(url).await.unwrap();
    assert_eq!(response.status().as_u16(), 503);
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["checks"]["redis"]["reason"], "Redis 2/2 unreachable",
        "{body}"
    );

    // The user of the first shard still talks across nodes.
    sender
        .send(json!({"type": "user_message", "content": "still here", "client_msg_id": "p1"}))
        .await;
    let sent = sender.recv_turn().await;
    let seen = receiver.recv_turn().await;
    assert_eq!(answer_text(&sent), answer_text(&seen));
    assert!(!answer_text(&seen).is_empty());

    // When the shard returns, the nodes subscribe to their channels there again by themselves, and its
    // users are served across nodes again.
    second.start_again().await;
    eventually_async(
        "every node to subscribe on the second shard again",
        async || (second.channels("chatbox:n:*").await.len() == 3).then_some(()),
    )
    .await;
    for i in 0..3 {
        eventually_async("readiness to recover", async || {
            let (status, _) = cluster.http(i, "GET", "/readyz", "").await;
            (status == 200).then_some(())
        })
        .await;
    }
    let later = user_on(1);
    let later_token = cluster.token(&later, &["user"]);
    let (mut a, _) = cluster.connect(2, &later_token).await;
    let (mut b, _) = cluster.connect(0, &later_token).await;
    a.send(json!({"type": "user_message", "content": "back again", "client_msg_id": "p2"}))
        .await;
    let mine = a.recv_turn().await;
    let theirs = b.recv_turn().await;
    assert_eq!(answer_text(&mine), answer_text(&theirs));
}
