//! The WebSocket transport: the upgrade at `{P}/ws` (token, origin, limits, all before the upgrade), then one
//! connection loop per socket (reader, writer, heartbeat, size limit, in-flight limit). Everything a frame
//! means is decided in [`crate::chat`].

mod connection;
mod route;
mod upgrade;

pub use upgrade::ws_handler;
