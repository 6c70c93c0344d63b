//! Where a connection's frames take effect: on this node, or in cluster mode on the node that owns the
//! user they concern (the connection's own user; for `admin_join`, `admin_leave` and `admin_message`, the
//! owner of the session named). A connection whose user is owned elsewhere is registered here, subscribed
//! to its user's channel, and gets its first frames from the owner.

use std::collections::HashSet;
use std::sync::Arc;

use serde::Deserialize;

use crate::auth::Identity;
use crate::chat::{Attached, ConnCtx, Frame};
use crate::cluster::{ATTACH_WAIT, Caller, Cluster, ClusterSlot, Interest, Owner};
use crate::hub::{ConnId, Slot};
use crate::state::AppState;

/// A connection's route.
pub struct Route {
    /// In cluster mode, how the connection reaches the owner nodes (boxed: one node holds nothing here).
    link: Option<Box<Link>>,
}

/// What a connection keeps in cluster mode.
struct Link {
    cluster: Arc<Cluster>,
    caller: Caller,
    /// Nodes this connection forwarded to (told when it closes).
    owners: HashSet<u32>,
    /// The last session an admin frame of this connection named, and its user (a session's user never
    /// changes: the store is not asked again for each frame about it).
    session_user: Option<(String, String)>,
    _interest: Interest,
    _slot: Option<ClusterSlot>,
}

/// The few fields of a frame that decide where it goes.
#[derive(Deserialize)]
struct Peek {
    #[serde(rename = "type")]
    kind: Option<String>,
    session_id: Option<String>,
}

impl Route {
    /// Registers the connection and takes its first frames, here or from the owner of its user. `None`
    /// when the owner did not answer within [`ATTACH_WAIT`] (the connection is to be closed: the client
    /// reconnects, by then to a live owner).
    pub async fn attach(
        state: &AppState,
        slot: Slot,
        cluster_slot: Option<ClusterSlot>,
        identity: Identity,
        last_seq: Option<i64>,
    ) -> Option<(Attached, Self)> {
        let Some(cluster) = state.cluster.clone() else {
            let attached = state.chat.attach(slot, identity, last_seq).await;
            return Some((attached, Self { link: None }));
        };
        let interest = cluster.interest(&identity.user_id).await;
        let mut link = Box::new(Link {
            cluster: Arc::clone(&cluster),
            caller: Caller::from(&identity),
            owners: HashSet::new(),
            session_user: None,
            _interest: interest,
            _slot: cluster_slot,
        });
        let Owner::Node(owner) = cluster.owner(&identity.user_id).await else {
            let attached = state.chat.attach(slot, identity, last_seq).await;
            return Some((attached, Self { link: Some(link) }));
        };
        let mut attached = state.chat.register(slot, identity);
        let conn = attached.ctx.conn_id();
        let first = cluster.first_frames(conn);
        cluster.attach(owner, conn, link.caller.clone(), last_seq);
        link.owners.insert(owner);
        let route = Self { link: Some(link) };
        match tokio::time::timeout(ATTACH_WAIT, first).await {
            Ok(Ok(frames)) => {
                attached.backlog = frames;
                Some((attached, route))
            }
            _ => {
                tracing::warn!(
                    conn,
                    owner,
                    "the owner node did not answer the attach in time"
                );
                cluster.forget_first_frames(conn);
                route.closed(conn);
                None
            }
        }
    }

    /// Hands a frame to the node where it takes effect: here it has taken effect when this returns;
    /// forwarded, the owner takes the frames of one connection one after another in the order sent.
    pub async fn receive(&mut self, state: &AppState, ctx: &ConnCtx, frame: Frame) {
        let Some(link) = self.link.as_deref_mut() else {
            return state.chat.receive(ctx, frame).await;
        };
        let text = match frame {
            Frame::Text(text) => text,
            Frame::Binary(bytes) => match String::from_utf8(bytes) {
                Ok(text) => text,
                Err(err) => {
                    return state
                        .chat
                        .receive(ctx, Frame::Binary(err.into_bytes()))
                        .await;
                }
            },
        };
        let user_id = link.user_of(state, &text).await;
        match link.cluster.owner(&user_id).await {
            Owner::Here => state.chat.receive(ctx, Frame::Text(text)).await,
            Owner::Node(owner) => {
                link.owners.insert(owner);
                link.cluster
                    .forward(owner, ctx.conn_id(), link.caller.clone(), text);
            }
        }
    }

    /// Tells the nodes this connection forwarded to that it closed.
    pub fn closed(&self, conn: ConnId) {
        if let Some(link) = &self.link {
            for owner in &link.owners {
                link.cluster.detach(*owner, conn, &link.caller.user_id);
            }
        }
    }
}

impl Link {
    /// The user whose owner handles `text`: the owner of the session an admin frame names, else the
    /// connection's own user.
    async fn user_of(&mut self, state: &AppState, text: &str) -> String {
        let Ok(Peek {
            kind: Some(kind),
            session_id: Some(session_id),
        }) = serde_json::from_str::<Peek>(text)
        else {
            return self.caller.user_id.clone();
        };
        if !matches!(
            kind.as_str(),
            "admin_join" | "admin_leave" | "admin_message"
        ) {
            return self.caller.user_id.clone();
        }
        if let Some((known, user_id)) = &self.session_user
            && *known == session_id
        {
            return user_id.clone();
        }
        match state.store.get_session(&session_id).await {
            Ok(Some(session)) => {
                self.session_user = Some((session_id, session.user_id.clone()));
                session.user_id
            }
            _ => self.caller.user_id.clone(),
        }
    }
}
