//! One component of the library at a time, without the server around it: the LLM layer against the fake
//! provider over real HTTP, and the storage conformance suite against every `Store` backend.

mod llm;
pub mod store;
