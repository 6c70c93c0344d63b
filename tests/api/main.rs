//! Integration tests: one binary that drives the real server over HTTP and WebSocket, its components
//! against real services, the real binaries as processes, and the repository's documents against the
//! code. One folder per level; `docs/testing.md` says what goes where.

mod components;
mod http;
mod process;
mod repo;
mod support;
mod ws;
