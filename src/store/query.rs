//! The admin session list query (reference 2.4) and its opaque pagination cursor.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::error::StoreError;
use super::records::SessionRecord;

/// Sort keys of `/admin/sessions` (`sort_by`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortField {
    /// `start_time` → `ts` (default).
    #[default]
    StartTime,
    /// `end_time` → `endTs` (active sessions have none and sort first in ascending order).
    EndTime,
    /// `message_count` → the stored `msgCount`.
    MessageCount,
    /// `total_tokens` → `totalTokens`.
    TotalTokens,
    /// `user_id` → `uid`.
    UserId,
}

impl SortField {
    /// Parses the wire value; `None` for values outside the whitelist.
    pub fn parse(value: &str) -> Option<Self> {
        Some(match value {
            "start_time" => Self::StartTime,
            "end_time" => Self::EndTime,
            "message_count" => Self::MessageCount,
            "total_tokens" => Self::TotalTokens,
            "user_id" => Self::UserId,
            _ => return None,
        })
    }
}

/// `sort_order`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SortOrder {
    /// Ascending.
    Asc,
    /// Descending (default).
    #[default]
    Desc,
}

/// `status` filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Not ended.
    Active,
    /// Ended.
    Ended,
}

/// A page request of the admin list. Filters combine with AND.
#[derive(Debug, Clone, Default)]
pub struct SessionQuery {
    /// Exact owner.
    pub user_id: Option<String>,
    /// Active or ended.
    pub status: Option<StatusFilter>,
    /// Assisted or not.
    pub admin_assisted: Option<bool>,
    /// Start time lower bound (inclusive).
    pub started_from: Option<OffsetDateTime>,
    /// Start time upper bound (inclusive).
    pub started_to: Option<OffsetDateTime>,
    /// Sort key; ties are broken by session id in the same direction.
    pub sort_by: SortField,
    /// Direction.
    pub order: SortOrder,
    /// Page size (the API layer applies the reference's defaults; the store caps it at 1000).
    pub limit: usize,
    /// Rows to skip (after the cursor position, if any).
    pub offset: usize,
    /// Continue after the last row of a previous page (its `next_cursor`).
    pub cursor: Option<String>,
}

/// One page of the admin list.
#[derive(Debug, Clone)]
pub struct SessionPage {
    /// The rows.
    pub sessions: Vec<SessionRecord>,
    /// Cursor of the next page when this page is full.
    pub next_cursor: Option<String>,
}

/// The value of the sort key of one row.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(untagged)]
pub(crate) enum SortValue {
    /// Numbers and times (ms); a missing end time is `None` and sorts first.
    Num(Option<i64>),
    /// User ids.
    Text(String),
}

/// Position after which the next page starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct Cursor {
    /// Sort field the cursor was issued for.
    pub f: SortField,
    /// Order it was issued for.
    pub o: SortOrder,
    /// Sort value of the last row.
    pub v: SortValue,
    /// Id of the last row.
    pub id: String,
}

impl Cursor {
    pub(crate) fn encode(&self) -> String {
        URL_SAFE_NO_PAD.encode(serde_json::to_vec(self).unwrap_or_default())
    }

    /// Decodes a cursor and checks it belongs to `query`'s sort.
    pub(crate) fn decode(text: &str, query: &SessionQuery) -> Result<Self, StoreError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(text)
            .map_err(|_| StoreError::InvalidCursor)?;
        let cursor: Cursor =
            serde_json::from_slice(&bytes).map_err(|_| StoreError::InvalidCursor)?;
        if cursor.f != query.sort_by || cursor.o != query.order {
            return Err(StoreError::InvalidCursor);
        }
        Ok(cursor)
    }
}

/// The sort value of `session` under `field`.
pub(crate) fn sort_value(session: &SessionRecord, field: SortField) -> SortValue {
    match field {
        SortField::StartTime => SortValue::Num(Some(super::to_ms(session.started_at))),
        SortField::EndTime => SortValue::Num(session.ended_at.map(super::to_ms)),
        SortField::MessageCount => SortValue::Num(Some(session.message_count)),
        SortField::TotalTokens => SortValue::Num(Some(session.total_tokens)),
        SortField::UserId => SortValue::Text(session.user_id.clone()),
    }
}

/// Largest page a store returns.
pub const MAX_LIMIT: usize = 1000;

/// The cursor of the page after `rows` when the page is full.
pub(crate) fn next_cursor(
    query: &SessionQuery,
    rows: &[SessionRecord],
    limit: usize,
) -> Option<String> {
    if rows.len() < limit {
        return None;
    }
    rows.last().map(|last| {
        Cursor {
            f: query.sort_by,
            o: query.order,
            v: sort_value(last, query.sort_by),
            id: last.id.clone(),
        }
        .encode()
    })
}
