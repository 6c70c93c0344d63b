//! The connection registry and fan-out. Frames are serialised once and shared (`Arc<str>`) by every
//! connection they go to. Chat code publishes through the [`EventBus`] seam; the in-process [`LocalBus`]
//! delivers straight into this node's [`Hub`], and a broker-backed bus can replace it without touching
//! the chat code.
//!
//! Slow-consumer policy: each connection has an outbound backlog bounded in bytes and in age
//! (`WS_MAX_BACKLOG_BYTES`, `WS_MAX_BACKLOG_AGE`), not in frames, so a device that keeps reading survives
//! any burst of chunks. A device whose backlog passes either limit (it stopped reading) is closed with code
//! 1013 ("Try Again Later"), its queued frames are freed, and the cut is counted in
//! `chatbox_queue_dropped_total{reason="slow_consumer"}`; the client reconnects with `last_seq` and the
//! session replay gives it what it missed, so nothing is lost and other devices are never held back.

mod backlog;
mod bus;
mod registry;

pub use backlog::{BacklogLimits, Outgoing};
pub use bus::{BusMessage, EventBus, LocalBus, Target};
pub use registry::{
    ConnHandle, ConnId, Hub, LimitExceeded, NODE_SHIFT, Outbound, RemoteConn, Slot, count_down,
    node_of,
};
