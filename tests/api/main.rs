//! Integration tests: one binary that drives the real server over HTTP and WebSocket.

mod chat;
mod contract;
mod heartbeat;
mod helpers;
mod fake_llm;
mod llm;
mod metrics;
mod shutdown;
mod store;
