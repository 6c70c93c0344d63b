//! Chatbox: a self-hosted backend for chatting with LLMs over WebSocket, wire-compatible with the Go
//! chatbox service.
//!
//! # Layout
//!
//! | module | holds |
//! |---|---|
//! | [`config`] | file + environment configuration, validated once into [`config::Settings`] |
//! | [`settings_kit`] | the leaf every settings section is built with: env snapshot, `ConfigError`, checks |
//! | [`app`] | [`Application`]: binds, serves the routes, runs until a shutdown signal, drains |
//! | [`state`] | [`state::AppState`], shared by every request and connection, and how it is built |
//! | [`backoff`] | retry timing for every outbound call: exponential backoff, jitter, `Retry-After` |
//! | [`audit`] | the audit log of administrator actions (over the store), shared by the API and chat services |
//! | [`auth`] | JWT verification, roles, token minting |
//! | [`api`] | HTTP endpoints (poem-openapi, thin) and HTTP middleware |
//! | [`llm`] | the `LlmProvider` trait, the providers, retry/fallback/breaker policy |
//! | [`store`] | the `Store` trait, MongoDB and embedded stores, encryption at rest |
//! | [`files`] | uploads: object storage (local or S3), streaming encryption, limits, signed links |
//! | [`chat`] | transport-agnostic chat services: one module per inbound message kind, the turn engine |
//! | [`notify`] | help-request notifications: SMTP email and signed webhook, delivered in the background |
//! | [`hub`] | connection registry and fan-out behind the `EventBus` seam |
//! | [`ws`] | the WebSocket transport: upgrade, limits, read/write loops, heartbeat |
//! | [`protocol`] | the generated wire types (the only door to generated code) |
//! | [`metrics`] | the Prometheus registry with the Go service's metric names |
//! | [`telemetry`] | logging setup |
//!
//! Wire types are generated from `spec/` by `codegen/` at build time (see `docs/architecture.md`).

pub mod api;
pub mod app;
pub mod audit;
pub mod auth;
pub mod backoff;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod files;
pub mod hub;
pub mod llm;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod settings_kit;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod ws;

pub use app::Application;
