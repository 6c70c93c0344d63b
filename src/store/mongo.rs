//! The MongoDB store (also runs on FerretDB): the Go service's `chat.sessions` documents (reference 4.2)
//! with additive fields, plus three helper collections named after the sessions collection:
//! `<c>_active` (one lock document per user: at most one active session without transactions),
//! `<c>_usage` (tokens per user per UTC day), `<c>_meta` (key rotation checkpoint and key canary), `<c>_audit` (the
//! audit log of administrator actions, listed newest first by `(ts, _id)`) and `<c>_seqmarks` (each
//! session's seq high-water mark, `{_id: sessionId, uid, mark}`: a document of its own, because FerretDB
//! applies updates as read-modify-write of the whole document and a mark written into the session
//! document could undo a concurrent append).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::TryStreamExt;
use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::event::EventHandler;
use mongodb::event::command::CommandEvent;
use mongodb::options::{ClientOptions, IndexOptions};
use mongodb::{Client, Collection, IndexModel};
use secrecy::ExposeSecret;
use time::{Date, OffsetDateTime};
use tokio_util::sync::CancellationToken;

use super::audit::{AuditCursor, audit_limit, new_audit_id, next_audit_cursor};
use super::config::StoreConfig;
use super::crypto::{Binding, Keyring, StoredKind};
use super::error::StoreError;
use super::keycheck::{
    KEY_CHECK_MESSAGES, KeyProbe, KeyReport, mark_unreadable, open_content, open_name, seal_canary,
};
use super::query::{Cursor, MAX_LIMIT, SortField, SortOrder, SortValue, StatusFilter, next_cursor};
use super::records::*;
use super::runner::{Budget, Runner};
use super::slots::{HeldSlot, SessionSlots};
use super::{
    AuditKind, AuditPage, AuditQuery, AuditRecord, SessionPage, SessionQuery, Store, StoreKind,
    StoredAudit, date_day, day_date, from_ms, new_session_id, new_share_token, to_ms, utc_day,
};
use crate::metrics::Metrics;

/// Marks documents written by this server (`schema: 2`); documents without it were written by the Go
/// service.
const SCHEMA: &str = "schema";

const SCHEMA_VERSION: i32 = 2;
const ROTATION_ID: &str = "rotation";
/// `_id` of the key canary in `<c>_meta`: `{_id, value}` with `value` a ciphertext under the key that was
/// active when it was written.
const CANARY_ID: &str = "canary";
/// Documents per batch of the message count back-fill (each read with its messages).
const BACKFILL_BATCH: usize = 200;

/// The MongoDB store.
pub struct MongoStore {
    sessions: Collection<Document>,
    locks: Collection<Document>,
    usage: Collection<Document>,
    meta: Collection<Document>,
    audit: Collection<Document>,
    seq_marks: Collection<Document>,
    keyring: Arc<Keyring>,
    runner: Runner,
    /// One writer at a time per session, and what is known of the sessions written or read recently.
    slots: SessionSlots<Cached>,
    /// The active session of users seen recently (user id to session id), kept by this store's writes.
    actives: std::sync::Mutex<HashMap<String, String>>,
}

/// Messages of a cached session kept in memory for the model's history window.
const WINDOW: usize = 64;
/// Sessions whose state stays cached when not in use.
const CACHED_SESSIONS: usize = 4096;

/// What the store knows of a session whose slot it holds: read once, then changed by each write through
/// the slot, so a write is decided without reading the document first and is addressed by `_id` alone.
struct Cached {
    session: SessionRecord,
    /// Sum of the response times behind `respCount` (`respTotalMs`).
    resp_total_ms: i64,
    /// Every stored message id and its index in `msgs` (appends are idempotent by id; a checkpointed
    /// answer is replaced in place).
    ids: HashMap<String, usize>,
    /// Length of the `msgs` array.
    len: usize,
    /// The last [`WINDOW`] messages, oldest first.
    window: VecDeque<MessageRecord>,
}

impl Cached {
    /// Records a message stored through the slot.
    fn push(&mut self, message: &MessageRecord) {
        self.ids.insert(message.id.clone(), self.len);
        self.len += 1;
        self.window.push_back(message.clone());
        if self.window.len() > WINDOW {
            self.window.pop_front();
        }
        let session = &mut self.session;
        session.message_count += 1;
        session.last_seq = session.last_seq.max(message.seq);
        session.seq_mark = session.seq_mark.max(session.last_seq);
        session.last_activity = session.last_activity.max(Some(message.timestamp));
    }

    /// Records a message replaced in place (a checkpointed answer).
    fn replace(&mut self, message: &MessageRecord) {
        if let Some(held) = self.window.iter_mut().find(|m| m.id == message.id) {
            *held = message.clone();
        }
        let session = &mut self.session;
        session.last_seq = session.last_seq.max(message.seq);
        session.seq_mark = session.seq_mark.max(session.last_seq);
        session.last_activity = session.last_activity.max(Some(message.timestamp));
    }

    /// Stores `message` through `update`: appended, or replaced in place when its id is stored (a
    /// checkpoint of it); `None` when it is new and the session has ended.
    fn put(
        &self,
        update: &mut SessionUpdate,
        entry: &Document,
        message: &MessageRecord,
    ) -> Option<Put> {
        match self.ids.get(&message.id) {
            Some(index) => {
                update.replace(*index, entry, message);
                Some(Put::Replaced)
            }
            None if self.session.is_active() => {
                update.append(entry, message);
                Some(Put::Appended)
            }
            None => None,
        }
    }

    /// Records what [`put`](Self::put) sent.
    fn record(&mut self, put: Put, message: &MessageRecord) {
        match put {
            Put::Appended => self.push(message),
            Put::Replaced => self.replace(message),
        }
    }

    /// Adds one turn's figures; returns the new average response time.
    fn add_usage(&mut self, usage: &TurnUsage) -> i64 {
        let session = &mut self.session;
        session.total_tokens += usage.tokens;
        session.max_response_ms = session.max_response_ms.max(usage.response_ms);
        session.response_count += 1;
        self.resp_total_ms += usage.response_ms;
        session.avg_response_ms = self.resp_total_ms / session.response_count;
        session.avg_response_ms
    }

    /// The last `limit` messages, when memory holds them.
    fn recent(&self, limit: usize) -> Option<Vec<MessageRecord>> {
        let all_held = self.window.len() as i64 >= self.session.message_count;
        (self.window.len() >= limit || all_held).then(|| {
            let skip = self.window.len().saturating_sub(limit);
            self.window.iter().skip(skip).cloned().collect()
        })
    }
}

/// How [`Cached::put`] stores a message.
#[derive(Clone, Copy)]
enum Put {
    Appended,
    Replaced,
}

/// Runs one attempt of a write through `held`; a failed attempt (whose outcome may be unknown, such as a
/// timeout after the server applied it) drops the cached state, so the next attempt reads the session again.
async fn attempt<T>(
    held: &HeldSlot<Cached>,
    op: impl Future<Output = Result<T, StoreError>>,
) -> Result<T, StoreError> {
    let result = op.await;
    if result.is_err() {
        held.forget();
    }
    result
}

impl std::fmt::Debug for MongoStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MongoStore")
            .field("collection", &self.sessions.namespace().to_string())
            .field("keyring", &self.keyring)
            .finish()
    }
}

fn ms_date(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

fn dt(t: OffsetDateTime) -> DateTime {
    DateTime::from_millis(to_ms(t))
}

fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == 11000,
        ErrorKind::Command(c) => c.code == 11000,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == 11000)),
        _ => false,
    }
}

fn get_i64(doc: &Document, key: &str) -> Option<i64> {
    match doc.get(key)? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    }
}

fn get_str(doc: &Document, key: &str) -> Option<String> {
    match doc.get(key)? {
        Bson::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// How often a conditional assistance update is retried when the session changed under it.
const CAS_ATTEMPTS: usize = 8;

/// The assisting admin a session document names.
fn doc_assistant(doc: &Document) -> Option<AssistingAdmin> {
    get_str(doc, "assistingAdminId").map(|id| AssistingAdmin {
        id,
        name: get_str(doc, "assistingAdminName").unwrap_or_default(),
    })
}

fn get_date(doc: &Document, key: &str) -> Option<OffsetDateTime> {
    match doc.get(key)? {
        Bson::DateTime(d) => Some(from_ms(d.timestamp_millis())),
        _ => None,
    }
}

fn get_bool(doc: &Document, key: &str) -> bool {
    matches!(doc.get(key), Some(Bson::Boolean(true)))
}

/// The session in `doc` (its `msgs` are not read). `msgs_len` is the array length when loaded, for
/// documents written by the Go service, which have no stored count.
fn session_from_doc(doc: &Document, keyring: &Keyring) -> Result<SessionRecord, StoreError> {
    let id = match doc.get("_id") {
        Some(Bson::String(s)) => s.clone(),
        Some(Bson::ObjectId(o)) => o.to_hex(),
        _ => return Err(StoreError::Corrupt("session without string _id".into())),
    };
    let msgs_len = match doc.get("msgs") {
        Some(Bson::Array(a)) => Some(a.len() as i64),
        _ => None,
    };
    let name = match doc.get("nm") {
        Some(Bson::String(s)) => open_name(keyring, s, &id),
        _ => Some(String::new()),
    };
    let message_count = msgs_len.or_else(|| get_i64(doc, "msgCount")).unwrap_or(0);
    let last_seq = get_i64(doc, "lastSeq")
        .or(msgs_len)
        .and_then(|v| u64::try_from(v).ok())
        .unwrap_or(0);
    let response_count = get_i64(doc, "respCount").unwrap_or(0);
    let avg = match (response_count, get_i64(doc, "respTotalMs")) {
        (n, Some(total)) if n > 0 => total / n,
        _ => get_i64(doc, "avgRespTime").unwrap_or(0),
    };
    Ok(SessionRecord {
        user_id: get_str(doc, "uid").unwrap_or_default(),
        name_unreadable: name.is_none(),
        name: name.unwrap_or_default(),
        model_id: get_str(doc, "modelId").unwrap_or_default(),
        started_at: get_date(doc, "ts").unwrap_or(OffsetDateTime::UNIX_EPOCH),
        ended_at: get_date(doc, "endTs"),
        duration_secs: get_i64(doc, "dur").unwrap_or(0),
        admin_assisted: get_bool(doc, "adminAssisted"),
        assisting_admin_id: get_str(doc, "assistingAdminId"),
        assisting_admin_name: get_str(doc, "assistingAdminName"),
        help_requested: get_bool(doc, "helpRequested"),
        total_tokens: get_i64(doc, "totalTokens").unwrap_or(0),
        last_activity: get_date(doc, "lastActivity"),
        max_response_ms: get_i64(doc, "maxRespTime").unwrap_or(0),
        avg_response_ms: avg,
        response_count,
        share_token: get_str(doc, "shareToken"),
        message_count,
        last_seq,
        // Filled from `<c>_seqmarks` by the reads that feed live sessions (`with_seq_mark`).
        seq_mark: last_seq,
        id,
    })
}

/// Message id and seq of the `index`-th message: stored, or derived for Go messages.
fn message_identity(doc: &Document, index: usize) -> (String, u64) {
    let id = get_str(doc, "id").unwrap_or_else(|| format!("legacy-{index}"));
    let seq = get_i64(doc, "seq")
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(index as u64 + 1);
    (id, seq)
}

fn messages_from_doc(
    doc: &Document,
    session: &str,
    keyring: &Keyring,
    after_seq: Option<u64>,
) -> Result<Vec<MessageRecord>, StoreError> {
    let Some(Bson::Array(msgs)) = doc.get("msgs") else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(msgs.len());
    for (index, m) in msgs.iter().enumerate() {
        let Bson::Document(m) = m else { continue };
        let (id, seq) = message_identity(m, index);
        if after_seq.is_some_and(|after| seq <= after) {
            continue;
        }
        let stored = match m.get("content") {
            Some(Bson::String(s)) => s.as_str(),
            _ => "",
        };
        let content = open_content(keyring, stored, session, &id);
        let mut metadata = match m.get("meta") {
            Some(Bson::Document(meta)) => meta
                .iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect(),
            _ => BTreeMap::new(),
        };
        if content.is_none() {
            mark_unreadable(&mut metadata);
        }
        out.push(MessageRecord {
            id,
            seq,
            content: content.unwrap_or_default(),
            timestamp: get_date(m, "ts").unwrap_or(OffsetDateTime::UNIX_EPOCH),
            sender: get_str(m, "sender").unwrap_or_default(),
            file_id: get_str(m, "fileId"),
            file_url: get_str(m, "fileUrl"),
            metadata,
            client_msg_id: get_str(m, "clientMsgId"),
            model_id: get_str(m, "modelId"),
            partial: get_bool(m, "partial"),
        });
    }
    Ok(out)
}

fn message_doc(message: &MessageRecord, content: String) -> Document {
    let mut d = doc! {
        "content": content,
        "ts": dt(message.timestamp),
        "sender": &message.sender,
    };
    if let Some(f) = &message.file_id {
        d.insert("fileId", f);
    }
    if let Some(f) = &message.file_url {
        d.insert("fileUrl", f);
    }
    if !message.metadata.is_empty() {
        let meta: Document = message
            .metadata
            .iter()
            .map(|(k, v)| (k.clone(), Bson::String(v.clone())))
            .collect();
        d.insert("meta", meta);
    }
    d.insert("id", &message.id);
    d.insert("seq", i64::try_from(message.seq).unwrap_or(i64::MAX));
    if let Some(c) = &message.client_msg_id {
        d.insert("clientMsgId", c);
    }
    if let Some(m) = &message.model_id {
        d.insert("modelId", m);
    }
    if message.partial {
        d.insert("partial", true);
    }
    d
}

/// One update of a session document, built from its parts: a stored message and a turn's figures go out
/// together, addressed by `_id` alone.
#[derive(Default)]
struct SessionUpdate {
    push: Option<Document>,
    inc: Document,
    max: Document,
    set: Document,
}

impl SessionUpdate {
    /// Appends `entry` (the stored form of `message`): pushed, counted, last seq and activity raised.
    fn append(&mut self, entry: &Document, message: &MessageRecord) {
        self.push = Some(doc! { "msgs": entry.clone() });
        self.inc.insert("msgCount", 1i64);
        self.max
            .insert("lastSeq", i64::try_from(message.seq).unwrap_or(i64::MAX));
        self.max.insert("lastActivity", dt(message.timestamp));
    }

    /// Replaces the message at `index` of `msgs` with `entry` (the stored form of `message`).
    fn replace(&mut self, index: usize, entry: &Document, message: &MessageRecord) {
        self.set.insert(format!("msgs.{index}"), entry.clone());
        self.max
            .insert("lastSeq", i64::try_from(message.seq).unwrap_or(i64::MAX));
        self.max.insert("lastActivity", dt(message.timestamp));
    }

    /// Adds a turn's tokens and response time; `average` is the new average response time (kept for the
    /// Go service's readers; this server reads `respTotalMs / respCount`).
    fn usage(&mut self, usage: &TurnUsage, average: i64) {
        self.inc.insert("totalTokens", usage.tokens);
        self.inc.insert("respCount", 1i64);
        self.inc.insert("respTotalMs", usage.response_ms);
        self.max.insert("maxRespTime", usage.response_ms);
        self.set.insert("avgRespTime", average);
    }

    fn is_empty(&self) -> bool {
        self.push.is_none() && self.inc.is_empty() && self.max.is_empty() && self.set.is_empty()
    }

    fn build(self) -> Document {
        let mut update = Document::new();
        if let Some(push) = self.push {
            update.insert("$push", push);
        }
        if !self.inc.is_empty() {
            update.insert("$inc", self.inc);
        }
        if !self.max.is_empty() {
            update.insert("$max", self.max);
        }
        let mut set = self.set;
        set.insert("_mt", now_date());
        update.insert("$set", set);
        update
    }
}

fn new_session_doc(id: &str, user_id: &str, model_id: &str, now: DateTime) -> Document {
    doc! {
        "_id": id,
        "uid": user_id,
        "nm": "",
        "modelId": model_id,
        "msgs": [],
        "ts": now,
        "dur": 0i64,
        "adminAssisted": false,
        "helpRequested": false,
        "totalTokens": 0i64,
        "maxRespTime": 0i64,
        "avgRespTime": 0i64,
        "msgCount": 0i64,
        "lastSeq": 0i64,
        "respCount": 0i64,
        "respTotalMs": 0i64,
        SCHEMA: SCHEMA_VERSION,
        "_ts": now,
        "_mt": now,
    }
}

/// The document of an audit entry in `<c>_audit`.
fn audit_doc(id: &str, record: &AuditRecord) -> Document {
    let mut d = doc! {
        "_id": id,
        "ts": dt(record.at),
        "adminId": &record.admin_id,
        "action": record.kind.as_str(),
    };
    if let Some(name) = &record.admin_name {
        d.insert("adminName", name);
    }
    if let Some(sid) = &record.session_id {
        d.insert("sid", sid);
    }
    if let Some(uid) = &record.user_id {
        d.insert("uid", uid);
    }
    if !record.details.is_empty() {
        let details: Document = record
            .details
            .iter()
            .map(|(k, v)| (k.clone(), Bson::String(v.clone())))
            .collect();
        d.insert("details", details);
    }
    d
}

/// The audit entry in `doc`.
fn audit_from_doc(doc: &Document) -> Result<StoredAudit, StoreError> {
    let id = get_str(doc, "_id")
        .ok_or_else(|| StoreError::Corrupt("audit entry without string _id".into()))?;
    let action = get_str(doc, "action").unwrap_or_default();
    let kind = AuditKind::parse(&action)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown audit action {action}")))?;
    let details = match doc.get("details") {
        Some(Bson::Document(d)) => d
            .iter()
            .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
            .collect(),
        _ => BTreeMap::new(),
    };
    Ok(StoredAudit {
        id,
        record: AuditRecord {
            admin_id: get_str(doc, "adminId").unwrap_or_default(),
            admin_name: get_str(doc, "adminName"),
            kind,
            session_id: get_str(doc, "sid"),
            user_id: get_str(doc, "uid"),
            at: get_date(doc, "ts").unwrap_or(OffsetDateTime::UNIX_EPOCH),
            details,
        },
    })
}

/// Projection leaving out the messages.
fn no_msgs() -> Document {
    doc! { "msgs": 0 }
}

fn now_date() -> DateTime {
    dt(super::now())
}

fn sort_key(field: SortField) -> &'static str {
    match field {
        SortField::StartTime => "ts",
        SortField::EndTime => "endTs",
        SortField::MessageCount => "msgCount",
        SortField::TotalTokens => "totalTokens",
        SortField::UserId => "uid",
    }
}

/// The filter selecting rows after `cursor` in the query's order.
fn cursor_filter(
    cursor: &Cursor,
    field: SortField,
    order: SortOrder,
) -> Result<Document, StoreError> {
    let key = sort_key(field);
    let gt = match order {
        SortOrder::Asc => "$gt",
        SortOrder::Desc => "$lt",
    };
    let value = match (&cursor.v, field) {
        (SortValue::Text(t), SortField::UserId) => Bson::String(t.clone()),
        (SortValue::Num(Some(v)), SortField::StartTime | SortField::EndTime) => {
            Bson::DateTime(ms_date(*v))
        }
        (SortValue::Num(Some(v)), SortField::MessageCount | SortField::TotalTokens) => {
            Bson::Int64(*v)
        }
        (SortValue::Num(None), SortField::EndTime) => {
            // Missing end times sort first (asc) / last (desc).
            return Ok(match order {
                SortOrder::Asc => doc! { "$or": [
                    { "endTs": { "$exists": false }, "_id": { "$gt": &cursor.id } },
                    { "endTs": { "$exists": true } },
                ] },
                SortOrder::Desc => {
                    doc! { "endTs": { "$exists": false }, "_id": { "$lt": &cursor.id } }
                }
            });
        }
        _ => return Err(StoreError::InvalidCursor),
    };
    let mut alternatives = vec![
        Bson::Document(doc! { key: { gt: value.clone() } }),
        Bson::Document(doc! { key: value, "_id": { gt: &cursor.id } }),
    ];
    if field == SortField::EndTime && order == SortOrder::Desc {
        alternatives.push(Bson::Document(doc! { "endTs": { "$exists": false } }));
    }
    Ok(doc! { "$or": alternatives })
}

impl MongoStore {
    /// Connects and creates indexes (failures are logged, as the Go service does). The message counts of
    /// documents written by the Go service are filled later, in the background ([`Store::backfill`]).
    pub async fn connect(
        config: &StoreConfig,
        keyring: Arc<Keyring>,
        metrics: Arc<Metrics>,
    ) -> Result<Self, StoreError> {
        let uri = config
            .mongo_uri
            .as_ref()
            .ok_or_else(|| StoreError::Setup("no MongoDB URI configured".into()))?;
        let mut options = ClientOptions::parse(uri.expose_secret()).await?;
        options
            .app_name
            .get_or_insert_with(|| "chatbox".to_string());
        // A request waits for an unreachable server no longer than `request_wait`.
        options.server_selection_timeout = Some(config.operation_timeout.min(config.request_wait));
        // Every command is a round trip: counted by name (`chatbox_mongodb_commands_total`).
        let commands = metrics.store_commands.clone();
        options.command_event_handler = Some(EventHandler::callback(move |event| {
            if let CommandEvent::Started(started) = event {
                commands
                    .with_label_values(&[started.command_name.as_str()])
                    .inc();
            }
        }));
        options
            .connect_timeout
            .get_or_insert(config.operation_timeout);
        let client = Client::with_options(options)?;
        let store = Self::with_client(
            &client,
            &config.mongo_database,
            &config.mongo_collection,
            config,
            keyring,
            metrics,
        );
        store.ensure_indexes().await;
        Ok(store)
    }

    /// A store over `database.collection` of an existing client (no index creation).
    pub fn with_client(
        client: &Client,
        database: &str,
        collection: &str,
        config: &StoreConfig,
        keyring: Arc<Keyring>,
        metrics: Arc<Metrics>,
    ) -> Self {
        let db = client.database(database);
        Self {
            sessions: db.collection(collection),
            locks: db.collection(&format!("{collection}_active")),
            usage: db.collection(&format!("{collection}_usage")),
            meta: db.collection(&format!("{collection}_meta")),
            audit: db.collection(&format!("{collection}_audit")),
            seq_marks: db.collection(&format!("{collection}_seqmarks")),
            keyring,
            runner: Runner::new(config, metrics),
            slots: SessionSlots::new(CACHED_SESSIONS),
            actives: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// Creates the indexes of reference 4.4 (same names and options, so the Go service's are reused)
    /// and those the queries need. Idempotent. Each creation goes through the runner (the list timeout,
    /// 30 s by default like the Go service's, and retries); failures are logged, and once the server
    /// proves unreachable the remaining indexes are left for the next start rather than waiting out
    /// each one's timeout.
    pub async fn ensure_indexes(&self) {
        let plain = |name: &str, keys: Document| {
            IndexModel::builder()
                .keys(keys)
                .options(IndexOptions::builder().name(name.to_string()).build())
                .build()
        };
        let share = IndexModel::builder()
            .keys(doc! { "shareToken": 1 })
            .options(
                IndexOptions::builder()
                    .name("idx_share_token".to_string())
                    .unique(true)
                    .sparse(true)
                    .build(),
            )
            .build();
        let indexes = [
            (&self.sessions, plain("idx_user_id", doc! { "uid": 1 })),
            (&self.sessions, plain("idx_start_time", doc! { "ts": -1 })),
            (
                &self.sessions,
                plain("idx_admin_assisted", doc! { "adminAssisted": 1 }),
            ),
            (
                &self.sessions,
                plain("idx_user_start_time", doc! { "uid": 1, "ts": -1 }),
            ),
            (&self.sessions, share),
            // The admin list sorts on (field, _id) in one direction: these serve each sort without an
            // in-memory sort (walked backwards for the other direction).
            (
                &self.sessions,
                plain("idx_sort_start_time", doc! { "ts": -1, "_id": -1 }),
            ),
            (
                &self.sessions,
                plain("idx_end_time", doc! { "endTs": -1, "_id": -1 }),
            ),
            (
                &self.sessions,
                plain("idx_msg_count", doc! { "msgCount": -1, "_id": -1 }),
            ),
            (
                &self.sessions,
                plain("idx_total_tokens", doc! { "totalTokens": -1, "_id": -1 }),
            ),
            (
                &self.sessions,
                plain("idx_sort_user_id", doc! { "uid": 1, "_id": 1 }),
            ),
            (&self.usage, plain("idx_uid", doc! { "uid": 1 })),
            (
                &self.audit,
                plain("idx_audit_time", doc! { "ts": -1, "_id": -1 }),
            ),
        ];
        for (collection, model) in indexes {
            let name = model
                .options
                .as_ref()
                .and_then(|o| o.name.clone())
                .unwrap_or_default();
            let result = self
                .runner
                .run("create_index", Budget::Long, true, || async {
                    collection.create_index(model.clone()).await?;
                    Ok(())
                })
                .await;
            match result {
                Ok(()) => {}
                Err(e) if e.is_transient(true) => {
                    tracing::warn!(index = %name, collection = %collection.name(), error = %e,
                        "the store is unreachable: index creation is left for the next start");
                    return;
                }
                Err(e) => {
                    tracing::warn!(index = %name, collection = %collection.name(), error = %e,
                        "could not create an index");
                }
            }
        }
    }

    /// One batch of the back-fill: sets `msgCount` (and raises `lastSeq`) on up to `limit` documents
    /// written by the Go service that have no stored count. Returns (documents read, documents updated).
    async fn backfill_batch(&self, limit: usize) -> Result<(usize, u64), StoreError> {
        let mut cursor = self
            .sessions
            .find(doc! { "msgCount": { "$exists": false } })
            .projection(doc! { "msgs": 1 })
            .limit(limit as i64)
            .await?;
        let mut docs = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            docs.push(d);
        }
        let mut updated = 0;
        for d in &docs {
            let Some(Bson::String(id)) = d.get("_id") else {
                continue;
            };
            let held = self.slots.hold(id).await;
            held.forget();
            if self.correct_counts(d, None).await? {
                updated += 1;
            }
        }
        Ok((docs.len(), updated))
    }

    /// Writes the message count of `doc` (loaded with its `msgs`) when its stored `msgCount` is
    /// `stored` (`None`: missing), and raises `lastSeq` to it: documents the Go service writes get no
    /// counters. True when the document was updated. A concurrent append changes `msgCount` and makes
    /// this a no-op (the next read corrects again).
    async fn correct_counts(
        &self,
        doc: &Document,
        stored: Option<i64>,
    ) -> Result<bool, StoreError> {
        let Some(id) = doc.get("_id") else {
            return Ok(false);
        };
        let count = match doc.get("msgs") {
            Some(Bson::Array(msgs)) => msgs.len() as i64,
            _ => 0,
        };
        let guard = match stored {
            Some(n) => Bson::Int64(n),
            None => Bson::Document(doc! { "$exists": false }),
        };
        let r = self
            .sessions
            .update_one(
                doc! { "_id": id.clone(), "msgCount": guard },
                doc! { "$set": { "msgCount": count }, "$max": { "lastSeq": count } },
            )
            .await?;
        Ok(r.modified_count == 1)
    }

    async fn find_session_doc(
        &self,
        id: &str,
        with_msgs: bool,
    ) -> Result<Option<Document>, StoreError> {
        let find = self.sessions.find_one(doc! { "_id": id });
        let find = if with_msgs {
            find
        } else {
            find.projection(no_msgs())
        };
        Ok(find.await?)
    }

    async fn get_session_inner(&self, id: &str) -> Result<Option<SessionRecord>, StoreError> {
        match self.find_session_doc(id, false).await? {
            Some(doc) => {
                let session = self.session_from_row(doc).await?;
                self.with_seq_mark(session).await.map(Some)
            }
            None => Ok(None),
        }
    }

    /// The session of `doc` (read without its messages). A document written by the Go service (no
    /// schema marker) may lack counters (not back-filled yet) or have stale ones (the Go service pushes
    /// messages without counting them): it is read again with its messages, its message count and last
    /// seq come from the array itself (so new seqs continue after its messages), and the stored count
    /// is corrected for the admin list's message-count sort.
    async fn session_from_row(&self, doc: Document) -> Result<SessionRecord, StoreError> {
        if doc.contains_key(SCHEMA) {
            return session_from_doc(&doc, &self.keyring);
        }
        let full = match doc.get("_id") {
            Some(Bson::String(id)) => self.find_session_doc(id, true).await?,
            _ => None,
        };
        let Some(full) = full else {
            return session_from_doc(&doc, &self.keyring);
        };
        let stored = get_i64(&full, "msgCount");
        let actual = match full.get("msgs") {
            Some(Bson::Array(a)) => Some(a.len() as i64),
            _ => None,
        };
        if actual.is_some() && stored != actual {
            self.correct_counts(&full, stored).await?;
        }
        session_from_doc(&full, &self.keyring)
    }

    /// `session` with its stored seq high-water mark (at least its last seq).
    async fn with_seq_mark(&self, mut session: SessionRecord) -> Result<SessionRecord, StoreError> {
        let mark = self
            .seq_marks
            .find_one(doc! { "_id": &session.id })
            .await?
            .and_then(|d| get_i64(&d, "mark"))
            .and_then(|v| u64::try_from(v).ok())
            .unwrap_or(0);
        session.seq_mark = session.seq_mark.max(mark);
        Ok(session)
    }

    async fn require_session(&self, id: &str) -> Result<SessionRecord, StoreError> {
        self.get_session_inner(id)
            .await?
            .ok_or(StoreError::NotFound)
    }

    /// Reads session `id` whole, once, into the cache of its held slot (`NotFound` when it does not
    /// exist); later writes through the slot keep the cache current. A document written by the Go service
    /// gets its counts corrected first (see [`session_from_row`](Self::session_from_row)).
    async fn load(&self, held: &HeldSlot<Cached>, id: &str) -> Result<(), StoreError> {
        if held.state().is_some() {
            return Ok(());
        }
        let doc = self
            .find_session_doc(id, true)
            .await?
            .ok_or(StoreError::NotFound)?;
        if !doc.contains_key(SCHEMA) {
            let stored = get_i64(&doc, "msgCount");
            let actual = match doc.get("msgs") {
                Some(Bson::Array(a)) => Some(a.len() as i64),
                _ => None,
            };
            if actual.is_some() && stored != actual {
                self.correct_counts(&doc, stored).await?;
            }
        }
        let session = self
            .with_seq_mark(session_from_doc(&doc, &self.keyring)?)
            .await?;
        let messages = messages_from_doc(&doc, id, &self.keyring, None)?;
        let resp_total_ms = get_i64(&doc, "respTotalMs")
            .unwrap_or(session.avg_response_ms * session.response_count);
        let ids = messages
            .iter()
            .enumerate()
            .map(|(index, m)| (m.id.clone(), index))
            .collect();
        let len = match doc.get("msgs") {
            Some(Bson::Array(a)) => a.len(),
            _ => 0,
        };
        let skip = messages.len().saturating_sub(WINDOW);
        held.set(Cached {
            session,
            resp_total_ms,
            ids,
            len,
            window: messages.into_iter().skip(skip).collect(),
        });
        Ok(())
    }

    /// The session of `held`, from its cache (read first when needed).
    async fn cached_session(
        &self,
        held: &HeldSlot<Cached>,
        id: &str,
    ) -> Result<SessionRecord, StoreError> {
        self.load(held, id).await?;
        held.state()
            .as_ref()
            .map(|c| c.session.clone())
            .ok_or(StoreError::NotFound)
    }

    /// The stored form of `message` of session `session_id`, its content encrypted and bound to both.
    fn sealed_message(
        &self,
        session_id: &str,
        message: &MessageRecord,
    ) -> Result<Document, StoreError> {
        let content = self.keyring.encrypt(
            &message.content,
            Binding::Message {
                session: session_id,
                message: &message.id,
            },
        )?;
        Ok(message_doc(message, content))
    }

    /// Sends `update` for session `id`, addressed by `_id` alone; `NotFound` when it does not exist.
    async fn update_by_id(&self, id: &str, update: Document) -> Result<(), StoreError> {
        let result = self.sessions.update_one(doc! { "_id": id }, update).await?;
        if result.matched_count == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// `$set` on one session with its slot held, and `apply` on its cached record; `NotFound` when it
    /// does not exist. Nothing is read first.
    async fn set_fields(
        &self,
        name: &'static str,
        id: &str,
        update: Document,
        apply: impl Fn(&mut SessionRecord) + Send + Sync,
    ) -> Result<(), StoreError> {
        let held = self.slots.hold(id).await;
        self.runner
            .run(name, Budget::Short, true, || {
                attempt(&held, async {
                    self.update_by_id(id, update.clone()).await?;
                    if let Some(cached) = held.state().as_mut() {
                        apply(&mut cached.session);
                    }
                    Ok(())
                })
            })
            .await
    }

    /// Remembers `session_id` as `user_id`'s active session.
    fn remember_active(&self, user_id: &str, session_id: &str) {
        self.actives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(user_id.to_string(), session_id.to_string());
    }

    /// Forgets `user_id`'s active session (all of them when `session_id` is `None`).
    fn forget_active(&self, user_id: &str, session_id: Option<&str>) {
        let mut actives = self.actives.lock().unwrap_or_else(|p| p.into_inner());
        if session_id.is_none() || actives.get(user_id).map(String::as_str) == session_id {
            actives.remove(user_id);
        }
    }

    /// `user_id`'s active session as this store last wrote or read it, when it is still active.
    async fn remembered_active(&self, user_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let remembered = self
            .actives
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(user_id)
            .cloned();
        let Some(sid) = remembered else {
            return Ok(None);
        };
        Ok(self
            .get_session(&sid)
            .await?
            .filter(|s| s.is_active() && s.user_id == user_id))
    }

    /// Adds a turn's tokens to the user's UTC day.
    async fn add_day_tokens(&self, uid: &str, usage: &TurnUsage) -> Result<(), StoreError> {
        let day = utc_day(usage.at);
        let key = format!("{uid}\u{1f}{day}");
        self.runner
            .run("record_usage", Budget::Short, false, || async {
                let update = doc! {
                    "$inc": { "tokens": usage.tokens },
                    "$setOnInsert": { "uid": uid, "day": day },
                };
                match self
                    .usage
                    .update_one(doc! { "_id": &key }, update.clone())
                    .upsert(true)
                    .await
                {
                    Ok(_) => Ok(()),
                    // Two first upserts of the day raced: the document exists now.
                    Err(e) if is_duplicate(&e) => {
                        self.usage.update_one(doc! { "_id": &key }, update).await?;
                        Ok(())
                    }
                    Err(e) => Err(e.into()),
                }
            })
            .await
    }

    async fn get_or_create_inner(
        &self,
        user_id: &str,
        preferred_id: Option<&str>,
        model_id: &str,
    ) -> Result<ActiveSession, StoreError> {
        for _ in 0..16 {
            if let Some(lock) = self.locks.find_one(doc! { "_id": user_id }).await? {
                let sid = get_str(&lock, "sid").unwrap_or_default();
                if let Some(session) = self.get_session(&sid).await?
                    && session.is_active()
                {
                    self.remember_active(user_id, &sid);
                    return Ok(ActiveSession {
                        session,
                        created: false,
                    });
                }
                // The locked session ended or is gone: release the stale lock and try again.
                self.locks
                    .delete_one(doc! { "_id": user_id, "sid": &sid })
                    .await?;
                continue;
            }
            // An active session written by the Go service (no lock, no schema marker)?
            let legacy = self
                .sessions
                .find_one(doc! { "uid": user_id, "endTs": { "$exists": false }, SCHEMA: { "$exists": false } })
                .sort(doc! { "ts": -1 })
                .projection(no_msgs())
                .await?;
            let (sid, created) = match legacy {
                Some(d) => (session_from_doc(&d, &self.keyring)?.id, false),
                None => {
                    let now = now_date();
                    let mut id = match preferred_id {
                        Some(p) if !p.is_empty() => p.to_string(),
                        _ => new_session_id(),
                    };
                    loop {
                        match self
                            .sessions
                            .insert_one(new_session_doc(&id, user_id, model_id, now))
                            .await
                        {
                            Ok(_) => break,
                            Err(e) if is_duplicate(&e) => id = new_session_id(),
                            Err(e) => return Err(e.into()),
                        }
                    }
                    (id, true)
                }
            };
            match self
                .locks
                .insert_one(doc! { "_id": user_id, "sid": &sid, "ts": now_date() })
                .await
            {
                Ok(_) => {
                    let session = self.get_session(&sid).await?.ok_or(StoreError::NotFound)?;
                    self.remember_active(user_id, &sid);
                    return Ok(ActiveSession { session, created });
                }
                Err(e) if is_duplicate(&e) => {
                    if created {
                        // Another caller won; ours was never visible as the active session.
                        self.sessions
                            .delete_one(doc! { "_id": &sid, "msgCount": 0i64 })
                            .await?;
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(StoreError::Timeout {
            operation: "create_session",
        })
    }

    async fn list_inner(&self, query: &SessionQuery) -> Result<SessionPage, StoreError> {
        let limit = query.limit.clamp(1, MAX_LIMIT);
        let mut filter = Document::new();
        if let Some(uid) = &query.user_id {
            filter.insert("uid", uid);
        }
        match query.status {
            Some(StatusFilter::Active) => {
                filter.insert("endTs", doc! { "$exists": false });
            }
            Some(StatusFilter::Ended) => {
                filter.insert("endTs", doc! { "$exists": true });
            }
            None => {}
        }
        if let Some(a) = query.admin_assisted {
            filter.insert("adminAssisted", a);
        }
        let mut ts = Document::new();
        if let Some(from) = query.started_from {
            ts.insert("$gte", dt(from));
        }
        if let Some(to) = query.started_to {
            ts.insert("$lte", dt(to));
        }
        if !ts.is_empty() {
            filter.insert("ts", ts);
        }
        if let Some(c) = &query.cursor {
            let cursor = Cursor::decode(c, query)?;
            let after = cursor_filter(&cursor, query.sort_by, query.order)?;
            filter = doc! { "$and": [filter, after] };
        }
        let dir = match query.order {
            SortOrder::Asc => 1,
            SortOrder::Desc => -1,
        };
        let mut cursor = self
            .sessions
            .find(filter)
            .sort(doc! { sort_key(query.sort_by): dir, "_id": dir })
            .skip(query.offset as u64)
            .limit(limit as i64)
            .projection(no_msgs())
            .await?;
        let mut sessions = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            sessions.push(self.session_from_row(d).await?);
        }
        let next_cursor = next_cursor(query, &sessions, limit);
        Ok(SessionPage {
            sessions,
            next_cursor,
        })
    }

    async fn list_audit_inner(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        let limit = audit_limit(query);
        let cursor = query
            .cursor
            .as_deref()
            .map(AuditCursor::decode)
            .transpose()?;
        let (filter, offset) = match &cursor {
            Some(c) => (
                doc! { "$or": [
                    { "ts": { "$lt": ms_date(c.ms) } },
                    { "ts": ms_date(c.ms), "_id": { "$lt": &c.id } },
                ] },
                0,
            ),
            None => (Document::new(), query.offset),
        };
        let mut rows = self
            .audit
            .find(filter)
            .sort(doc! { "ts": -1, "_id": -1 })
            .skip(offset as u64)
            .limit(limit as i64)
            .await?;
        let mut entries = Vec::new();
        while let Some(d) = rows.try_next().await? {
            entries.push(audit_from_doc(&d)?);
        }
        let next_cursor = next_audit_cursor(&entries, limit);
        Ok(AuditPage {
            entries,
            next_cursor,
        })
    }

    /// `/admin/metrics` on the server: `$match` + `$group` passes for the counts and sums, the largest
    /// response time through a sorted `find_one`, and only the sessions still open at the end of the range
    /// streamed (their open time needs date arithmetic).
    ///
    /// Both MongoDB and FerretDB 1.24 run these pipelines. FerretDB 1.24 implements only the `$count` and
    /// `$sum` accumulators and the `$sum` and `$type` operators (no `$max`, `$avg`, `$cond`, `$subtract`),
    /// and its `$group` feeds a group's documents to the first accumulator only (later ones of the same
    /// stage see none and yield 0). So each pipeline has one `$sum`; the counts group by (`$type` of
    /// `endTs`, `adminAssisted`); the maximum is a sort; the closed sessions' open time is their stored
    /// `dur` (whole seconds, set when they end).
    async fn metrics_inner(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<SessionMetrics, StoreError> {
        let (from_ms, to_ms_) = (to_ms(from), to_ms(to));
        let now = to_ms(super::now());
        let in_range = doc! { "ts": { "$gte": dt(from), "$lte": dt(to) } };
        let key = doc! { "ended": { "$type": "$endTs" }, "assisted": "$adminAssisted" };
        let mut ended = in_range.clone();
        ended.insert("endTs", doc! { "$exists": true });
        let (counts, tokens, avg_sum, dur_sum) = futures::try_join!(
            self.group_sum(in_range.clone(), Bson::Document(key), Bson::Int32(1)),
            self.group_sum(in_range.clone(), Bson::Null, "$totalTokens".into()),
            self.group_sum(in_range.clone(), Bson::Null, "$avgRespTime".into()),
            self.group_sum(ended, Bson::Null, "$dur".into()),
        )?;
        let total = |groups: &[(Bson, i64)]| groups.iter().map(|(_, v)| v).sum::<i64>();
        let mut m = SessionMetrics {
            total_tokens: total(&tokens),
            ..SessionMetrics::default()
        };
        for (key, n) in &counts {
            let Bson::Document(key) = key else { continue };
            m.total_sessions += n;
            if matches!(key.get("ended"), Some(Bson::String(t)) if t == "missing") {
                m.active_sessions += n;
            }
            if get_bool(key, "assisted") {
                m.admin_assisted_count += n;
            }
        }
        let mut open_ms = i128::from(total(&dur_sum)) * 1000;
        if m.total_sessions == 0 {
            return Ok(m);
        }
        m.avg_response_ms = total(&avg_sum) / m.total_sessions;
        m.max_response_ms = self
            .sessions
            .find_one(in_range.clone())
            .sort(doc! { "maxRespTime": -1 })
            .projection(doc! { "maxRespTime": 1 })
            .await?
            .and_then(|d| get_i64(&d, "maxRespTime"))
            .unwrap_or(0)
            .max(0);
        // Sessions open at the end of the range (active, or ended after it): their time inside the range,
        // in place of the stored duration the group above counted for the ended ones.
        let mut open = in_range;
        open.insert(
            "$or",
            vec![
                Bson::Document(doc! { "endTs": { "$exists": false } }),
                Bson::Document(doc! { "endTs": { "$gt": dt(to) } }),
            ],
        );
        let mut boundary = self
            .sessions
            .find(open)
            .projection(doc! { "ts": 1, "endTs": 1, "dur": 1 })
            .await?;
        while let Some(d) = boundary.try_next().await? {
            let end = get_date(&d, "endTs").map(to_ms);
            if end.is_some() {
                open_ms -= i128::from(get_i64(&d, "dur").unwrap_or(0)) * 1000;
            }
            let start = get_date(&d, "ts").map_or(from_ms, to_ms);
            let until = end.unwrap_or(now).min(to_ms_);
            open_ms += i128::from((until - start).max(0));
        }
        if to_ms_ > from_ms {
            m.avg_concurrent = open_ms.max(0) as f64 / (to_ms_ - from_ms) as f64;
        }
        Ok(m)
    }

    /// `$match` `filter`, `$group` by `key` with one `$sum` of `value`: the (key, sum) pairs.
    async fn group_sum(
        &self,
        filter: Document,
        key: Bson,
        value: Bson,
    ) -> Result<Vec<(Bson, i64)>, StoreError> {
        let pipeline = [
            doc! { "$match": filter },
            doc! { "$group": { "_id": key, "v": { "$sum": value } } },
        ];
        let mut groups = self.sessions.aggregate(pipeline).await?;
        let mut out = Vec::new();
        while let Some(g) = groups.try_next().await? {
            let v = get_i64(&g, "v").unwrap_or(0);
            out.push((g.get("_id").cloned().unwrap_or(Bson::Null), v));
        }
        Ok(out)
    }

    async fn rotate_batch(&self, batch_size: usize) -> Result<RotationStats, StoreError> {
        let active = self.keyring.active_id().to_string();
        let after = self
            .meta
            .find_one(doc! { "_id": ROTATION_ID })
            .await?
            .filter(|c| get_str(c, "key").as_deref() == Some(active.as_str()))
            .and_then(|c| get_str(&c, "after"));
        let filter = match &after {
            Some(a) => doc! { "_id": { "$gt": a } },
            None => doc! {},
        };
        let mut cursor = self
            .sessions
            .find(filter)
            .sort(doc! { "_id": 1 })
            .limit(batch_size as i64)
            .projection(doc! { "nm": 1, "msgs": 1 })
            .await?;
        let mut docs = Vec::new();
        while let Some(d) = cursor.try_next().await? {
            docs.push(d);
        }
        let mut stats = RotationStats {
            sessions_scanned: docs.len() as u64,
            done: docs.len() < batch_size,
            ..RotationStats::default()
        };
        let mut last_id = None;
        for d in &docs {
            let Some(Bson::String(id)) = d.get("_id") else {
                continue;
            };
            last_id = Some(id.clone());
            // One writer at a time per session: a concurrent append is not undone by a server that
            // applies updates as read-modify-write. The cache holds plaintext and stays valid.
            let _held = self.slots.hold(id).await;
            if let Some(Bson::String(nm)) = d.get("nm")
                && !nm.is_empty()
                && self.keyring.classify(nm, false) != StoredKind::Active
            {
                let binding = Binding::Name { session: id };
                let plain = self.keyring.decrypt(nm, binding, false)?;
                let sealed = self.keyring.encrypt(&plain, binding)?;
                let r = self
                    .sessions
                    .update_one(
                        doc! { "_id": id, "nm": nm },
                        doc! { "$set": { "nm": sealed } },
                    )
                    .await?;
                if r.modified_count == 1 {
                    stats.names_reencrypted += 1;
                } else {
                    stats.skipped += 1;
                }
            }
            let Some(Bson::Array(msgs)) = d.get("msgs") else {
                continue;
            };
            for (index, m) in msgs.iter().enumerate() {
                let Bson::Document(m) = m else { continue };
                let stored = match m.get("content") {
                    Some(Bson::String(s)) => s.as_str(),
                    _ => "",
                };
                if self.keyring.classify(stored, true) == StoredKind::Active {
                    continue;
                }
                let (mid, _) = message_identity(m, index);
                let binding = Binding::Message {
                    session: id,
                    message: &mid,
                };
                let plain = self.keyring.decrypt(stored, binding, true)?;
                let sealed = self.keyring.encrypt(&plain, binding)?;
                let content_key = format!("msgs.{index}.content");
                let id_key = format!("msgs.{index}.id");
                let r = self
                    .sessions
                    .update_one(
                        doc! { "_id": id, &content_key: stored },
                        doc! { "$set": { &content_key: sealed, &id_key: &mid } },
                    )
                    .await?;
                if r.modified_count == 1 {
                    stats.messages_reencrypted += 1;
                } else {
                    stats.skipped += 1;
                }
            }
        }
        match (stats.done, last_id) {
            (false, Some(last)) => {
                self.meta
                    .update_one(
                        doc! { "_id": ROTATION_ID },
                        doc! { "$set": { "key": &active, "after": last } },
                    )
                    .upsert(true)
                    .await?;
            }
            _ => {
                self.meta.delete_one(doc! { "_id": ROTATION_ID }).await?;
            }
        }
        Ok(stats)
    }
}

impl MongoStore {
    /// The stored key canary, written under the active key when there is none (a concurrent first start
    /// of another node keeps whichever was inserted first); true when this call wrote it.
    async fn canary(&self) -> Result<(String, bool), StoreError> {
        if let Some(value) = self.stored_canary().await? {
            return Ok((value, false));
        }
        let sealed = seal_canary(&self.keyring)?;
        match self
            .meta
            .insert_one(doc! { "_id": CANARY_ID, "value": &sealed })
            .await
        {
            Ok(_) => Ok((sealed, true)),
            Err(e) if is_duplicate(&e) => {
                Ok((self.stored_canary().await?.unwrap_or_default(), false))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn stored_canary(&self) -> Result<Option<String>, StoreError> {
        Ok(self
            .meta
            .find_one(doc! { "_id": CANARY_ID })
            .await?
            .and_then(|d| get_str(&d, "value")))
    }

    /// After a complete rotation every value is under the active key: so is the canary from then on.
    async fn reseal_canary(&self) -> Result<(), StoreError> {
        let sealed = seal_canary(&self.keyring)?;
        self.meta
            .update_one(
                doc! { "_id": CANARY_ID },
                doc! { "$set": { "value": sealed } },
            )
            .upsert(true)
            .await?;
        Ok(())
    }

    async fn check_keys_inner(&self, sessions: usize) -> Result<KeyReport, StoreError> {
        let (canary, created) = self.canary().await?;
        let mut probe = KeyProbe::new(&self.keyring, &canary, created);
        // FerretDB has no `$slice`: the sampled documents come with their message ids and contents, and
        // the last ones are taken here.
        let mut cursor = self
            .sessions
            .find(doc! {})
            .sort(doc! { "ts": -1 })
            .limit(i64::try_from(sessions).unwrap_or(i64::MAX))
            .projection(doc! { "nm": 1, "msgs.id": 1, "msgs.content": 1 })
            .await?;
        while let Some(d) = cursor.try_next().await? {
            let Some(Bson::String(id)) = d.get("_id") else {
                continue;
            };
            if let Some(Bson::String(nm)) = d.get("nm") {
                probe.value(nm, Binding::Name { session: id }, false);
            }
            let Some(Bson::Array(msgs)) = d.get("msgs") else {
                continue;
            };
            let skip = msgs.len().saturating_sub(KEY_CHECK_MESSAGES);
            for (index, m) in msgs.iter().enumerate().skip(skip) {
                let Bson::Document(m) = m else { continue };
                if let Some(Bson::String(stored)) = m.get("content") {
                    // Go messages carry no id; their ciphertexts carry no associated data either.
                    let (mid, _) = message_identity(m, index);
                    let binding = Binding::Message {
                        session: id,
                        message: &mid,
                    };
                    probe.value(stored, binding, true);
                }
            }
        }
        Ok(probe.finish())
    }
}

#[async_trait]
impl Store for MongoStore {
    fn kind(&self) -> StoreKind {
        StoreKind::Mongo
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let db = self
            .sessions
            .client()
            .database(self.sessions.namespace().db.as_str());
        self.runner
            .run("ping", Budget::Short, true, || async {
                tokio::time::timeout(Duration::from_secs(2), db.run_command(doc! { "ping": 1 }))
                    .await
                    .map_err(|_| StoreError::Timeout { operation: "ping" })??;
                Ok(())
            })
            .await
    }

    async fn active_session_id(&self, user_id: &str) -> Result<Option<String>, StoreError> {
        if let Some(session) = self.remembered_active(user_id).await? {
            return Ok(Some(session.id));
        }
        self.runner
            .run("active_session", Budget::Short, true, || async {
                if let Some(lock) = self.locks.find_one(doc! { "_id": user_id }).await?
                    && let Some(sid) = get_str(&lock, "sid")
                    && let Some(d) = self.find_session_doc(&sid, false).await?
                    && !d.contains_key("endTs")
                {
                    return Ok(Some(sid));
                }
                let legacy = self
                    .sessions
                    .find_one(doc! { "uid": user_id, "endTs": { "$exists": false }, SCHEMA: { "$exists": false } })
                    .sort(doc! { "ts": -1 })
                    .projection(doc! { "_id": 1 })
                    .await?;
                Ok(legacy.and_then(|d| get_str(&d, "_id")))
            })
            .await
    }

    async fn count_active_sessions(&self) -> Result<u64, StoreError> {
        // Served by `idx_end_time` (missing end times are indexed as null).
        self.runner
            .run("count_active_sessions", Budget::Short, true, || async {
                Ok(self
                    .sessions
                    .count_documents(doc! { "endTs": { "$exists": false } })
                    .await?)
            })
            .await
    }

    async fn backfill(&self, shutdown: &CancellationToken) -> Result<u64, StoreError> {
        let pending = self
            .runner
            .run("backfill_counts", Budget::Long, true, || async {
                Ok(self
                    .sessions
                    .count_documents(doc! { "msgCount": { "$exists": false } })
                    .await?)
            })
            .await?;
        if pending == 0 {
            return Ok(0);
        }
        tracing::info!(
            pending,
            "filling the message counts of sessions written by the Go service, in the background"
        );
        let mut updated = 0;
        loop {
            let batch = tokio::select! {
                biased;
                () = shutdown.cancelled() => {
                    tracing::info!(updated, pending, "message count back-fill stopped by shutdown; the next start resumes it");
                    return Ok(updated);
                }
                batch = self.runner.run("backfill_counts", Budget::Long, true, || {
                    self.backfill_batch(BACKFILL_BATCH)
                }) => batch?,
            };
            updated += batch.1;
            tracing::info!(updated, pending, "message count back-fill progress");
            // A short batch is the last; a full one that changed nothing would repeat forever.
            if batch.0 < BACKFILL_BATCH || batch.1 == 0 {
                return Ok(updated);
            }
        }
    }

    async fn get_or_create_active(
        &self,
        user_id: &str,
        preferred_id: Option<&str>,
        model_id: &str,
    ) -> Result<ActiveSession, StoreError> {
        if let Some(session) = self.remembered_active(user_id).await? {
            return Ok(ActiveSession {
                session,
                created: false,
            });
        }
        self.runner
            .run("create_session", Budget::Short, true, || {
                self.get_or_create_inner(user_id, preferred_id, model_id)
            })
            .await
    }

    async fn get_session(&self, session_id: &str) -> Result<Option<SessionRecord>, StoreError> {
        let held = self.slots.hold(session_id).await;
        self.runner
            .run("get_session", Budget::Short, true, || {
                attempt(&held, async {
                    match self.cached_session(&held, session_id).await {
                        Ok(session) => Ok(Some(session)),
                        Err(StoreError::NotFound) => Ok(None),
                        Err(e) => Err(e),
                    }
                })
            })
            .await
    }

    async fn append_message(
        &self,
        session_id: &str,
        message: &MessageRecord,
    ) -> Result<AppendOutcome, StoreError> {
        let entry = self.sealed_message(session_id, message)?;
        let held = self.slots.hold(session_id).await;
        self.runner
            .run("append_message", Budget::Short, true, || {
                attempt(&held, async {
                    self.load(&held, session_id).await?;
                    {
                        let state = held.state();
                        let cached = state.as_ref().ok_or(StoreError::NotFound)?;
                        if cached.ids.contains_key(&message.id) {
                            return Ok(AppendOutcome::Duplicate);
                        }
                        if !cached.session.is_active() {
                            return Err(StoreError::SessionEnded);
                        }
                    }
                    let mut update = SessionUpdate::default();
                    update.append(&entry, message);
                    self.update_by_id(session_id, update.build()).await?;
                    if let Some(cached) = held.state().as_mut() {
                        cached.push(message);
                    }
                    Ok(AppendOutcome::Stored)
                })
            })
            .await
    }

    async fn finish_turn(
        &self,
        session_id: &str,
        answer: Option<&MessageRecord>,
        usage: Option<TurnUsage>,
    ) -> Result<(), StoreError> {
        let entry = answer
            .map(|message| self.sealed_message(session_id, message))
            .transpose()?;
        let held = self.slots.hold(session_id).await;
        let uid = self
            .runner
            .run("finish_turn", Budget::Short, true, || {
                attempt(&held, async {
                    Ok(self.cached_session(&held, session_id).await?.user_id)
                })
            })
            .await?;
        // The session's update and the user's day are independent documents: both go out at once.
        let session_update = self.runner.run("finish_turn", Budget::Short, true, || {
            attempt(&held, async {
                self.load(&held, session_id).await?;
                let mut update = SessionUpdate::default();
                let put = {
                    let state = held.state();
                    let cached = state.as_ref().ok_or(StoreError::NotFound)?;
                    // An answer finished after its session ended is not stored (as `append_message`
                    // refuses it), unless a checkpoint of it is; its usage still counts.
                    let put = match (answer, &entry) {
                        (Some(message), Some(entry)) => cached.put(&mut update, entry, message),
                        _ => None,
                    };
                    if let Some(usage) = &usage {
                        let count = cached.session.response_count + 1;
                        update.usage(usage, (cached.resp_total_ms + usage.response_ms) / count);
                    }
                    put
                };
                if !update.is_empty() {
                    self.update_by_id(session_id, update.build()).await?;
                }
                if let Some(cached) = held.state().as_mut() {
                    if let (Some(put), Some(message)) = (put, answer) {
                        cached.record(put, message);
                    }
                    if let Some(usage) = &usage {
                        cached.add_usage(usage);
                    }
                }
                Ok(())
            })
        });
        let day = async {
            match &usage {
                Some(usage) => self.add_day_tokens(&uid, usage).await,
                None => Ok(()),
            }
        };
        let (session_update, day) = tokio::join!(session_update, day);
        session_update.and(day)
    }

    async fn put_answer(&self, session_id: &str, answer: &MessageRecord) -> Result<(), StoreError> {
        let entry = self.sealed_message(session_id, answer)?;
        let held = self.slots.hold(session_id).await;
        self.runner
            .run("put_answer", Budget::Short, true, || {
                attempt(&held, async {
                    self.load(&held, session_id).await?;
                    let mut update = SessionUpdate::default();
                    let put = held
                        .state()
                        .as_ref()
                        .ok_or(StoreError::NotFound)?
                        .put(&mut update, &entry, answer)
                        .ok_or(StoreError::SessionEnded)?;
                    self.update_by_id(session_id, update.build()).await?;
                    if let Some(cached) = held.state().as_mut() {
                        cached.record(put, answer);
                    }
                    Ok(())
                })
            })
            .await
    }

    async fn recent_messages(
        &self,
        session_id: &str,
        limit: usize,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        let held = self.slots.hold(session_id).await;
        let cached = self
            .runner
            .run("recent_messages", Budget::Short, true, || {
                attempt(&held, async {
                    self.load(&held, session_id).await?;
                    Ok(held.state().as_ref().and_then(|c| c.recent(limit)))
                })
            })
            .await?;
        drop(held);
        match cached {
            Some(messages) => Ok(messages),
            None => {
                let mut all = self.messages(session_id, None).await?;
                Ok(all.split_off(all.len().saturating_sub(limit)))
            }
        }
    }

    async fn messages(
        &self,
        session_id: &str,
        after_seq: Option<u64>,
    ) -> Result<Vec<MessageRecord>, StoreError> {
        self.runner
            .run("get_messages", Budget::Long, true, || async {
                let d = self
                    .sessions
                    .find_one(doc! { "_id": session_id })
                    .projection(doc! { "msgs": 1 })
                    .await?
                    .ok_or(StoreError::NotFound)?;
                messages_from_doc(&d, session_id, &self.keyring, after_seq)
            })
            .await
    }

    async fn set_name(&self, session_id: &str, name: &str) -> Result<(), StoreError> {
        let sealed = if name.is_empty() {
            String::new()
        } else {
            self.keyring.encrypt(
                name,
                Binding::Name {
                    session: session_id,
                },
            )?
        };
        self.set_fields(
            "set_name",
            session_id,
            doc! { "$set": { "nm": sealed, "_mt": now_date() } },
            |s| s.name = name.to_string(),
        )
        .await
    }

    async fn raise_seq_mark(
        &self,
        session_id: &str,
        user_id: &str,
        mark: u64,
    ) -> Result<(), StoreError> {
        let stored = i64::try_from(mark).unwrap_or(i64::MAX);
        let held = self.slots.hold(session_id).await;
        self.runner
            .run("raise_seq_mark", Budget::Short, true, || async {
                self.seq_marks
                    .update_one(
                        doc! { "_id": session_id },
                        doc! { "$max": { "mark": stored }, "$set": { "uid": user_id } },
                    )
                    .upsert(true)
                    .await?;
                Ok(())
            })
            .await?;
        if let Some(cached) = held.state().as_mut() {
            cached.session.seq_mark = cached.session.seq_mark.max(mark);
        }
        Ok(())
    }

    async fn set_model(&self, session_id: &str, model_id: &str) -> Result<(), StoreError> {
        self.set_fields(
            "set_model",
            session_id,
            doc! { "$set": { "modelId": model_id, "_mt": now_date() } },
            |s| s.model_id = model_id.to_string(),
        )
        .await
    }

    async fn end_session(
        &self,
        session_id: &str,
        at: OffsetDateTime,
    ) -> Result<EndOutcome, StoreError> {
        let held = self.slots.hold(session_id).await;
        self.runner
            .run("end_session", Budget::Short, true, || {
                attempt(&held, async {
                    let current = self.cached_session(&held, session_id).await?;
                    if !current.is_active() {
                        return Ok(EndOutcome {
                            ended_now: false,
                            session: current,
                        });
                    }
                    let end = from_ms(to_ms(at.max(current.started_at)));
                    let dur = (end - current.started_at).whole_seconds();
                    self.update_by_id(
                        session_id,
                        doc! { "$set": { "endTs": dt(end), "dur": dur, "_mt": now_date() } },
                    )
                    .await?;
                    self.forget_active(&current.user_id, Some(session_id));
                    self.locks
                        .delete_one(doc! { "_id": &current.user_id, "sid": session_id })
                        .await?;
                    let mut state = held.state();
                    let cached = state.as_mut().ok_or(StoreError::NotFound)?;
                    cached.session.ended_at = Some(end);
                    cached.session.duration_secs = dur;
                    Ok(EndOutcome {
                        ended_now: true,
                        session: cached.session.clone(),
                    })
                })
            })
            .await
    }

    async fn record_usage(&self, session_id: &str, usage: TurnUsage) -> Result<(), StoreError> {
        self.finish_turn(session_id, None, Some(usage)).await
    }

    async fn user_tokens_on(&self, user_id: &str, day: Date) -> Result<i64, StoreError> {
        let key = format!("{user_id}\u{1f}{}", date_day(day));
        self.runner
            .run("user_tokens", Budget::Short, true, || async {
                Ok(self
                    .usage
                    .find_one(doc! { "_id": &key })
                    .await?
                    .and_then(|d| get_i64(&d, "tokens"))
                    .unwrap_or(0))
            })
            .await
    }

    async fn set_help_requested(
        &self,
        session_id: &str,
        requested: bool,
    ) -> Result<(), StoreError> {
        self.set_fields(
            "set_help",
            session_id,
            doc! { "$set": { "helpRequested": requested, "_mt": now_date() } },
            |s| s.help_requested = requested,
        )
        .await
    }

    async fn claim_assistance(
        &self,
        session_id: &str,
        admin: &AssistingAdmin,
        replacing: Option<&str>,
    ) -> Result<Claim, StoreError> {
        let mut allowed = vec![Bson::Null, Bson::from(""), Bson::from(admin.id.as_str())];
        allowed.extend(replacing.map(Bson::from));
        // Decided by a conditional update (atomic across nodes on MongoDB) with the slot held (one
        // writer at a time on this node, for servers that apply updates as read-modify-write); the
        // cached state is read again afterwards.
        let held = self.slots.hold(session_id).await;
        held.forget();
        let result = self
            .runner
            .run("claim_assistance", Budget::Short, true, || async {
                for _ in 0..CAS_ATTEMPTS {
                    // The filter is the check, the update the set: one single-document atomic update.
                    let result = self
                        .sessions
                        .update_one(
                            doc! {
                                "_id": session_id,
                                "endTs": { "$exists": false },
                                "$or": [
                                    { "assistingAdminId": { "$exists": false } },
                                    { "assistingAdminId": { "$in": allowed.clone() } },
                                ],
                            },
                            doc! { "$set": {
                                "adminAssisted": true,
                                "assistingAdminId": &admin.id,
                                "assistingAdminName": &admin.name,
                                "_mt": now_date(),
                            } },
                        )
                        .await?;
                    if result.matched_count == 1 {
                        return Ok(Claim::Granted);
                    }
                    let d = self
                        .find_session_doc(session_id, false)
                        .await?
                        .ok_or(StoreError::NotFound)?;
                    if d.contains_key("endTs") {
                        return Err(StoreError::SessionEnded);
                    }
                    if let Some(current) = doc_assistant(&d)
                        .filter(|a| a.id != admin.id && Some(a.id.as_str()) != replacing)
                    {
                        return Ok(Claim::Held(current));
                    }
                    // Released (or handed to an allowed admin) between the update and the read: again.
                }
                Err(StoreError::Timeout {
                    operation: "claim_assistance",
                })
            })
            .await;
        held.forget();
        result
    }

    async fn release_assistance(
        &self,
        session_id: &str,
        admin_id: &str,
    ) -> Result<Release, StoreError> {
        // Decided by a conditional update (atomic across nodes on MongoDB) with the slot held (one
        // writer at a time on this node, for servers that apply updates as read-modify-write); the
        // cached state is read again afterwards.
        let held = self.slots.hold(session_id).await;
        held.forget();
        let result = self
            .runner
            .run("release_assistance", Budget::Short, true, || async {
                for _ in 0..CAS_ATTEMPTS {
                    let result = self
                        .sessions
                        .update_one(
                            doc! { "_id": session_id, "assistingAdminId": admin_id },
                            doc! {
                                "$unset": { "assistingAdminId": "", "assistingAdminName": "" },
                                "$set": { "_mt": now_date() },
                            },
                        )
                        .await?;
                    if result.matched_count == 1 {
                        return Ok(Release::Released);
                    }
                    let d = self
                        .find_session_doc(session_id, false)
                        .await?
                        .ok_or(StoreError::NotFound)?;
                    match doc_assistant(&d) {
                        None => return Ok(Release::NotAssisted),
                        Some(current) if current.id != admin_id => {
                            return Ok(Release::Held(current));
                        }
                        // Claimed by the caller between the update and the read: try again.
                        Some(_) => {}
                    }
                }
                Err(StoreError::Timeout {
                    operation: "release_assistance",
                })
            })
            .await;
        held.forget();
        result
    }

    async fn share(&self, session_id: &str) -> Result<String, StoreError> {
        // Decided by a conditional update (atomic across nodes on MongoDB) with the slot held (one
        // writer at a time on this node, for servers that apply updates as read-modify-write); the
        // cached state is read again afterwards.
        let held = self.slots.hold(session_id).await;
        held.forget();
        let result = self
            .runner
            .run("share_session", Budget::Short, true, || async {
                for _ in 0..8 {
                    let current = self.require_session(session_id).await?;
                    if let Some(token) = current.share_token {
                        return Ok(token);
                    }
                    let token = new_share_token();
                    match self
                        .sessions
                        .update_one(
                            doc! { "_id": session_id, "shareToken": { "$exists": false } },
                            doc! { "$set": { "shareToken": &token, "_mt": now_date() } },
                        )
                        .await
                    {
                        Ok(r) if r.modified_count == 1 => return Ok(token),
                        Ok(_) => continue,
                        Err(e) if is_duplicate(&e) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(StoreError::Timeout {
                    operation: "share_session",
                })
            })
            .await;
        held.forget();
        result
    }

    async fn session_by_share_token(
        &self,
        token: &str,
    ) -> Result<Option<SessionRecord>, StoreError> {
        if token.is_empty() {
            return Ok(None);
        }
        self.runner
            .run("get_shared", Budget::Short, true, || async {
                match self
                    .sessions
                    .find_one(doc! { "shareToken": token })
                    .projection(no_msgs())
                    .await?
                {
                    Some(d) => self.session_from_row(d).await.map(Some),
                    None => Ok(None),
                }
            })
            .await
    }

    async fn revoke_share(&self, session_id: &str) -> Result<bool, StoreError> {
        // Decided by a conditional update (atomic across nodes on MongoDB) with the slot held (one
        // writer at a time on this node, for servers that apply updates as read-modify-write); the
        // cached state is read again afterwards.
        let held = self.slots.hold(session_id).await;
        held.forget();
        let result = self
            .runner
            .run("revoke_share", Budget::Short, true, || async {
                let current = self.require_session(session_id).await?;
                if current.share_token.is_none() {
                    return Ok(false);
                }
                let r = self
                    .sessions
                    .update_one(
                        doc! { "_id": session_id, "shareToken": { "$exists": true } },
                        doc! { "$unset": { "shareToken": "" }, "$set": { "_mt": now_date() } },
                    )
                    .await?;
                Ok(r.modified_count == 1)
            })
            .await;
        held.forget();
        result
    }

    async fn list_user_sessions(
        &self,
        user_id: &str,
        limit: usize,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        self.runner
            .run("list_user_sessions", Budget::Long, true, || async {
                let mut cursor = self
                    .sessions
                    .find(doc! { "uid": user_id })
                    .sort(doc! { "ts": -1 })
                    .limit(limit as i64)
                    .projection(no_msgs())
                    .await?;
                let mut out = Vec::new();
                while let Some(d) = cursor.try_next().await? {
                    out.push(self.session_from_row(d).await?);
                }
                Ok(out)
            })
            .await
    }

    async fn list_sessions(&self, query: &SessionQuery) -> Result<SessionPage, StoreError> {
        self.runner
            .run("list_all_sessions_with_options", Budget::Long, true, || {
                self.list_inner(query)
            })
            .await
    }

    async fn metrics(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<SessionMetrics, StoreError> {
        self.runner
            .run("get_session_metrics", Budget::Long, true, || {
                self.metrics_inner(from, to)
            })
            .await
    }

    async fn purge_ended_before(&self, cutoff: OffsetDateTime) -> Result<u64, StoreError> {
        self.runner
            .run("purge", Budget::Long, true, || async {
                let filter = doc! { "endTs": { "$lt": dt(cutoff) } };
                let mut ids = Vec::new();
                let mut cursor = self
                    .sessions
                    .find(filter.clone())
                    .projection(doc! { "_id": 1 })
                    .await?;
                while let Some(d) = cursor.try_next().await? {
                    ids.extend(d.get("_id").cloned());
                }
                let r = self.sessions.delete_many(filter).await?;
                self.slots
                    .forget_where(|c| c.session.ended_at.is_some_and(|end| end < cutoff));
                if !ids.is_empty() {
                    self.seq_marks
                        .delete_many(doc! { "_id": { "$in": ids } })
                        .await?;
                }
                Ok(r.deleted_count)
            })
            .await
    }

    async fn export_user(&self, user_id: &str) -> Result<UserExport, StoreError> {
        self.runner
            .run("export_user", Budget::Long, true, || async {
                let mut cursor = self
                    .sessions
                    .find(doc! { "uid": user_id })
                    .sort(doc! { "ts": -1 })
                    .await?;
                let mut sessions = Vec::new();
                while let Some(d) = cursor.try_next().await? {
                    let session = session_from_doc(&d, &self.keyring)?;
                    let messages = messages_from_doc(&d, &session.id, &self.keyring, None)?;
                    sessions.push(ExportedSession { session, messages });
                }
                let mut daily_tokens = BTreeMap::new();
                let mut usage = self.usage.find(doc! { "uid": user_id }).await?;
                while let Some(d) = usage.try_next().await? {
                    if let Some(day) = get_i64(&d, "day").and_then(|v| i32::try_from(v).ok()) {
                        daily_tokens.insert(
                            day_date(day).to_string(),
                            get_i64(&d, "tokens").unwrap_or(0),
                        );
                    }
                }
                Ok(UserExport {
                    user_id: user_id.to_string(),
                    sessions,
                    daily_tokens,
                })
            })
            .await
    }

    async fn delete_user(&self, user_id: &str) -> Result<DeleteStats, StoreError> {
        self.runner
            .run("delete_user", Budget::Long, true, || async {
                let mut cursor = self
                    .sessions
                    .find(doc! { "uid": user_id })
                    .projection(doc! { "msgs": 1 })
                    .await?;
                let mut messages = 0u64;
                while let Some(d) = cursor.try_next().await? {
                    if let Some(Bson::Array(a)) = d.get("msgs") {
                        messages += a.len() as u64;
                    }
                }
                let r = self.sessions.delete_many(doc! { "uid": user_id }).await?;
                self.slots.forget_where(|c| c.session.user_id == user_id);
                self.forget_active(user_id, None);
                self.locks.delete_many(doc! { "_id": user_id }).await?;
                self.usage.delete_many(doc! { "uid": user_id }).await?;
                self.seq_marks.delete_many(doc! { "uid": user_id }).await?;
                Ok(DeleteStats {
                    sessions: r.deleted_count,
                    messages,
                })
            })
            .await
    }

    async fn rotate_keys(
        &self,
        batch_size: usize,
        progress: RotationProgress<'_>,
    ) -> Result<RotationStats, StoreError> {
        let batch_size = batch_size.max(1);
        let mut stats = RotationStats::default();
        loop {
            let batch = self
                .runner
                .run("rotate_keys", Budget::Long, true, || {
                    self.rotate_batch(batch_size)
                })
                .await?;
            stats.sessions_scanned += batch.sessions_scanned;
            stats.messages_reencrypted += batch.messages_reencrypted;
            stats.names_reencrypted += batch.names_reencrypted;
            stats.skipped += batch.skipped;
            stats.done = batch.done;
            if batch.done && stats.skipped == 0 {
                self.reseal_canary().await?;
            }
            progress(&stats);
            if batch.done {
                return Ok(stats);
            }
        }
    }

    async fn check_keys(&self, sessions: usize) -> Result<KeyReport, StoreError> {
        self.runner
            .run("check_keys", Budget::Long, true, || {
                self.check_keys_inner(sessions)
            })
            .await
    }

    async fn record_audit(&self, record: &AuditRecord) -> Result<StoredAudit, StoreError> {
        let id = new_audit_id();
        let document = audit_doc(&id, record);
        // The id is fixed before the first attempt, so a retry after a lost acknowledgement finds its own
        // entry (duplicate key) and stops: the entry is written once.
        self.runner
            .run("record_audit", Budget::Short, true, || async {
                match self.audit.insert_one(document.clone()).await {
                    Ok(_) => Ok(()),
                    Err(e) if is_duplicate(&e) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            })
            .await?;
        audit_from_doc(&document)
    }

    async fn list_audit(&self, query: &AuditQuery) -> Result<AuditPage, StoreError> {
        self.runner
            .run("list_audit", Budget::Long, true, || {
                self.list_audit_inner(query)
            })
            .await
    }
}
