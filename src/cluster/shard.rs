//! One Redis of the cluster (a shard): its two connections (commands and subscriptions), the queue of what
//! this node publishes on it, whether it answers, and where a user is placed among several.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{IntoConnectionInfo, ProtocolVersion, PushInfo};
use tokio::sync::mpsc;

use super::lock;

/// How long calls to a Redis are skipped after one failed.
const BACKOFF: Duration = Duration::from_secs(1);
/// How long Redis may take to answer one command.
const RESPONSE_TIMEOUT: Duration = Duration::from_millis(500);

/// One Redis of the cluster.
pub(super) struct Shard {
    /// Its place in the list of URLs (0 also holds what belongs to the cluster as a whole).
    pub index: usize,
    /// Its position for logs: `"1/2"`, or empty with a single Redis.
    label: String,
    /// Commands and scripts.
    pub commands: ConnectionManager,
    /// Subscriptions (their messages arrive as pushes).
    pub subscriber: ConnectionManager,
    publish: mpsc::UnboundedSender<redis::Cmd>,
    /// Calls are skipped until then (one failed).
    down_until: Mutex<Option<Instant>>,
    /// Set when a call failed or the subscriber connection dropped: the next heartbeat subscribes again to
    /// every channel this node needs on this shard.
    resubscribe: AtomicBool,
}

/// What a new shard hands to the tasks that serve it.
pub(super) struct ShardFeeds {
    /// Messages of its subscriptions.
    pub pushes: mpsc::UnboundedReceiver<PushInfo>,
    /// What this node publishes on it.
    pub publishes: mpsc::UnboundedReceiver<redis::Cmd>,
}

impl Shard {
    /// Connects to the Redis at `url`, shard `index` of `count`.
    pub async fn connect(
        index: usize,
        count: usize,
        url: &str,
    ) -> anyhow::Result<(Self, ShardFeeds)> {
        let info = url.into_connection_info().context("REDIS_URL")?;
        let settings = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(settings)).context("REDIS_URL")?;
        let base = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(2)))
            .set_response_timeout(Some(RESPONSE_TIMEOUT))
            .set_max_delay(Duration::from_secs(1));
        let label = if count > 1 {
            format!("{}/{count}", index + 1)
        } else {
            String::new()
        };
        let unreachable = || format!("cannot reach Redis {label} at REDIS_URL");
        let commands = client
            .get_connection_manager_with_config(base.clone())
            .await
            .with_context(unreachable)?;
        let (push_tx, pushes) = mpsc::unbounded_channel();
        let subscriber = client
            .get_connection_manager_with_config(
                base.set_push_sender(push_tx).set_automatic_resubscription(),
            )
            .await
            .with_context(unreachable)?;
        let (publish, publishes) = mpsc::unbounded_channel();
        let shard = Self {
            index,
            label,
            commands,
            subscriber,
            publish,
            down_until: Mutex::default(),
            resubscribe: AtomicBool::new(false),
        };
        Ok((shard, ShardFeeds { pushes, publishes }))
    }

    /// Whether calls are tried (none failed within the last [`BACKOFF`]).
    pub fn available(&self) -> bool {
        lock(&self.down_until).is_none_or(|until| Instant::now() >= until)
    }

    /// Notes a failed call: calls are skipped for a while and subscriptions restored afterwards.
    pub fn failed(&self, err: &redis::RedisError) {
        self.lost_subscriptions();
        let mut down = lock(&self.down_until);
        if down.is_none_or(|until| Instant::now() >= until) {
            tracing::warn!(error = %err, shard = %self.label, "Redis call failed: serving this node's connections alone");
        }
        *down = Some(Instant::now() + BACKOFF);
    }

    /// Notes a call that succeeded.
    pub fn recovered(&self) {
        if lock(&self.down_until).take().is_some() {
            tracing::info!(shard = %self.label, "Redis reachable again");
        }
    }

    /// Asks the next heartbeat to subscribe again to everything on this shard.
    pub fn lost_subscriptions(&self) {
        self.resubscribe.store(true, Ordering::SeqCst);
    }

    /// Whether subscriptions are to be restored (and clears the request).
    pub fn take_resubscribe(&self) -> bool {
        self.resubscribe.swap(false, Ordering::SeqCst)
    }

    /// Queues a command for this shard's publisher (in order with the publishes; its answer is not read).
    pub fn queue(&self, command: redis::Cmd) {
        let _ = self.publish.send(command);
    }

    /// Its position for messages (`"1/2"`), empty with a single Redis.
    pub fn label(&self) -> &str {
        &self.label
    }
}

/// The shard (of `count`) that holds `key` (a user id): FNV-1a of its bytes, then the jump consistent hash
/// (Lamping and Veach), so that every node places a user alike and adding a shard moves only a
/// `1/count` share of the users.
pub fn place(key: &str, count: usize) -> usize {
    if count <= 1 {
        return 0;
    }
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in key.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    let buckets = i64::try_from(count).unwrap_or(i64::MAX);
    let (mut bucket, mut next) = (-1_i64, 0_i64);
    while next < buckets {
        bucket = next;
        hash = hash.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        let step = f64::from(1_u32 << 31) / (((hash >> 33) + 1) as f64);
        next = ((bucket + 1) as f64 * step) as i64;
    }
    usize::try_from(bucket).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::place;

    #[test]
    fn a_single_redis_holds_everything() {
        assert_eq!(place("anyone", 1), 0);
        assert_eq!(place("anyone", 0), 0);
    }

    #[test]
    fn users_spread_over_the_shards_and_stay_where_they_are() {
        let users: Vec<String> = (0..10_000).map(|i| format!("user-{i}")).collect();
        let mut per_shard = [0_usize; 4];
        for user in &users {
            per_shard[place(user, 4)] += 1;
        }
        for count in per_shard {
            assert!((2_000..3_000).contains(&count), "{per_shard:?}");
        }
        // Stable across versions and nodes (figures from an independent implementation).
        let names = [
            "alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi",
        ];
        assert_eq!(names.map(|u| place(u, 2)), [0, 0, 0, 0, 1, 1, 0, 1]);
        assert_eq!(names.map(|u| place(u, 3)), [0, 2, 2, 0, 2, 2, 0, 2]);
        // A fifth shard moves only users to it, about a fifth of them.
        let moved: Vec<&String> = users
            .iter()
            .filter(|u| place(u, 4) != place(u, 5))
            .collect();
        assert!(moved.iter().all(|u| place(u, 5) == 4));
        assert!((1_500..2_500).contains(&moved.len()), "{}", moved.len());
    }
}
