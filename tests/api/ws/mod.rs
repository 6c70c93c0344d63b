//! The server over WebSocket: chat turns, fan-out, resume, limits, heartbeat, takeover and help requests,
//! each test against a real server through real WebSocket clients.

mod chat;
mod chat_llm;
mod chat_memory;
mod files;
mod heartbeat;
mod input;
pub mod limits;
pub mod notify;
mod notify_sms;
mod ordering;
mod round_trips;
mod takeover;
