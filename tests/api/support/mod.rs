//! What the tests share: the server under test, its clients, and real stand-ins for the services it talks
//! to. No tests here.

pub mod app;
pub mod fake_llm;
pub mod http;
pub mod logs;
pub mod nodes;
pub mod notify;
pub mod process;
pub mod receivers;
pub mod redis;
pub mod schemas;
pub mod wait;
