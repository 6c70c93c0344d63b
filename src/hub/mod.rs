//! The connection registry and fan-out. Frames are serialised once and shared (`Arc<str>`) by every
//! connection they go to. Chat code publishes through the [`EventBus`] seam; the in-process [`LocalBus`]
//! delivers straight into this node's [`Hub`], and a broker-backed bus can replace it without touching
//! the chat code.
//!
//! Slow-consumer policy: each connection has a bounded outbound queue. When a frame does not fit, the
//! connection is closed with code 1013 ("Try Again Later") and the drop is counted in
//! `chatbox_queue_dropped_total{reason="slow_consumer"}`; the client reconnects with `last_seq` and the
//! session replay gives it what it missed, so nothing is lost and fast devices are never held back.

mod bus;
mod registry;

pub use bus::{BusMessage, EventBus, LocalBus, Target};
pub use registry::{ConnHandle, ConnId, Hub, LimitExceeded, Outbound, Slot};
