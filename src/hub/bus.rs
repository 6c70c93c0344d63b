//! The fan-out seam. Chat code publishes [`BusMessage`]s; an [`EventBus`] decides how they reach the
//! connections. [`LocalBus`] hands them to this node's [`Hub`]; a broker-backed bus would publish them to a
//! topic that every node's subscriber feeds into its own hub.

use std::sync::Arc;

use super::{ConnId, Hub, Outbound};

/// Who a frame is for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Every connection of a user.
    User(String),
    /// A session: every connection of its owner and every admin watching it.
    Session {
        /// The session.
        session_id: String,
        /// Its owner.
        user_id: String,
    },
    /// Every admin connection (live help requests).
    Admins,
}

/// A serialised frame and where it goes.
#[derive(Debug, Clone)]
pub struct BusMessage {
    /// Recipients.
    pub target: Target,
    /// The JSON text of the frame.
    pub frame: Arc<str>,
    /// A connection that must not receive it (the sender of an echoed message).
    pub except: Option<ConnId>,
}

/// Fan-out of frames to the connections they are for, wherever those connections live.
pub trait EventBus: Send + Sync {
    /// Publishes a frame; never blocks.
    fn publish(&self, message: BusMessage);

    /// Sends to one connection, whichever node it is on; never blocks.
    fn send_to(&self, conn: ConnId, item: Outbound);

    /// Hands a connection of another node the frames it is sent first (its `connection_status` and
    /// replay); called while the session's releases are frozen, so that every later frame of the session
    /// reaches that connection after these. On one node connections take their first frames directly.
    fn first_frames(&self, conn: ConnId, frames: Vec<Arc<str>>) {
        self.send_to(conn, Outbound::Batch(frames));
    }
}

/// The in-process bus: delivers into this node's hub.
pub struct LocalBus {
    hub: Hub,
}

impl LocalBus {
    /// A bus that delivers into `hub`.
    pub fn new(hub: Hub) -> Self {
        Self { hub }
    }

    /// Delivers a published frame to this node's connections.
    pub fn deliver(&self, message: &BusMessage) {
        match &message.target {
            Target::User(user_id) => {
                self.hub
                    .deliver(Some(user_id), None, false, message.except, &message.frame)
            }
            Target::Session {
                session_id,
                user_id,
            } => self.hub.deliver(
                Some(user_id),
                Some(session_id),
                false,
                message.except,
                &message.frame,
            ),
            Target::Admins => self
                .hub
                .deliver(None, None, true, message.except, &message.frame),
        }
    }
}

impl EventBus for LocalBus {
    fn publish(&self, message: BusMessage) {
        self.deliver(&message);
    }

    fn send_to(&self, conn: ConnId, item: Outbound) {
        self.hub.send_to(conn, item);
    }
}
