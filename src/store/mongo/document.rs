//! Mapping between the session documents (the Go service's layout, reference 4.2) and the store's
//! records, and the BSON helpers of the MongoDB store.

use std::collections::BTreeMap;

use mongodb::bson::{Bson, DateTime, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use time::OffsetDateTime;

use crate::store::crypto::Keyring;
use crate::store::error::StoreError;
use crate::store::keycheck::{mark_unreadable, open_content, open_name};
use crate::store::records::*;
use crate::store::{from_ms, to_ms};

/// Marks documents written by this server (`schema: 2` or `3`); documents without it were written by the
/// Go service.
pub(super) const SCHEMA: &str = "schema";

/// Sessions whose messages are documents of their own in `<c>_msgs` (see [`MessageLayout`]); the
/// session document has no `msgs`. Every session this server creates now; those it created with
/// `schema: 2` keep their messages in `msgs`, as the Go service's do, and open and continue that way.
pub(super) const SCHEMA_DOCUMENTS: i32 = 3;

/// Where a session's messages are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum MessageLayout {
    /// In the session document's `msgs` array (the Go service's sessions, and ours of `schema: 2`):
    /// appended with `$push`, so every write rewrites the document on servers that update by
    /// read-modify-write.
    Array,
    /// One document per message in `<c>_msgs`, `_id: "<session>:<message id>"`, inserted: the session
    /// document stays small whatever the conversation's length.
    Documents,
}

impl MessageLayout {
    /// The layout of session document `doc`.
    pub(super) fn of(doc: &Document) -> Self {
        if get_i64(doc, SCHEMA).is_some_and(|v| v >= i64::from(SCHEMA_DOCUMENTS)) {
            Self::Documents
        } else {
            Self::Array
        }
    }
}

/// `_id` of message `message` of session `session` in `<c>_msgs`.
pub(super) fn message_doc_id(session: &str, message: &str) -> String {
    format!("{session}:{message}")
}

/// `n` as a query's `limit`: a count too large for `i64` means no limit, not a negative one (a negative
/// limit asks MongoDB for a single batch).
pub(super) fn query_limit(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn ms_date(ms: i64) -> DateTime {
    DateTime::from_millis(ms)
}

pub(super) fn dt(t: OffsetDateTime) -> DateTime {
    DateTime::from_millis(to_ms(t))
}

/// MongoDB's duplicate key error code.
pub(super) const DUPLICATE_KEY: i32 = 11000;

pub(super) fn is_duplicate(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == DUPLICATE_KEY,
        ErrorKind::Command(c) => c.code == DUPLICATE_KEY,
        ErrorKind::InsertMany(m) => m
            .write_errors
            .as_ref()
            .is_some_and(|errs| errs.iter().any(|w| w.code == DUPLICATE_KEY)),
        _ => false,
    }
}

pub(super) fn get_i64(doc: &Document, key: &str) -> Option<i64> {
    match doc.get(key)? {
        Bson::Int32(v) => Some(i64::from(*v)),
        Bson::Int64(v) => Some(*v),
        Bson::Double(v) => Some(*v as i64),
        _ => None,
    }
}

pub(super) fn get_str(doc: &Document, key: &str) -> Option<String> {
    match doc.get(key)? {
        Bson::String(s) if !s.is_empty() => Some(s.clone()),
        _ => None,
    }
}

/// The assisting admin a session document names.
pub(super) fn doc_assistant(doc: &Document) -> Option<AssistingAdmin> {
    get_str(doc, "assistingAdminId").map(|id| AssistingAdmin {
        id,
        name: get_str(doc, "assistingAdminName").unwrap_or_default(),
    })
}

pub(super) fn get_date(doc: &Document, key: &str) -> Option<OffsetDateTime> {
    match doc.get(key)? {
        Bson::DateTime(d) => Some(from_ms(d.timestamp_millis())),
        _ => None,
    }
}

pub(super) fn get_bool(doc: &Document, key: &str) -> bool {
    matches!(doc.get(key), Some(Bson::Boolean(true)))
}

/// The session in `doc` (its `msgs` are not read). `msgs_len` is the array length when loaded, for
/// documents written by the Go service, which have no stored count.
pub(super) fn session_from_doc(
    doc: &Document,
    keyring: &Keyring,
) -> Result<SessionRecord, StoreError> {
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
pub(super) fn message_identity(doc: &Document, index: usize) -> (String, u64) {
    let id = get_str(doc, "id").unwrap_or_else(|| format!("legacy-{index}"));
    let seq = get_i64(doc, "seq")
        .and_then(|s| u64::try_from(s).ok())
        .unwrap_or(index as u64 + 1);
    (id, seq)
}

pub(super) fn messages_from_doc(
    doc: &Document,
    session: &str,
    keyring: &Keyring,
    after_seq: Option<u64>,
) -> Result<Vec<MessageRecord>, StoreError> {
    let Some(Bson::Array(msgs)) = doc.get("msgs") else {
        return Ok(Vec::new());
    };
    Ok(msgs
        .iter()
        .enumerate()
        .filter_map(|(index, m)| match m {
            Bson::Document(m) => Some((index, m)),
            _ => None,
        })
        // Messages up to `after_seq` are skipped before their contents are decrypted.
        .filter(|(index, m)| after_seq.is_none_or(|after| message_identity(m, *index).1 > after))
        .map(|(index, m)| message_from_entry(m, index, session, keyring))
        .collect())
}

/// The message stored as `m`, the `index`-th of session `session` (an entry of `msgs`, or a document of
/// `<c>_msgs`, which has the same fields).
pub(super) fn message_from_entry(
    m: &Document,
    index: usize,
    session: &str,
    keyring: &Keyring,
) -> MessageRecord {
    let (id, seq) = message_identity(m, index);
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
    MessageRecord {
        id,
        seq,
        content: content.unwrap_or_default(),
        timestamp: get_date(m, "ts").unwrap_or(OffsetDateTime::UNIX_EPOCH),
        sender: Sender::parse(&get_str(m, "sender").unwrap_or_default()),
        file_id: get_str(m, "fileId"),
        file_url: get_str(m, "fileUrl"),
        metadata,
        client_msg_id: get_str(m, "clientMsgId"),
        model_id: get_str(m, "modelId"),
        partial: get_bool(m, "partial"),
    }
}

/// The document of `<c>_msgs` that stores `entry` (a [`message_doc`]) as the `n`-th message of session
/// `session`: the entry's fields plus `_id`, `sid` and `n` (the order of the conversation).
pub(super) fn message_document(session: &str, n: usize, entry: &Document) -> Document {
    let id = get_str(entry, "id").unwrap_or_default();
    let mut d = doc! {
        "_id": message_doc_id(session, &id),
        "sid": session,
        "n": i64::try_from(n).unwrap_or(i64::MAX),
    };
    d.extend(entry.clone());
    d
}

pub(super) fn message_doc(message: &MessageRecord, content: String) -> Document {
    let mut d = doc! {
        "content": content,
        "ts": dt(message.timestamp),
        "sender": message.sender.as_str(),
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

pub(super) fn new_session_doc(id: &str, user_id: &str, model_id: &str, now: DateTime) -> Document {
    doc! {
        "_id": id,
        "uid": user_id,
        "nm": "",
        "modelId": model_id,
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
        SCHEMA: SCHEMA_DOCUMENTS,
        "_ts": now,
        "_mt": now,
    }
}

/// Projection leaving out the messages.
pub(super) fn no_msgs() -> Document {
    doc! { "msgs": 0 }
}

pub(super) fn now_date() -> DateTime {
    dt(crate::store::now())
}
