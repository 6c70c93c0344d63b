//! Low-level access for tests, benchmarks and tools: rows written directly, bypassing encryption or the
//! usual write path.

use std::collections::BTreeMap;
use std::sync::Arc;

use time::OffsetDateTime;

use super::EmbeddedStore;
use super::rows::*;
use super::tables::*;
use crate::store::error::StoreError;
use crate::store::records::*;
use crate::store::runner::Budget;
use crate::store::to_ms;

/// Low-level access for tests and tools: writes a message row with an already-encoded `content`
/// (bypassing encryption), e.g. to load data in the Go service's formats.
pub async fn insert_raw_message(
    store: &EmbeddedStore,
    session_id: &str,
    message: &MessageRecord,
    stored_content: &str,
) -> Result<(), StoreError> {
    let id = session_id.to_string();
    let message = message.clone();
    let stored = stored_content.to_string();
    store
        .write("insert_raw", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
            let row = MessageRow {
                id: message.id.clone(),
                seq: message.seq,
                c: stored.clone(),
                ts: to_ms(message.timestamp),
                sender: message.sender.clone(),
                file_id: None,
                file_url: None,
                meta: BTreeMap::new(),
                cmid: None,
                model: None,
                partial: false,
            };
            let index = u64::try_from(old.count).unwrap_or(0);
            txn.open_table(MESSAGES)?
                .insert((id.as_str(), index), encode(&row)?.as_slice())?;
            txn.open_table(MESSAGE_IDS)?
                .insert((id.as_str(), message.id.as_str()), index)?;
            let mut new = old.clone();
            new.count += 1;
            new.last_seq = new.last_seq.max(message.seq);
            put_row(txn, Some(&old), &new)?;
            Ok(())
        })
        .await
}

/// Low-level access for benchmarks and tests: inserts a finished session row directly (one
/// transaction for the whole slice), with the given start, end, tokens, count and assistance.
pub async fn insert_bulk(store: &EmbeddedStore, rows: Vec<BulkSession>) -> Result<(), StoreError> {
    let rows = Arc::new(rows);
    store
        .write_mixed("insert_bulk", Budget::Long, move |txn, _| {
            for b in rows.iter() {
                let mut row = SessionRow::new(b.id.clone(), &b.user_id, "", to_ms(b.started_at));
                row.end = b.ended_at.map(to_ms);
                row.dur = row.end.map_or(0, |e| (e - row.ts) / 1000);
                row.tokens = b.total_tokens;
                row.count = b.message_count;
                row.assisted = b.admin_assisted;
                put_row(txn, None, &row)?;
            }
            Ok(())
        })
        .await
}

/// A session for [`insert_bulk`].
#[derive(Debug, Clone)]
pub struct BulkSession {
    /// Id.
    pub id: String,
    /// Owner.
    pub user_id: String,
    /// Start.
    pub started_at: OffsetDateTime,
    /// End.
    pub ended_at: Option<OffsetDateTime>,
    /// Tokens.
    pub total_tokens: i64,
    /// Message count.
    pub message_count: i64,
    /// Assisted.
    pub admin_assisted: bool,
}
