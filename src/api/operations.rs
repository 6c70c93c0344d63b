//! The HTTP operation layer generated from `spec/openapi.yaml` (`generated/rust/operations.rs` is its
//! reviewed mirror): one trait per operation, implemented on [`super::Handlers`] in the module of its
//! resource, and the poem-openapi services that serve them with the spec's paths, methods, operation ids,
//! tags, security and parameters.

#![allow(missing_docs, clippy::too_many_arguments)]

include!(concat!(env!("OUT_DIR"), "/operations.rs"));
