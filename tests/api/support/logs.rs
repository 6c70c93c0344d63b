//! Reading what the server logs: a buffer behind a `tracing` subscriber scoped to the test's thread.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::Write;
use std::sync::{Arc, Mutex};

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Everything written so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Keeps logs captured until dropped.
pub struct LogCapture {
    _scoped: tracing::subscriber::DefaultGuard,
    _second: tracing::Dispatch,
}

/// Sends everything logged at debug level and above on this thread (the test's, and the server's it spawns) to a buffer.
///
/// A second, silent dispatcher stays registered meanwhile: with a single registered dispatcher, `tracing`
/// computes the interest of a callsite first hit on another test's thread from that thread's (empty)
/// default and caches "never", which would hide the server's lines from this capture now and then.
pub fn capture_logs() -> (Captured, LogCapture) {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter("debug")
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let guard = LogCapture {
        _second: tracing::Dispatch::new(tracing::subscriber::NoSubscriber::default()),
        _scoped: tracing::subscriber::set_default(subscriber),
    };
    (captured, guard)
}
