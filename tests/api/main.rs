//! Integration tests: one binary that drives the real server over HTTP and WebSocket.

mod binary;
mod chat;
mod chat_llm;
mod chat_memory;
mod cli;
mod contract;
mod fake_llm;
mod go_database;
mod health;
mod heartbeat;
mod helpers;
mod http_admin;
mod http_middleware;
mod http_sessions;
mod http_support;
mod http_takeover;
mod llm;
mod metrics;
mod notify;
mod notify_support;
mod ops_config_doc;
mod ops_deploy;
mod shutdown;
mod store;
mod ws_limits;
mod ws_takeover;
