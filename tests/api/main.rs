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
mod http_admin;
mod http_middleware;
mod http_sessions;
mod http_support;
mod http_takeover;
mod notify;
mod notify_support;
