//! Cluster mode (`REDIS_URL`): several nodes behind a plain load balancer, sharing MongoDB and Redis.
//!
//! Every user is served by one node at a time, its *owner*, named by a lease in Redis (`o:<user>`) that the
//! owner renews while the user is connected anywhere. The owner holds the user's live sessions (sequence
//! numbers, replay ring, running turns, assisting admin) and handles every frame of theirs, so the rules of
//! one node (frames in order, one turn at a time, cancel, rate limits, seq order) hold in the cluster as
//! they are. A connection that lands on another node is registered there and forwards its frames to the
//! owner through the owner's node channel; the owner's frames reach it through the user's channel, which
//! every node with a connection of that user subscribes to (and only those nodes), and replies to one
//! connection through its node's channel. A frame is serialised once per publish.
//!
//! A node that stops renewing (killed) loses its users when its heartbeat key (`h:<node>`) expires, within
//! the lease; the next frame of such a user makes the node that receives it the owner, which loads the
//! sessions from the store. The turns it was running (`t:<node>`) are taken by the first live node whose
//! heartbeat notices, and ended on every device by the users' new owners. When Redis is unreachable every
//! node serves the connections it holds by itself (calls fail fast and are skipped for a second), and
//! re-subscribes when Redis is back.
//!
//! With several Redis URLs (shards) each user is placed on one by a stable hash ([`shard::place`]): the
//! user's lease, connection count and channel live there, and so does everything a node sends about one
//! connection (its forwarded frames, the frames meant for it alone), so that what one connection sends and
//! receives keeps its order. Node channels are subscribed on every shard and heartbeats written to every
//! shard; the node counter, the member set, running turns, calls and the admins' channel live on the first.

mod bus;
mod config;
mod inbox;
mod shard;
pub mod wire;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::Context;
use redis::Script;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

pub use bus::RedisBus;
pub use config::RedisConfig;
pub use shard::place;
pub use wire::Caller;

use crate::hub::{ConnId, Hub, count_down};
use shard::Shard;
use wire::{Envelope, Message, PREFIX};
/// How long a connection on another node waits for its first frames from the owner.
pub const ATTACH_WAIT: Duration = Duration::from_secs(5);

/// Returns the owner of `KEYS[1]`, taking it for `ARGV[1]` (lease `ARGV[2]` ms) when it has none or its
/// owner's heartbeat (`ARGV[3]` + owner) is gone.
const OWNER: &str = r"
local owner = redis.call('GET', KEYS[1])
if owner == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return owner
end
if owner and redis.call('EXISTS', ARGV[3] .. owner) == 1 then
  return owner
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
";

/// Renews the leases `KEYS` held by `ARGV[1]` (`ARGV[2]` ms); returns the 1-based indexes of those lost.
const RENEW: &str = r"
local lost = {}
for i, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then
    redis.call('PEXPIRE', key, ARGV[2])
  else
    table.insert(lost, i)
  end
end
return lost
";

/// Deletes the leases `KEYS` held by `ARGV[1]`.
const RELEASE: &str = r"
for _, key in ipairs(KEYS) do
  if redis.call('GET', key) == ARGV[1] then redis.call('DEL', key) end
end
return 0
";

/// Takes one of the user's connection slots (hash `KEYS[1]`, field per node) for node `ARGV[1]` unless
/// the user has `ARGV[2]` already on live nodes (heartbeat `ARGV[3]` + node); fields of dead nodes go.
const TAKE_SLOT: &str = r"
local total = 0
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  local node, n = all[i], tonumber(all[i + 1])
  if node == ARGV[1] or redis.call('EXISTS', ARGV[3] .. node) == 1 then
    total = total + n
  else
    redis.call('HDEL', KEYS[1], node)
  end
end
if total >= tonumber(ARGV[2]) then return 0 end
redis.call('HINCRBY', KEYS[1], ARGV[1], 1)
return 1
";

/// When the heartbeat `KEYS[1]` of node `ARGV[1]` is gone: returns and deletes its running turns
/// (`KEYS[2]`) and removes it from the members (`KEYS[3]`); otherwise returns nothing.
const TAKE_TURNS: &str = r"
if redis.call('EXISTS', KEYS[1]) == 1 then return {} end
local turns = redis.call('HGETALL', KEYS[2])
redis.call('DEL', KEYS[2])
redis.call('SREM', KEYS[3], ARGV[1])
return turns
";

/// Gives back one slot of node `ARGV[1]` in hash `KEYS[1]`.
const GIVE_SLOT: &str = r"
if redis.call('HINCRBY', KEYS[1], ARGV[1], -1) <= 0 then redis.call('HDEL', KEYS[1], ARGV[1]) end
return 0
";

/// What another node asks of this one as the owner of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forwarded {
    /// A connection on `origin` wants its first frames.
    Attach {
        /// The connection.
        conn: ConnId,
        /// Its caller.
        caller: Caller,
        /// `last_seq` it resumes from.
        last_seq: Option<i64>,
    },
    /// A frame from a connection on another node.
    Frame {
        /// The connection.
        conn: ConnId,
        /// Its caller.
        caller: Caller,
        /// The frame.
        text: String,
    },
    /// The connection closed.
    Detach {
        /// The connection.
        conn: ConnId,
    },
    /// A turn of a node that died while running it: to be ended on the devices.
    Orphan {
        /// Its session.
        session_id: String,
        /// What [`Cluster::turn_started`] recorded.
        record: String,
    },
    /// Node `node` left the cluster (its heartbeat expired, or it said goodbye): its connections are gone.
    NodeGone {
        /// Its number.
        node: u32,
    },
    /// A call to answer with [`Cluster::reply`].
    Call {
        /// The calling node.
        origin: u32,
        /// The call's id there.
        id: u64,
        /// What is asked (JSON).
        payload: String,
    },
}

/// Why a call got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the node serving the user did not answer within {0:?}")]
pub struct NoAnswer(pub Duration);

/// Where a user's frames are handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    /// Here (also when Redis cannot be asked).
    Here,
    /// On the node with this number.
    Node(u32),
}

/// This node's link to the cluster.
pub struct Cluster {
    node: u32,
    lease: Duration,
    /// The Redis instances, in the order of the URLs (the first holds what belongs to the whole cluster).
    shards: Vec<Shard>,
    hub: Hub,
    scripts: Scripts,
    /// User → connections of this node that need the user's channel.
    interest: Mutex<HashMap<String, usize>>,
    /// Users whose channel is subscribed (changed one at a time).
    subscribed: tokio::sync::Mutex<HashSet<String>>,
    /// With several shards: the shard each connection of another node talks to this one through (its
    /// user's), so that what this node sends it keeps its order with its user's channel.
    conn_shards: Mutex<HashMap<ConnId, usize>>,
    /// Calls waiting for their answer, by id.
    calls: Mutex<HashMap<u64, oneshot::Sender<String>>>,
    /// The id of the next call.
    next_call: AtomicU64,
    /// Connections waiting for their first frames from another node.
    pending: Mutex<HashMap<ConnId, oneshot::Sender<Vec<Arc<str>>>>>,
    /// Users this node owns, and when one of their frames was last handled.
    owned: Mutex<HashMap<String, Instant>>,
    /// The other nodes seen in the member set at the last sweep.
    members: Mutex<HashSet<u32>>,
    /// Stops the heartbeat.
    stop: CancellationToken,
}

struct Scripts {
    owner: Script,
    renew: Script,
    release: Script,
    take_slot: Script,
    give_slot: Script,
    take_turns: Script,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

impl Cluster {
    /// Connects to every Redis, takes a node number, builds this node's hub with it (`make_hub`) and starts
    /// the cluster's tasks until [`shutdown`](Self::shutdown). Returns the link and what other nodes forward
    /// to this one as owner.
    pub async fn connect(
        config: &RedisConfig,
        make_hub: impl FnOnce(u32) -> Hub,
    ) -> anyhow::Result<(Arc<Self>, mpsc::UnboundedReceiver<Forwarded>)> {
        let urls = config.urls();
        anyhow::ensure!(!urls.is_empty(), "REDIS_URL is not set");
        let mut shards = Vec::with_capacity(urls.len());
        let mut feeds = Vec::with_capacity(urls.len());
        for (index, url) in urls.iter().enumerate() {
            let (shard, feed) = Shard::connect(index, urls.len(), url).await?;
            shards.push(shard);
            feeds.push(feed);
        }
        let count: u64 = redis::cmd("INCR")
            .arg(format!("{PREFIX}nodes"))
            .query_async(&mut shards[0].commands.clone())
            .await
            .context("Redis INCR")?;
        // Node numbers wrap within the bits a connection id gives them; 0 is the single-node number.
        let node = u32::try_from(count % ((1 << 23) - 1)).unwrap_or(1) + 1;
        let hub = make_hub(node);
        let (forward_tx, forward_rx) = mpsc::unbounded_channel();
        let cluster = Arc::new(Self {
            node,
            lease: config.lease,
            shards,
            hub,
            scripts: Scripts {
                owner: Script::new(OWNER),
                renew: Script::new(RENEW),
                release: Script::new(RELEASE),
                take_slot: Script::new(TAKE_SLOT),
                give_slot: Script::new(GIVE_SLOT),
                take_turns: Script::new(TAKE_TURNS),
            },
            interest: Mutex::default(),
            subscribed: tokio::sync::Mutex::default(),
            conn_shards: Mutex::default(),
            pending: Mutex::default(),
            calls: Mutex::default(),
            next_call: AtomicU64::new(1),
            owned: Mutex::default(),
            members: Mutex::default(),
            stop: CancellationToken::new(),
        });
        for shard in &cluster.shards {
            cluster
                .beat(shard)
                .await
                .with_context(|| format!("Redis heartbeat {}", shard.label()))?;
            cluster
                .subscribe_own_channels(shard)
                .await
                .with_context(|| format!("Redis SUBSCRIBE {}", shard.label()))?;
        }
        redis::cmd("SADD")
            .arg(format!("{PREFIX}members"))
            .arg(node)
            .query_async::<()>(&mut cluster.home().commands.clone())
            .await
            .context("Redis SADD")?;
        for (index, feed) in feeds.into_iter().enumerate() {
            tokio::spawn(bus::publisher(
                cluster.shards[index].commands.clone(),
                feed.publishes,
                Arc::downgrade(&cluster),
                index,
            ));
            tokio::spawn(inbox::run(
                Arc::clone(&cluster),
                index,
                feed.pushes,
                forward_tx.clone(),
            ));
        }
        tokio::spawn(Arc::clone(&cluster).heartbeat(forward_tx));
        tracing::info!(
            node,
            shards = cluster.shards.len(),
            "cluster mode: joined through Redis"
        );
        Ok((cluster, forward_rx))
    }

    /// This node's number.
    pub fn node(&self) -> u32 {
        self.node
    }

    /// The hub of this node.
    pub fn hub(&self) -> &Hub {
        &self.hub
    }

    /// The shard of what belongs to the whole cluster.
    fn home(&self) -> &Shard {
        &self.shards[0]
    }

    /// The shard of `user_id`.
    fn shard_of(&self, user_id: &str) -> &Shard {
        &self.shards[shard::place(user_id, self.shards.len())]
    }

    /// The shard connection `conn` of another node talks to this one through.
    fn shard_of_conn(&self, conn: ConnId) -> &Shard {
        if self.shards.len() == 1 {
            return self.home();
        }
        let index = lock(&self.conn_shards).get(&conn).copied().unwrap_or(0);
        &self.shards[index]
    }

    /// Notes which shard connection `conn` of another node came through (kept until it detaches).
    fn learn_conn(&self, conn: ConnId, shard: usize) {
        if self.shards.len() > 1 {
            lock(&self.conn_shards).insert(conn, shard);
        }
    }

    /// Forgets a connection of another node that closed.
    fn forget_conn(&self, conn: ConnId) {
        if self.shards.len() > 1 {
            lock(&self.conn_shards).remove(&conn);
        }
    }

    /// Whether every Redis answers (the readiness check).
    pub async fn ping(&self) -> Result<(), String> {
        for shard in &self.shards {
            let answer = redis::cmd("PING")
                .query_async::<String>(&mut shard.commands.clone())
                .await;
            if let Err(err) = answer {
                shard.failed(&err);
                return Err(if shard.label().is_empty() {
                    "Redis unreachable".to_string()
                } else {
                    format!("Redis {} unreachable", shard.label())
                });
            }
            shard.recovered();
        }
        Ok(())
    }

    /// Subscribes to the channels every node needs on `shard`: its own, and on the first the admins'.
    async fn subscribe_own_channels(&self, shard: &Shard) -> redis::RedisResult<()> {
        let mut conn = shard.subscriber.clone();
        conn.subscribe(wire::node_channel(self.node)).await?;
        if shard.index == 0 {
            conn.subscribe(wire::admins_channel()).await?;
        }
        Ok(())
    }

    /// Publishes `envelope` on `channel` of `shard` (in order with every other publish there).
    fn send(&self, shard: &Shard, channel: String, envelope: Envelope) {
        let message = Message {
            origin: self.node,
            envelope,
        };
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(message.encode());
        shard.queue(publish);
    }

    /// Publishes `envelope` on `user_id`'s channel.
    fn send_to_user(&self, user_id: &str, envelope: Envelope) {
        self.send(
            self.shard_of(user_id),
            wire::user_channel(user_id),
            envelope,
        );
    }

    /// Publishes `envelope` on the admins' channel.
    fn send_to_admins(&self, envelope: Envelope) {
        self.send(self.home(), wire::admins_channel(), envelope);
    }

    /// Sends `envelope`, meant for connection `conn` of another node, to that node.
    fn send_to_conn(&self, conn: ConnId, envelope: Envelope) {
        self.send(
            self.shard_of_conn(conn),
            wire::node_channel(crate::hub::node_of(conn)),
            envelope,
        );
    }

    /// Records that this node runs a turn of `session_id` (`record` says which), so that another node
    /// ends it on the devices if this one dies before it does.
    pub fn turn_started(&self, session_id: &str, record: &str) {
        let mut command = redis::cmd("HSET");
        command.arg(self.turns_key()).arg(session_id).arg(record);
        self.home().queue(command);
    }

    /// Records that the turn of `session_id` ended.
    pub fn turn_ended(&self, session_id: &str) {
        let mut command = redis::cmd("HDEL");
        command.arg(self.turns_key()).arg(session_id);
        self.home().queue(command);
    }

    fn turns_key(&self) -> String {
        format!("{PREFIX}t:{}", self.node)
    }

    /// Takes the running turns of nodes whose heartbeat expired (each dead node's turns go to exactly one
    /// live node) and hands them to the owner side as [`Forwarded::Orphan`]; nodes gone from the member set
    /// since the last sweep are handed over as [`Forwarded::NodeGone`], so that what this node kept for
    /// their connections goes.
    async fn sweep_dead_nodes(&self, forward: &mpsc::UnboundedSender<Forwarded>) {
        let home = self.home();
        let mut conn = home.commands.clone();
        let members: Vec<u32> = match redis::cmd("SMEMBERS")
            .arg(format!("{PREFIX}members"))
            .query_async(&mut conn)
            .await
        {
            Ok(members) => members,
            Err(err) => return home.failed(&err),
        };
        let others: HashSet<u32> = members.into_iter().filter(|n| *n != self.node).collect();
        let gone: Vec<u32> = {
            let mut known = lock(&self.members);
            let gone = known.difference(&others).copied().collect();
            known.clone_from(&others);
            gone
        };
        for node in gone {
            tracing::info!(node, "node left the cluster");
            lock(&self.conn_shards).retain(|conn, _| crate::hub::node_of(*conn) != node);
            let _ = forward.send(Forwarded::NodeGone { node });
        }
        for node in others {
            let taken: Result<Vec<String>, _> = self
                .scripts
                .take_turns
                .key(format!("{PREFIX}h:{node}"))
                .key(format!("{PREFIX}t:{node}"))
                .key(format!("{PREFIX}members"))
                .arg(node)
                .invoke_async(&mut conn)
                .await;
            match taken {
                Ok(fields) => {
                    for pair in fields.chunks_exact(2) {
                        tracing::warn!(node, session_id = %pair[0], "ending a turn of a dead node");
                        let _ = forward.send(Forwarded::Orphan {
                            session_id: pair[0].clone(),
                            record: pair[1].clone(),
                        });
                    }
                }
                Err(err) => return home.failed(&err),
            }
        }
    }

    /// Which node handles `user_id`'s frames: the holder of the user's lease, or this node when it takes
    /// the lease (nobody holds it, or its holder is dead) or the user's Redis cannot be asked.
    pub async fn owner(&self, user_id: &str) -> Owner {
        let shard = self.shard_of(user_id);
        if !shard.available() {
            return Owner::Here;
        }
        let answer: Result<String, _> = self
            .scripts
            .owner
            .key(format!("{PREFIX}o:{user_id}"))
            .arg(self.node)
            .arg(lease_ms(self.lease))
            .arg(format!("{PREFIX}h:"))
            .invoke_async(&mut shard.commands.clone())
            .await;
        match answer {
            Ok(owner) => {
                shard.recovered();
                match owner.parse::<u32>() {
                    Ok(node) if node != self.node => Owner::Node(node),
                    _ => {
                        lock(&self.owned).insert(user_id.to_string(), Instant::now());
                        Owner::Here
                    }
                }
            }
            Err(err) => {
                shard.failed(&err);
                Owner::Here
            }
        }
    }

    /// Takes one of `user_id`'s `limit` connection slots across the cluster, given back when the guard
    /// drops; `None` when they are all in use. Without Redis the node's own count decides alone.
    pub async fn take_slot(self: &Arc<Self>, user_id: &str, limit: usize) -> Option<ClusterSlot> {
        let slot = |taken| ClusterSlot {
            cluster: Arc::clone(self),
            user_id: user_id.to_string(),
            taken,
        };
        let shard = self.shard_of(user_id);
        if !shard.available() {
            return Some(slot(false));
        }
        let taken: Result<i64, _> = self
            .scripts
            .take_slot
            .key(format!("{PREFIX}c:{user_id}"))
            .arg(self.node)
            .arg(limit)
            .arg(format!("{PREFIX}h:"))
            .invoke_async(&mut shard.commands.clone())
            .await;
        match taken {
            Ok(1) => Some(slot(true)),
            Ok(_) => None,
            Err(err) => {
                shard.failed(&err);
                Some(slot(false))
            }
        }
    }

    /// Gives back a slot taken by [`take_slot`](Self::take_slot).
    fn give_slot(self: &Arc<Self>, user_id: &str) {
        let cluster = Arc::clone(self);
        let user_id = user_id.to_string();
        tokio::spawn(async move {
            let shard = cluster.shard_of(&user_id);
            let given: Result<i64, _> = cluster
                .scripts
                .give_slot
                .key(format!("{PREFIX}c:{user_id}"))
                .arg(cluster.node)
                .invoke_async(&mut shard.commands.clone())
                .await;
            if let Err(err) = given {
                shard.failed(&err);
            }
        });
    }

    /// Subscribes this node to `user_id`'s channel while the returned guard lives (one subscription per
    /// node, however many connections need it). Returns once Redis confirmed it, or at once without Redis.
    pub async fn interest(self: &Arc<Self>, user_id: &str) -> Interest {
        *lock(&self.interest).entry(user_id.to_string()).or_insert(0) += 1;
        self.sync_subscription(user_id).await;
        Interest {
            cluster: Arc::clone(self),
            user_id: user_id.to_string(),
        }
    }

    /// Brings the subscription to `user_id`'s channel in line with the interest in it.
    async fn sync_subscription(&self, user_id: &str) {
        let mut subscribed = self.subscribed.lock().await;
        let wanted = lock(&self.interest).contains_key(user_id);
        let shard = self.shard_of(user_id);
        if wanted == subscribed.contains(user_id) || !shard.available() {
            return;
        }
        let mut conn = shard.subscriber.clone();
        let channel = wire::user_channel(user_id);
        let done = if wanted {
            conn.subscribe(channel).await
        } else {
            conn.unsubscribe(channel).await
        };
        match done {
            Ok(()) if wanted => {
                subscribed.insert(user_id.to_string());
            }
            Ok(()) => {
                subscribed.remove(user_id);
            }
            Err(err) => shard.failed(&err),
        }
    }

    /// Asks `owner` for the first frames of connection `conn`; they come back through [`Self::first_frames`]'s
    /// receiver, which the caller takes before asking.
    pub fn attach(&self, owner: u32, conn: ConnId, caller: Caller, last_seq: Option<i64>) {
        self.send(
            self.shard_of(&caller.user_id),
            wire::node_channel(owner),
            Envelope::ToOwner(Forwarded::Attach {
                conn,
                caller,
                last_seq,
            }),
        );
    }

    /// A receiver of the first frames of `conn`, sent by its user's owner.
    pub fn first_frames(&self, conn: ConnId) -> oneshot::Receiver<Vec<Arc<str>>> {
        let (tx, rx) = oneshot::channel();
        lock(&self.pending).insert(conn, tx);
        rx
    }

    /// Stops waiting for the first frames of `conn`.
    pub fn forget_first_frames(&self, conn: ConnId) {
        lock(&self.pending).remove(&conn);
    }

    /// Forwards a frame of connection `conn` (of `caller`) to `owner`.
    pub fn forward(&self, owner: u32, conn: ConnId, caller: Caller, text: String) {
        self.send(
            self.shard_of(&caller.user_id),
            wire::node_channel(owner),
            Envelope::ToOwner(Forwarded::Frame { conn, caller, text }),
        );
    }

    /// Asks `owner` to run `payload` and waits up to `wait` for its answer.
    pub async fn call(
        &self,
        owner: u32,
        payload: String,
        wait: Duration,
    ) -> Result<String, NoAnswer> {
        let id = self.next_call.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        lock(&self.calls).insert(id, tx);
        self.send(
            self.home(),
            wire::node_channel(owner),
            Envelope::ToOwner(Forwarded::Call {
                origin: self.node,
                id,
                payload,
            }),
        );
        let answer = tokio::time::timeout(wait, rx).await;
        lock(&self.calls).remove(&id);
        match answer {
            Ok(Ok(answer)) => Ok(answer),
            _ => Err(NoAnswer(wait)),
        }
    }

    /// Answers call `id` of node `origin`.
    pub fn reply(&self, origin: u32, id: u64, payload: String) {
        self.send(
            self.home(),
            wire::node_channel(origin),
            Envelope::Reply { id, payload },
        );
    }

    /// Tells `owner` that connection `conn` (of `user_id`) closed.
    pub fn detach(&self, owner: u32, conn: ConnId, user_id: &str) {
        self.send(
            self.shard_of(user_id),
            wire::node_channel(owner),
            Envelope::ToOwner(Forwarded::Detach { conn }),
        );
    }

    /// Writes this node's heartbeat key on `shard`.
    async fn beat(&self, shard: &Shard) -> redis::RedisResult<()> {
        redis::cmd("SET")
            .arg(format!("{PREFIX}h:{}", self.node))
            .arg(1)
            .arg("PX")
            .arg(lease_ms(self.lease))
            .query_async::<()>(&mut shard.commands.clone())
            .await
    }

    /// Every third of the lease: the heartbeat on every shard, the leases of the users still connected
    /// (anywhere that forwards here) or active within the lease, the release of the others, the turns of
    /// dead nodes, and subscriptions that a Redis outage left behind (all of a shard's again after it
    /// failed), until [`shutdown`](Self::shutdown).
    async fn heartbeat(self: Arc<Self>, forward: mpsc::UnboundedSender<Forwarded>) {
        let mut tick = tokio::time::interval(self.lease / 3);
        loop {
            tokio::select! {
                () = self.stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            for shard in &self.shards {
                match self.beat(shard).await {
                    Ok(()) => shard.recovered(),
                    Err(err) => shard.failed(&err),
                }
            }
            self.renew_leases().await;
            if self.home().available() {
                self.sweep_dead_nodes(&forward).await;
            }
            for shard in self.shards.iter().filter(|s| s.available()) {
                if !shard.take_resubscribe() {
                    continue;
                }
                // Redis may have restarted or the subscriber connection been replaced: subscribing again
                // to a channel already subscribed changes nothing, to one lost restores it.
                let count = self.shards.len();
                self.subscribed
                    .lock()
                    .await
                    .retain(|user| shard::place(user, count) != shard.index);
                if let Err(err) = self.subscribe_own_channels(shard).await {
                    shard.failed(&err);
                    continue;
                }
                tracing::info!(shard = shard.label(), "cluster channels subscribed again");
            }
            let users: Vec<String> = lock(&self.interest).keys().cloned().collect();
            for user in users {
                self.sync_subscription(&user).await;
            }
        }
    }

    /// Renews the leases of the users to keep and releases the others, shard by shard.
    async fn renew_leases(&self) {
        let count = self.shards.len();
        let mut keep = vec![Vec::new(); count];
        let mut drop = vec![Vec::new(); count];
        for (user, last) in lock(&self.owned).iter() {
            let index = shard::place(user, count);
            if last.elapsed() < self.lease || self.hub.user_is_connected(user) {
                keep[index].push(user.clone());
            } else {
                drop[index].push(user.clone());
            }
        }
        for shard in self.shards.iter().filter(|s| s.available()) {
            let drop = &drop[shard.index];
            if !drop.is_empty() && self.release(shard, drop).await.is_ok() {
                let mut owned = lock(&self.owned);
                for user in drop {
                    owned.remove(user);
                }
            }
            for chunk in keep[shard.index].chunks(256) {
                let mut renew = self.scripts.renew.prepare_invoke();
                for user in chunk {
                    renew.key(format!("{PREFIX}o:{user}"));
                }
                renew.arg(self.node).arg(lease_ms(self.lease));
                match renew
                    .invoke_async::<Vec<usize>>(&mut shard.commands.clone())
                    .await
                {
                    Ok(lost) => {
                        let mut owned = lock(&self.owned);
                        for index in lost {
                            if let Some(user) = index.checked_sub(1).and_then(|i| chunk.get(i)) {
                                tracing::info!(user_id = %user, "lease taken by another node");
                                owned.remove(user);
                            }
                        }
                    }
                    Err(err) => {
                        shard.failed(&err);
                        break;
                    }
                }
            }
        }
    }

    /// Gives back the leases of `users` (all on `shard`) that this node holds.
    async fn release(&self, shard: &Shard, users: &[String]) -> redis::RedisResult<()> {
        for chunk in users.chunks(256) {
            let mut release = self.scripts.release.prepare_invoke();
            for user in chunk {
                release.key(format!("{PREFIX}o:{user}"));
            }
            release.arg(self.node);
            release
                .invoke_async::<()>(&mut shard.commands.clone())
                .await?;
        }
        Ok(())
    }

    /// Leaves the cluster (graceful shutdown, once the connections are closed): stops the heartbeat and
    /// gives back this node's leases and heartbeat keys, so other nodes take its users over at once.
    pub async fn shutdown(&self) {
        self.stop.cancel();
        let count = self.shards.len();
        let mut users = vec![Vec::new(); count];
        for (user, _) in lock(&self.owned).drain() {
            users[shard::place(&user, count)].push(user);
        }
        for shard in &self.shards {
            let _ = self.release(shard, &users[shard.index]).await;
            let _ = redis::cmd("DEL")
                .arg(format!("{PREFIX}h:{}", self.node))
                .query_async::<()>(&mut shard.commands.clone())
                .await;
        }
        // Turns still recorded ended with the drain (or were cut by its deadline and stored as partial).
        let mut home = self.home().commands.clone();
        let _ = redis::cmd("DEL")
            .arg(self.turns_key())
            .query_async::<()>(&mut home)
            .await;
        let _ = redis::cmd("SREM")
            .arg(format!("{PREFIX}members"))
            .arg(self.node)
            .query_async::<()>(&mut home)
            .await;
        tracing::info!(node = self.node, "cluster mode: left");
    }
}

/// A connection slot of the cluster-wide per-user limit, given back on drop.
pub struct ClusterSlot {
    cluster: Arc<Cluster>,
    user_id: String,
    taken: bool,
}

impl Drop for ClusterSlot {
    fn drop(&mut self) {
        if self.taken {
            self.cluster.give_slot(&self.user_id);
        }
    }
}

/// A subscription kept while a connection needs it.
pub struct Interest {
    cluster: Arc<Cluster>,
    user_id: String,
}

impl Drop for Interest {
    fn drop(&mut self) {
        let gone = count_down(&mut lock(&self.cluster.interest), self.user_id.as_str());
        if gone {
            let cluster = Arc::clone(&self.cluster);
            let user_id = std::mem::take(&mut self.user_id);
            tokio::spawn(async move { cluster.sync_subscription(&user_id).await });
        }
    }
}

fn lease_ms(lease: Duration) -> u64 {
    u64::try_from(lease.as_millis()).unwrap_or(u64::MAX)
}
