//! The bus of cluster mode: every frame is delivered to this node's connections at once and published once
//! per channel for the other nodes; one task publishes everything this node sends, in order, pipelined.

use std::sync::{Arc, Weak};

use redis::aio::ConnectionManager;
use tokio::sync::mpsc;

use super::Cluster;
use super::wire::Envelope;
use crate::hub::{BusMessage, ConnId, EventBus, LocalBus, Outbound, Target};

/// Publishes in at most this many commands per round trip.
const PIPELINE: usize = 256;

/// The [`EventBus`] of cluster mode.
pub struct RedisBus {
    local: LocalBus,
    cluster: Arc<Cluster>,
}

impl RedisBus {
    /// A bus over this node's hub and the cluster.
    pub fn new(cluster: Arc<Cluster>) -> Self {
        Self {
            local: LocalBus::new(cluster.hub().clone()),
            cluster,
        }
    }
}

impl EventBus for RedisBus {
    fn publish(&self, message: BusMessage) {
        self.local.deliver(&message);
        let deliver = || Envelope::Deliver {
            except: message.except,
            frame: Arc::clone(&message.frame),
        };
        match &message.target {
            Target::User(user_id) => self.cluster.send_to_user(user_id, deliver()),
            Target::Session {
                session_id,
                user_id,
            } => {
                self.cluster.send_to_user(user_id, deliver());
                // The admins watching it, wherever their connections are (known here: the owner of the
                // session's user decides who watches).
                for admin in self.cluster.hub().watchers_of(session_id) {
                    if *admin != **user_id {
                        self.cluster.send_to_user(&admin, deliver());
                    }
                }
            }
            Target::Admins => self.cluster.send_to_admins(deliver()),
        }
    }

    fn send_to(&self, conn: ConnId, item: Outbound) {
        if self.cluster.hub().is_local(conn) {
            self.cluster.hub().send_to(conn, item);
            return;
        }
        let frames = match item {
            Outbound::Text(text) => vec![text],
            Outbound::Batch(texts) => texts,
            Outbound::Close { code, .. } => {
                tracing::debug!(
                    conn,
                    code,
                    "close frames are not sent to another node's connections"
                );
                return;
            }
        };
        self.cluster
            .send_to_conn(conn, Envelope::ToConn { conn, frames });
    }

    fn first_frames(&self, conn: ConnId, frames: Vec<Arc<str>>) {
        if self.cluster.hub().is_local(conn) {
            self.cluster.hub().send_to(conn, Outbound::Batch(frames));
            return;
        }
        self.cluster
            .send_to_conn(conn, Envelope::FirstFrames { conn, frames });
    }
}

/// Sends what the node publishes on shard `index` (and its other fire-and-forget commands there), in the
/// order queued, a pipeline of up to [`PIPELINE`] at a time. While that Redis is down they are dropped:
/// connections of other nodes fill the gap from the store when they resume.
pub(super) async fn publisher(
    mut conn: ConnectionManager,
    mut queue: mpsc::UnboundedReceiver<redis::Cmd>,
    cluster: Weak<Cluster>,
    index: usize,
) {
    let mut batch = Vec::with_capacity(PIPELINE);
    while queue.recv_many(&mut batch, PIPELINE).await > 0 {
        let Some(cluster) = cluster.upgrade() else {
            break;
        };
        let shard = &cluster.shards[index];
        if !shard.available() {
            batch.clear();
            continue;
        }
        let mut pipe = redis::pipe();
        for command in batch.drain(..) {
            pipe.add_command(command).ignore();
        }
        if let Err(err) = pipe.query_async::<()>(&mut conn).await {
            shard.failed(&err);
        }
    }
}
