//! Cluster mode, owner side: the connections of other nodes whose user this node owns. Each has a task
//! that takes its forwarded frames one after another, so they take effect in the order sent, as on the
//! connection's own node.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::auth::Identity;
use crate::cluster::{Caller, Forwarded};
use crate::hub::{ConnId, node_of};

use super::{Chat, Frame};

/// What a connection of another node asks, in order.
enum Job {
    Attach(Option<i64>),
    Frame(String),
}

impl Chat {
    /// Serves what other nodes forward to this one until they stop (the channel closes).
    pub async fn serve_forwarded(
        self: Arc<Self>,
        mut forwarded: mpsc::UnboundedReceiver<Forwarded>,
    ) {
        let mut conns: HashMap<ConnId, mpsc::UnboundedSender<Job>> = HashMap::new();
        while let Some(item) = forwarded.recv().await {
            let (conn, caller, job) = match item {
                Forwarded::Attach {
                    conn,
                    caller,
                    last_seq,
                } => (conn, caller, Job::Attach(last_seq)),
                Forwarded::Frame { conn, caller, text } => (conn, caller, Job::Frame(text)),
                Forwarded::Detach { conn } => {
                    // Its task ends once the frames already queued have taken effect.
                    conns.remove(&conn);
                    continue;
                }
                Forwarded::NodeGone { node } => {
                    // Its connections closed without a word: their tasks end like detached ones.
                    conns.retain(|conn, _| node_of(*conn) != node);
                    continue;
                }
                Forwarded::Orphan { session_id, record } => {
                    let chat = Arc::clone(&self);
                    tokio::spawn(async move { chat.end_orphan(&session_id, &record).await });
                    continue;
                }
                Forwarded::Call {
                    origin,
                    id,
                    payload,
                } => {
                    let chat = Arc::clone(&self);
                    tokio::spawn(async move {
                        let answer = chat.answer_call(&payload).await;
                        if let Some(cluster) = &chat.cluster {
                            cluster.reply(origin, id, answer);
                        }
                    });
                    continue;
                }
            };
            let jobs = conns
                .entry(conn)
                .or_insert_with(|| Arc::clone(&self).remote_connection(conn, caller));
            let _ = jobs.send(job);
        }
    }

    /// Starts the task of connection `conn` of another node.
    fn remote_connection(
        self: Arc<Self>,
        conn: ConnId,
        caller: Caller,
    ) -> mpsc::UnboundedSender<Job> {
        let (tx, mut jobs) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let identity = Identity::from(caller);
            // Counted as a connection of its user here, so the user's live sessions stay loaded.
            let _counted = self.hub.remote_connection(&identity.user_id);
            let ctx = self.context(conn, identity);
            while let Some(job) = jobs.recv().await {
                match job {
                    Job::Attach(last_seq) => self.attach_remote(&ctx, last_seq).await,
                    Job::Frame(text) => self.receive(&ctx, Frame::Text(text)).await,
                }
            }
        });
        tx
    }
}
