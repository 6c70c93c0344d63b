//! The registry of this node's connections: per-user and global limits taken before the upgrade and
//! released by drop guards on every path, bounded outbound backlogs (see [`super::backlog`]), and delivery
//! to users, sessions and admins.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::backlog::{BacklogLimits, Outbox, Outgoing};
use crate::metrics::Metrics;

/// Identifies a connection: the node's number in the high bits ([`NODE_SHIFT`]), a count below, so an id
/// names one connection in the whole cluster (the node number is 0 on a single node).
pub type ConnId = u64;

/// Bits of a [`ConnId`] below the node number.
pub const NODE_SHIFT: u32 = 40;

/// The node a connection lives on.
pub fn node_of(conn: ConnId) -> u32 {
    u32::try_from(conn >> NODE_SHIFT).unwrap_or(u32::MAX)
}

/// What a connection's writer is asked to send.
#[derive(Debug, Clone)]
pub enum Outbound {
    /// A serialised JSON frame.
    Text(Arc<str>),
    /// Frames sent one after another as one item of the backlog: a replay, however long, is taken whole
    /// and is not mistaken for a slow consumer.
    Batch(Vec<Arc<str>>),
    /// A close frame; the writer stops after sending it.
    Close {
        /// WebSocket close code.
        code: u16,
        /// Close reason.
        reason: &'static str,
    },
}

/// Why a connection was refused before the upgrade.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LimitExceeded {
    /// The user already has the maximum number of connections.
    #[error("per-user connection limit reached")]
    PerUser,
    /// The node has the maximum number of connections.
    #[error("global connection limit reached")]
    Global,
}

struct Conn {
    user_id: Arc<str>,
    outbox: Arc<Outbox>,
}

#[derive(Default)]
struct State {
    conns: HashMap<ConnId, Conn>,
    users: HashMap<Arc<str>, Vec<ConnId>>,
    slots: HashMap<Arc<str>, usize>,
    /// Session id → user ids of the admins watching it (every connection of theirs receives it).
    watchers: HashMap<Arc<str>, Vec<Arc<str>>>,
    admins: HashSet<ConnId>,
    /// User id → connections of theirs on other nodes whose frames this node handles (cluster mode).
    remote: HashMap<Arc<str>, usize>,
}

struct Shared {
    state: Mutex<State>,
    global: Arc<Semaphore>,
    per_user: usize,
    backlog: BacklogLimits,
    next_id: AtomicU64,
    metrics: Arc<Metrics>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the maps half-updated in a way that matters more
        // than refusing all further connections would; keep serving.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// This node's connection registry (cheap to clone).
#[derive(Clone)]
pub struct Hub {
    shared: Arc<Shared>,
}

/// A connection slot taken before the upgrade; dropping it (upgrade failed, client gone) releases it.
pub struct Slot {
    shared: Arc<Shared>,
    user_id: Arc<str>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        count_down(&mut self.shared.lock().slots, &self.user_id);
    }
}

/// Takes one off `key`'s count, removing the entry at zero; returns whether no count is left for `key`.
pub fn count_down<K, Q>(counts: &mut HashMap<K, usize>, key: &Q) -> bool
where
    K: std::borrow::Borrow<Q> + std::hash::Hash + Eq,
    Q: std::hash::Hash + Eq + ?Sized,
{
    let Some(count) = counts.get_mut(key) else {
        return true;
    };
    *count = count.saturating_sub(1);
    if *count == 0 {
        counts.remove(key);
        return true;
    }
    false
}

/// A connection of another node counted by [`Hub::remote_connection`]; dropping it stops counting it.
pub struct RemoteConn {
    shared: Arc<Shared>,
    user_id: Arc<str>,
}

impl Drop for RemoteConn {
    fn drop(&mut self) {
        count_down(&mut self.shared.lock().remote, &self.user_id);
    }
}

/// A registered connection; dropping it unregisters the connection and releases its slot.
pub struct ConnHandle {
    id: ConnId,
    shared: Arc<Shared>,
    kick: CancellationToken,
    _slot: Slot,
}

impl ConnHandle {
    /// The connection's id.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// Cancelled when the hub wants this connection closed (slow consumer).
    pub fn kicked(&self) -> CancellationToken {
        self.kick.clone()
    }
}

impl Drop for ConnHandle {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        if let Some(conn) = state.conns.remove(&self.id) {
            if let Some(ids) = state.users.get_mut(&conn.user_id) {
                ids.retain(|id| *id != self.id);
                if ids.is_empty() {
                    state.users.remove(&conn.user_id);
                }
            }
            state.admins.remove(&self.id);
            drop(state);
            conn.outbox.close();
            self.shared.metrics.websocket_connections.dec();
        }
    }
}

impl Hub {
    /// Creates a registry with the given connection limits and per-connection backlog limits.
    pub fn new(
        max_connections: usize,
        per_user: usize,
        backlog: BacklogLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self::on_node(0, max_connections, per_user, backlog, metrics)
    }

    /// A registry whose connection ids carry `node` (cluster mode: every node has its own number).
    pub fn on_node(
        node: u32,
        max_connections: usize,
        per_user: usize,
        backlog: BacklogLimits,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                global: Arc::new(Semaphore::new(max_connections)),
                per_user,
                backlog,
                next_id: AtomicU64::new((u64::from(node) << NODE_SHIFT) | 1),
                metrics,
            }),
        }
    }

    /// Whether `conn` lives on this node.
    pub fn is_local(&self, conn: ConnId) -> bool {
        node_of(conn) == node_of(self.shared.next_id.load(Ordering::Relaxed))
    }

    /// Takes a connection slot for `user_id`, or says which limit refuses it.
    pub fn reserve(&self, user_id: &str) -> Result<Slot, LimitExceeded> {
        let permit = Arc::clone(&self.shared.global)
            .try_acquire_owned()
            .map_err(|_| LimitExceeded::Global)?;
        let mut state = self.shared.lock();
        let user_id: Arc<str> = match state.slots.get_key_value(user_id) {
            Some((key, _)) => Arc::clone(key),
            None => Arc::from(user_id),
        };
        let count = state.slots.entry(Arc::clone(&user_id)).or_insert(0);
        if *count >= self.shared.per_user {
            return Err(LimitExceeded::PerUser);
        }
        *count += 1;
        drop(state);
        Ok(Slot {
            shared: Arc::clone(&self.shared),
            user_id,
            _permit: permit,
        })
    }

    /// Registers an upgraded connection; frames for it arrive on the returned receiver.
    pub fn register(&self, slot: Slot, is_admin: bool) -> (ConnHandle, Outgoing) {
        let id = self.shared.next_id.fetch_add(1, Ordering::Relaxed);
        let kick = CancellationToken::new();
        let outbox = Outbox::new(
            self.shared.backlog,
            kick.clone(),
            Arc::clone(&self.shared.metrics),
            is_admin,
        );
        let rx = Outgoing::new(Arc::clone(&outbox));
        let mut state = self.shared.lock();
        let user_id = Arc::clone(&slot.user_id);
        state
            .users
            .entry(Arc::clone(&user_id))
            .or_default()
            .push(id);
        if is_admin {
            state.admins.insert(id);
        }
        state.conns.insert(id, Conn { user_id, outbox });
        drop(state);
        self.shared.metrics.websocket_connections.inc();
        (
            ConnHandle {
                id,
                shared: Arc::clone(&self.shared),
                kick,
                _slot: slot,
            },
            rx,
        )
    }

    /// Number of connections `user_id` has on this node.
    pub fn user_connection_count(&self, user_id: &str) -> usize {
        self.shared.lock().users.get(user_id).map_or(0, Vec::len)
    }

    /// Whether `user_id` has a connection on this node, or one on another node whose frames this node
    /// handles.
    pub fn user_is_connected(&self, user_id: &str) -> bool {
        let state = self.shared.lock();
        state.users.contains_key(user_id) || state.remote.contains_key(user_id)
    }

    /// Counts a connection of `user_id` on another node whose frames this node handles, until the returned
    /// guard is dropped.
    pub fn remote_connection(&self, user_id: &str) -> RemoteConn {
        let user_id: Arc<str> = Arc::from(user_id);
        *self
            .shared
            .lock()
            .remote
            .entry(Arc::clone(&user_id))
            .or_insert(0) += 1;
        RemoteConn {
            shared: Arc::clone(&self.shared),
            user_id,
        }
    }

    /// Drops what is queued for `conn` (a connection about to be sent its first frames).
    pub fn clear_queue(&self, conn: ConnId) {
        let target = {
            let state = self.shared.lock();
            state.conns.get(&conn).map(|c| Arc::clone(&c.outbox))
        };
        if let Some(outbox) = target {
            Outgoing::new(outbox).clear();
        }
    }

    /// The user ids of the admins watching `session_id`.
    pub fn watchers_of(&self, session_id: &str) -> Vec<Arc<str>> {
        self.shared
            .lock()
            .watchers
            .get(session_id)
            .cloned()
            .unwrap_or_default()
    }

    /// Total registered connections on this node.
    pub fn connection_count(&self) -> usize {
        self.shared.lock().conns.len()
    }

    /// Makes the admin `admin_id` watch `session_id`: every connection of theirs on this node, open now or
    /// later, receives the session's frames until [`clear_watchers`](Self::clear_watchers).
    pub fn watch(&self, session_id: &str, admin_id: &str) {
        let mut state = self.shared.lock();
        let ids = state.watchers.entry(Arc::from(session_id)).or_default();
        if !ids.iter().any(|id| &**id == admin_id) {
            ids.push(Arc::from(admin_id));
        }
    }

    /// Whether any admin watches `session_id`.
    pub fn has_watchers(&self, session_id: &str) -> bool {
        self.shared.lock().watchers.contains_key(session_id)
    }

    /// Removes every watcher of `session_id` and returns their admin user ids.
    pub fn clear_watchers(&self, session_id: &str) -> Vec<Arc<str>> {
        self.shared
            .lock()
            .watchers
            .remove(session_id)
            .unwrap_or_default()
    }

    /// Sends to one connection.
    pub fn send_to(&self, conn: ConnId, frame: Outbound) {
        let target = {
            let state = self.shared.lock();
            state.conns.get(&conn).map(|c| Arc::clone(&c.outbox))
        };
        if let Some(outbox) = target {
            outbox.push(frame);
        }
    }

    /// Sends `frame` to every connection of `user_id`, to the watchers of `session_id` (if given), to every
    /// admin connection (if `admins`), skipping `except`.
    pub fn deliver(
        &self,
        user_id: Option<&str>,
        session_id: Option<&str>,
        admins: bool,
        except: Option<ConnId>,
        frame: &Arc<str>,
    ) {
        let targets: Vec<_> = {
            let state = self.shared.lock();
            let mut ids: Vec<ConnId> = Vec::new();
            if let Some(user) = user_id.and_then(|u| state.users.get(u)) {
                ids.extend(user);
            }
            if let Some(watchers) = session_id.and_then(|s| state.watchers.get(s)) {
                for admin in watchers {
                    for id in state.users.get(admin).into_iter().flatten() {
                        if !ids.contains(id) {
                            ids.push(*id);
                        }
                    }
                }
            }
            if admins {
                ids.extend(
                    state
                        .admins
                        .iter()
                        .filter(|id| !ids.contains(id))
                        .copied()
                        .collect::<Vec<_>>(),
                );
            }
            ids.into_iter()
                .filter(|id| Some(*id) != except)
                .filter_map(|id| state.conns.get(&id).map(|c| Arc::clone(&c.outbox)))
                .collect()
        };
        for outbox in targets {
            outbox.push(Outbound::Text(Arc::clone(frame)));
        }
    }

    /// Asks every connection to close with `code` and `reason` (graceful shutdown), after the frames already
    /// queued for it.
    pub fn close_all(&self, code: u16, reason: &'static str) {
        let targets: Vec<_> = {
            let state = self.shared.lock();
            state
                .conns
                .values()
                .map(|c| Arc::clone(&c.outbox))
                .collect()
        };
        for outbox in targets {
            outbox.push(Outbound::Close { code, reason });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub(per_user: usize, global: usize, max_bytes: usize) -> Hub {
        let backlog = BacklogLimits {
            max_bytes,
            max_age: std::time::Duration::from_secs(60),
        };
        Hub::new(global, per_user, backlog, Arc::new(Metrics::new()))
    }

    #[test]
    fn slots_are_released_when_dropped_before_registration() {
        let hub = hub(2, 10, 64);
        let a = hub.reserve("u").unwrap();
        let _b = hub.reserve("u").unwrap();
        assert_eq!(hub.reserve("u").err(), Some(LimitExceeded::PerUser));
        drop(a);
        assert!(hub.reserve("u").is_ok());
    }

    #[test]
    fn global_limit_applies_across_users() {
        let hub = hub(5, 2, 64);
        let _a = hub.reserve("a").unwrap();
        let _b = hub.reserve("b").unwrap();
        assert_eq!(hub.reserve("c").err(), Some(LimitExceeded::Global));
    }

    #[tokio::test]
    async fn frames_reach_every_device_of_a_user_and_watchers() {
        let hub = hub(10, 10, 64);
        let (d1, mut r1) = hub.register(hub.reserve("u").unwrap(), false);
        let (_d2, mut r2) = hub.register(hub.reserve("u").unwrap(), false);
        let (_admin, mut ra) = hub.register(hub.reserve("adm").unwrap(), true);
        hub.watch("s1", "adm");
        // A device the admin opens later watches too.
        let (_tablet, mut rt) = hub.register(hub.reserve("adm").unwrap(), true);
        let frame: Arc<str> = Arc::from("{}");
        hub.deliver(Some("u"), Some("s1"), false, Some(d1.id()), &frame);
        assert!(r1.try_recv().is_none());
        assert!(matches!(r2.try_recv(), Some(Outbound::Text(_))));
        assert!(matches!(ra.try_recv(), Some(Outbound::Text(_))));
        assert!(matches!(rt.try_recv(), Some(Outbound::Text(_))));
        assert!(ra.try_recv().is_none(), "each frame once");
        assert_eq!(hub.clear_watchers("s1").len(), 1);
        hub.deliver(None, Some("s1"), false, None, &frame);
        assert!(ra.try_recv().is_none(), "no longer watching");
        assert_eq!(hub.user_connection_count("u"), 2);
        drop(d1);
        assert_eq!(hub.user_connection_count("u"), 1);
    }

    #[tokio::test]
    async fn a_backlog_over_its_byte_limit_cuts_only_that_connection_and_counts_once() {
        let hub = hub(10, 10, 4);
        let (slow, _r_slow) = hub.register(hub.reserve("u").unwrap(), false);
        let (fast, mut r_fast) = hub.register(hub.reserve("u").unwrap(), false);
        let frame: Arc<str> = Arc::from("{}");
        // The slow device never takes anything: the first frame waits, then 4 bytes behind it fit.
        for _ in 0..3 {
            hub.deliver(Some("u"), None, false, None, &frame);
            assert!(r_fast.try_recv().is_some());
        }
        assert!(!slow.kicked().is_cancelled());
        hub.deliver(Some("u"), None, false, None, &frame);
        hub.deliver(Some("u"), None, false, None, &frame);
        assert!(slow.kicked().is_cancelled());
        assert!(!fast.kicked().is_cancelled());
        let dropped = hub
            .shared
            .metrics
            .queue_dropped
            .with_label_values(&["slow_consumer"]);
        assert_eq!(dropped.get(), 1);
    }

    #[tokio::test]
    async fn an_unregistered_connection_still_gets_its_queued_close_frame() {
        let hub = hub(10, 10, 64);
        let (handle, mut rx) = hub.register(hub.reserve("u").unwrap(), false);
        hub.send_to(handle.id(), Outbound::Text(Arc::from("last")));
        hub.send_to(
            handle.id(),
            Outbound::Close {
                code: 1009,
                reason: "Message too big",
            },
        );
        drop(handle);
        assert!(matches!(rx.recv().await, Some(Outbound::Text(_))));
        assert!(matches!(
            rx.recv().await,
            Some(Outbound::Close { code: 1009, .. })
        ));
        assert!(rx.recv().await.is_none());
    }
}
