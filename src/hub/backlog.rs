//! A connection's outbound backlog: the frames waiting for its writer, measured in bytes and in the age of the
//! oldest one, with the slow-consumer limits checked on every push and by the writer while it waits on the
//! socket.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::Outbound;
use crate::metrics::Metrics;

/// When a connection counts as a slow consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BacklogLimits {
    /// Bytes that may wait behind the item the writer takes next (`WS_MAX_BACKLOG_BYTES`).
    pub max_bytes: usize,
    /// How long a frame may wait for the writer, and how long the writer may stay blocked on one frame
    /// (`WS_MAX_BACKLOG_AGE`).
    pub max_age: Duration,
}

/// Which limit a slow consumer passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// Too many bytes waiting.
    Bytes,
    /// A frame waited, or a write was blocked, too long.
    Age,
}

impl Overflow {
    fn as_str(self) -> &'static str {
        match self {
            Self::Bytes => "bytes",
            Self::Age => "age",
        }
    }
}

impl Outbound {
    /// The payload bytes this item puts on the wire (a close frame counts as nothing).
    fn bytes(&self) -> usize {
        match self {
            Self::Text(text) => text.len(),
            Self::Batch(texts) => texts.iter().map(|t| t.len()).sum(),
            Self::Close { .. } => 0,
        }
    }
}

#[derive(Debug)]
struct Waiting {
    item: Outbound,
    bytes: usize,
    since: Instant,
}

/// What a push did.
#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    Queued,
    /// The push passed a limit: the backlog was emptied and the connection is to be cut.
    Overflow(Overflow),
    /// The backlog no longer takes frames (cut or unregistered).
    Dropped,
}

/// What the writer finds in the backlog.
#[derive(Debug)]
enum Next {
    Item(Outbound),
    Empty,
    Closed,
}

/// The accounting, without locks or wake-ups.
///
/// Bytes: an item queued onto an empty backlog is always taken, whatever its size (one long replay is not a
/// slow consumer); a push overflows when the bytes waiting behind the first waiting item would exceed
/// `max_bytes`. Age: a push overflows when the first waiting item was queued `max_age` ago or more; the
/// writer applies the same age to its own blocked writes ([`Outgoing::deadline`]). Close frames are always
/// taken while the backlog is open.
#[derive(Debug)]
struct Backlog {
    waiting: VecDeque<Waiting>,
    bytes: usize,
    /// Cut as a slow consumer: what waited is freed, nothing more is queued, the writer sends the close frame.
    cut: bool,
    /// Unregistered: nothing more is queued, the writer sends what waits, then stops.
    closed: bool,
}

impl Backlog {
    fn new() -> Self {
        Self {
            waiting: VecDeque::new(),
            bytes: 0,
            cut: false,
            closed: false,
        }
    }

    fn push(&mut self, item: Outbound, now: Instant, limits: &BacklogLimits) -> Pushed {
        if self.cut || self.closed {
            return Pushed::Dropped;
        }
        let bytes = item.bytes();
        if !matches!(item, Outbound::Close { .. })
            && let Some(reason) = self.limit_passed(bytes, now, limits)
        {
            self.overflow();
            return Pushed::Overflow(reason);
        }
        self.bytes += bytes;
        self.waiting.push_back(Waiting {
            item,
            bytes,
            since: now,
        });
        Pushed::Queued
    }

    fn limit_passed(&self, bytes: usize, now: Instant, limits: &BacklogLimits) -> Option<Overflow> {
        let first = self.waiting.front()?;
        if now.saturating_duration_since(first.since) >= limits.max_age {
            return Some(Overflow::Age);
        }
        let behind = self.bytes - first.bytes + bytes;
        (behind > limits.max_bytes).then_some(Overflow::Bytes)
    }

    /// Marks the backlog cut and frees what waits; false if it was no longer open.
    fn overflow(&mut self) -> bool {
        if self.cut || self.closed {
            return false;
        }
        self.cut = true;
        self.waiting.clear();
        self.bytes = 0;
        true
    }

    fn close(&mut self) {
        self.closed = true;
    }

    fn pop(&mut self) -> Next {
        match self.waiting.pop_front() {
            Some(waiting) => {
                self.bytes -= waiting.bytes;
                Next::Item(waiting.item)
            }
            None if self.cut || self.closed => Next::Closed,
            None => Next::Empty,
        }
    }

    fn oldest(&self) -> Option<Instant> {
        self.waiting.front().map(|w| w.since)
    }
}

/// One connection's backlog, shared by the registry (which pushes) and the connection's writer.
pub(super) struct Outbox {
    backlog: Mutex<Backlog>,
    ready: Notify,
    kick: CancellationToken,
    limits: BacklogLimits,
    metrics: Arc<Metrics>,
    is_admin: bool,
}

impl Outbox {
    /// An empty, open backlog; `kick` is cancelled when the connection is cut as a slow consumer.
    pub(super) fn new(
        limits: BacklogLimits,
        kick: CancellationToken,
        metrics: Arc<Metrics>,
        is_admin: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            backlog: Mutex::new(Backlog::new()),
            ready: Notify::new(),
            kick,
            limits,
            metrics,
            is_admin,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Backlog> {
        // Every update leaves the backlog consistent; a panic elsewhere while holding it changes nothing.
        self.backlog
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Queues `item` for the writer, or cuts the connection if that passes a limit. Never blocks.
    pub(super) fn push(&self, item: Outbound) {
        let pushed = self.lock().push(item, Instant::now(), &self.limits);
        match pushed {
            Pushed::Queued => self.ready.notify_one(),
            Pushed::Overflow(reason) => self.cut(reason),
            Pushed::Dropped => {}
        }
    }

    /// The connection is unregistered: the writer sends what is queued, then stops.
    pub(super) fn close(&self) {
        self.lock().close();
        self.ready.notify_one();
    }

    fn cut(&self, reason: Overflow) {
        self.metrics
            .queue_dropped
            .with_label_values(&["slow_consumer"])
            .inc();
        if self.is_admin {
            self.metrics.admin_messages_dropped.inc();
        }
        tracing::info!(
            limit = reason.as_str(),
            "slow consumer: closing the connection with 1013"
        );
        self.kick.cancel();
    }
}

/// The writer's end of a connection's backlog.
pub struct Outgoing {
    outbox: Arc<Outbox>,
}

impl Outgoing {
    pub(super) fn new(outbox: Arc<Outbox>) -> Self {
        Self { outbox }
    }

    /// The next item, in order; `None` once the connection is unregistered (or cut) and nothing is left.
    /// Cancel-safe: an item is taken only when this returns it.
    pub async fn recv(&mut self) -> Option<Outbound> {
        loop {
            match self.outbox.lock().pop() {
                Next::Item(item) => return Some(item),
                Next::Closed => return None,
                Next::Empty => {}
            }
            // A push between the check and this wait leaves a permit: no wake-up is lost.
            self.outbox.ready.notified().await;
        }
    }

    /// The next item if one is queued.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        match self.outbox.lock().pop() {
            Next::Item(item) => Some(item),
            Next::Empty | Next::Closed => None,
        }
    }

    /// Completes once the connection is unregistered (its reader has ended). Cancel-safe.
    pub async fn unregistered(&mut self) {
        loop {
            if self.outbox.lock().closed {
                return;
            }
            self.outbox.ready.notified().await;
        }
    }

    /// Drops everything queued.
    pub fn clear(&mut self) {
        while self.try_recv().is_some() {}
    }

    /// When a write the writer starts at `started` has blocked too long: `max_age` after `started` or after
    /// the oldest frame still waiting was queued, whichever is earlier.
    pub fn deadline(&self, started: Instant) -> Instant {
        let oldest = self
            .outbox
            .lock()
            .oldest()
            .map_or(started, |o| o.min(started));
        oldest + self.outbox.limits.max_age
    }

    /// A write passed its [`deadline`](Self::deadline): the connection is cut as a slow consumer (counted
    /// once, queued frames freed, the kick token cancelled).
    pub fn stalled(&self) {
        if self.outbox.lock().overflow() {
            self.outbox.cut(Overflow::Age);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: BacklogLimits = BacklogLimits {
        max_bytes: 100,
        max_age: Duration::from_secs(10),
    };

    fn text(len: usize) -> Outbound {
        Outbound::Text(Arc::from("x".repeat(len)))
    }

    fn close() -> Outbound {
        Outbound::Close {
            code: 1001,
            reason: "bye",
        }
    }

    #[test]
    fn bytes_count_what_waits_and_leave_when_taken() {
        let now = Instant::now();
        let mut backlog = Backlog::new();
        assert_eq!(backlog.push(text(30), now, &LIMITS), Pushed::Queued);
        let batch = Outbound::Batch(vec![Arc::from("abc"), Arc::from("de")]);
        assert_eq!(backlog.push(batch, now, &LIMITS), Pushed::Queued);
        assert_eq!(backlog.bytes, 35);
        assert!(matches!(backlog.pop(), Next::Item(Outbound::Text(_))));
        assert_eq!(backlog.bytes, 5);
        assert!(matches!(backlog.pop(), Next::Item(Outbound::Batch(_))));
        assert_eq!(backlog.bytes, 0);
        assert!(matches!(backlog.pop(), Next::Empty));
    }

    #[test]
    fn an_item_of_any_size_is_taken_by_an_empty_backlog() {
        let now = Instant::now();
        let mut backlog = Backlog::new();
        assert_eq!(backlog.push(text(1000), now, &LIMITS), Pushed::Queued);
        // What waits behind it is what counts: 100 bytes fit, one more does not.
        assert_eq!(backlog.push(text(60), now, &LIMITS), Pushed::Queued);
        assert_eq!(backlog.push(text(40), now, &LIMITS), Pushed::Queued);
        assert_eq!(
            backlog.push(text(1), now, &LIMITS),
            Pushed::Overflow(Overflow::Bytes)
        );
    }

    #[test]
    fn a_reader_that_keeps_up_never_passes_the_byte_limit() {
        let now = Instant::now();
        let mut backlog = Backlog::new();
        for _ in 0..10_000 {
            assert_eq!(backlog.push(text(60), now, &LIMITS), Pushed::Queued);
            assert_eq!(backlog.push(text(40), now, &LIMITS), Pushed::Queued);
            assert!(matches!(backlog.pop(), Next::Item(_)));
            assert!(matches!(backlog.pop(), Next::Item(_)));
        }
        assert_eq!(backlog.bytes, 0);
    }

    #[test]
    fn a_frame_waiting_too_long_overflows_the_next_push() {
        let start = Instant::now();
        let mut backlog = Backlog::new();
        assert_eq!(backlog.push(text(1), start, &LIMITS), Pushed::Queued);
        let later = start + Duration::from_secs(9);
        assert_eq!(backlog.push(text(1), later, &LIMITS), Pushed::Queued);
        assert_eq!(backlog.oldest(), Some(start));
        let too_late = start + LIMITS.max_age;
        assert_eq!(
            backlog.push(text(1), too_late, &LIMITS),
            Pushed::Overflow(Overflow::Age)
        );
    }

    #[test]
    fn an_overflow_frees_the_backlog_and_takes_nothing_more() {
        let now = Instant::now();
        let mut backlog = Backlog::new();
        backlog.push(text(50), now, &LIMITS);
        backlog.push(text(100), now, &LIMITS);
        assert_eq!(
            backlog.push(text(1), now, &LIMITS),
            Pushed::Overflow(Overflow::Bytes)
        );
        assert_eq!((backlog.waiting.len(), backlog.bytes), (0, 0));
        assert_eq!(backlog.push(text(1), now, &LIMITS), Pushed::Dropped);
        assert_eq!(backlog.push(close(), now, &LIMITS), Pushed::Dropped);
        assert!(!backlog.overflow(), "a cut happens once");
        assert!(matches!(backlog.pop(), Next::Closed));
        backlog.close();
        assert!(matches!(backlog.pop(), Next::Closed));
    }

    #[test]
    fn close_frames_pass_the_limits_and_a_closed_backlog_drains_then_ends() {
        let now = Instant::now();
        let mut backlog = Backlog::new();
        backlog.push(text(10), now, &LIMITS);
        backlog.push(text(100), now, &LIMITS);
        assert_eq!(backlog.push(close(), now, &LIMITS), Pushed::Queued);
        backlog.close();
        assert_eq!(backlog.push(text(1), now, &LIMITS), Pushed::Dropped);
        assert!(matches!(backlog.pop(), Next::Item(Outbound::Text(_))));
        assert!(matches!(backlog.pop(), Next::Item(Outbound::Text(_))));
        assert!(matches!(backlog.pop(), Next::Item(Outbound::Close { .. })));
        assert!(matches!(backlog.pop(), Next::Closed));
    }

    fn outbox(kick: &CancellationToken) -> (Arc<Outbox>, Outgoing) {
        let outbox = Outbox::new(LIMITS, kick.clone(), Arc::new(Metrics::new()), false);
        let outgoing = Outgoing::new(Arc::clone(&outbox));
        (outbox, outgoing)
    }

    #[tokio::test(start_paused = true)]
    async fn the_write_deadline_counts_from_the_oldest_waiting_frame() {
        let kick = CancellationToken::new();
        let (outbox, rx) = outbox(&kick);
        let started = Instant::now();
        assert_eq!(rx.deadline(started), started + LIMITS.max_age);
        outbox.push(text(1));
        tokio::time::advance(Duration::from_secs(3)).await;
        assert_eq!(rx.deadline(Instant::now()), started + LIMITS.max_age);
        rx.stalled();
        assert!(kick.is_cancelled());
        let dropped = outbox
            .metrics
            .queue_dropped
            .with_label_values(&["slow_consumer"]);
        assert_eq!(dropped.get(), 1);
        rx.stalled();
        assert_eq!(dropped.get(), 1, "counted once");
    }

    #[tokio::test]
    async fn the_writer_wakes_for_each_push_and_ends_after_close() {
        let kick = CancellationToken::new();
        let (outbox, mut rx) = outbox(&kick);
        let writer = tokio::spawn(async move {
            let mut got = Vec::new();
            while let Some(item) = rx.recv().await {
                got.push(item.bytes());
            }
            got
        });
        for len in [1, 2, 3] {
            outbox.push(text(len));
            tokio::task::yield_now().await;
        }
        outbox.close();
        assert_eq!(writer.await.unwrap(), vec![1, 2, 3]);
        assert!(!kick.is_cancelled());
    }

    #[tokio::test]
    async fn a_cut_connection_is_unregistered_only_when_its_reader_ends() {
        let kick = CancellationToken::new();
        let (outbox, mut rx) = outbox(&kick);
        rx.stalled();
        assert!(rx.recv().await.is_none(), "nothing is left to send");
        let mut waiting = Box::pin(rx.unregistered());
        assert!(futures::poll!(&mut waiting).is_pending());
        outbox.close();
        waiting.await;
    }
}
