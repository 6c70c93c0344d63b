//! What this node receives on its subscriptions: frames for its connections, first frames for connections
//! waiting for them, and (as the owner of users) what other nodes forward.

use std::sync::Arc;

use redis::{PushInfo, PushKind, Value};
use tokio::sync::mpsc;

use super::wire::{self, Envelope, Message};
use super::{Cluster, Forwarded, lock};
use crate::hub::Outbound;

/// Handles every message pushed by shard `index`, one after another in the order received.
pub(super) async fn run(
    cluster: Arc<Cluster>,
    index: usize,
    mut pushes: mpsc::UnboundedReceiver<PushInfo>,
    forward: mpsc::UnboundedSender<Forwarded>,
) {
    let users = wire::user_channel("");
    let admins = wire::admins_channel();
    while let Some(push) = pushes.recv().await {
        if push.kind == PushKind::Disconnection {
            cluster.shards[index].lost_subscriptions();
            continue;
        }
        if push.kind != PushKind::Message {
            continue;
        }
        let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
            (push.data.first(), push.data.get(1))
        else {
            continue;
        };
        let Some(message) = Message::decode(payload) else {
            tracing::warn!("malformed cluster message ignored");
            continue;
        };
        let channel = String::from_utf8_lossy(channel);
        let hub = cluster.hub();
        match message.envelope {
            Envelope::Deliver { except, frame } => {
                if message.origin == cluster.node {
                    continue;
                }
                if *channel == *admins {
                    hub.deliver(None, None, true, except, &frame);
                } else if let Some(user) = channel.strip_prefix(users.as_str()) {
                    hub.deliver(Some(user), None, false, except, &frame);
                }
            }
            Envelope::ToConn { conn, mut frames } => {
                let item = if frames.len() == 1 {
                    Outbound::Text(frames.remove(0))
                } else {
                    Outbound::Batch(frames)
                };
                hub.send_to(conn, item);
            }
            Envelope::FirstFrames { conn, frames } => {
                // What reached the connection before its first frames is in them.
                hub.clear_queue(conn);
                if let Some(waiting) = lock(&cluster.pending).remove(&conn) {
                    let _ = waiting.send(frames);
                }
            }
            Envelope::Reply { id, payload } => {
                if let Some(waiting) = lock(&cluster.calls).remove(&id) {
                    let _ = waiting.send(payload);
                }
            }
            Envelope::ToOwner(forwarded) => {
                match &forwarded {
                    Forwarded::Attach { conn, .. } | Forwarded::Frame { conn, .. } => {
                        cluster.learn_conn(*conn, index);
                    }
                    Forwarded::Detach { conn } => cluster.forget_conn(*conn),
                    Forwarded::Orphan { .. }
                    | Forwarded::Call { .. }
                    | Forwarded::NodeGone { .. } => {}
                }
                let _ = forward.send(forwarded);
            }
        }
    }
}
