//! The redb tables of the embedded store and the encoding of their values.

use redb::TableDefinition;
use serde::{Deserialize, Serialize};

use crate::store::error::StoreError;

pub(super) type NumIndex = TableDefinition<'static, (u8, i64, &'static str), i64>;

pub(super) const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");

pub(super) const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");

pub(super) const MESSAGE_IDS: TableDefinition<(&str, &str), u64> =
    TableDefinition::new("message_ids");

pub(super) const ACTIVE: TableDefinition<&str, &str> = TableDefinition::new("active_by_user");

pub(super) const USER_SESSIONS: TableDefinition<(&str, i64, &str), ()> =
    TableDefinition::new("user_sessions");

pub(super) const SHARES: TableDefinition<&str, &str> = TableDefinition::new("share_tokens");

pub(super) const USAGE: TableDefinition<(&str, i32), i64> =
    TableDefinition::new("user_daily_tokens");

pub(super) const IDX_START: NumIndex = TableDefinition::new("idx_start_time");

pub(super) const IDX_END: NumIndex = TableDefinition::new("idx_end_time");

pub(super) const IDX_COUNT: NumIndex = TableDefinition::new("idx_message_count");

pub(super) const IDX_TOKENS: NumIndex = TableDefinition::new("idx_total_tokens");

pub(super) const IDX_USER: TableDefinition<(u8, &str, &str), i64> =
    TableDefinition::new("idx_user_id");

pub(super) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// The audit log: (time in ms, entry id) → entry, read backwards for newest first.
pub(super) const AUDIT: TableDefinition<(i64, &str), &[u8]> = TableDefinition::new("audit_log");

/// Uploaded files' metadata: file id → JSON row (`files::FileRow`).
pub(super) const FILES: TableDefinition<&str, &[u8]> = TableDefinition::new("files");

/// An index of the `files` table: (partition, created ms, file id).
pub(super) type FileIndex = TableDefinition<'static, (&'static str, i64, &'static str), ()>;

/// A user's files, oldest first: (uid, created ms, file id).
pub(super) const FILES_BY_USER: FileIndex = TableDefinition::new("files_by_user");

/// Files by session, oldest first: (session id, `""` while unattached; created ms; file id).
pub(super) const FILES_BY_SESSION: FileIndex = TableDefinition::new("files_by_session");

/// Sort value of a missing end time: first in ascending order, as MongoDB sorts missing fields.
pub(super) const NO_END: i64 = i64::MIN;

pub(super) fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

pub(super) fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}
