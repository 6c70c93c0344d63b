//! The server over HTTP: the REST routes, middleware, probes and metrics, and what the server does when
//! its store is gone, its keys change or its database is the Go service's. Tests that also open a
//! WebSocket live here when their assertions are about the HTTP answers.

mod admin;
mod auth_claims;
mod console;
mod go_database;
mod health;
mod keys;
mod metrics;
mod middleware;
mod outage;
mod sessions;
mod takeover;
pub mod uploads;
