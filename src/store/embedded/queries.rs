//! The admin list, served by the secondary index tables keyed `(partition, sort value, session id)`,
//! and `/admin/metrics`.

use std::ops::Bound;

use redb::ReadTransaction;
use time::OffsetDateTime;

use super::rows::*;
use super::tables::*;
use super::{EmbeddedStore, Inner};
use crate::store::error::StoreError;
use crate::store::query::{
    Cursor, MAX_LIMIT, SortField, SortOrder, SortValue, StatusFilter, next_cursor, sort_value,
};
use crate::store::records::*;
use crate::store::runner::Budget;
use crate::store::{SessionPage, SessionQuery, to_ms};

/// One entry of a sort index: sort value, session id, start time (ms).
pub(super) type IndexEntry = (SortValue, String, i64);

pub(super) type IndexIter = Box<dyn Iterator<Item = Result<IndexEntry, StoreError>>>;

/// One item of a range over a sort index.
pub(super) type RangeItem<'a, K> =
    Result<(redb::AccessGuard<'a, K>, redb::AccessGuard<'a, i64>), redb::StorageError>;

pub(super) fn num_index_iter(
    txn: &ReadTransaction,
    table: NumIndex,
    p: u8,
    order: SortOrder,
    after: Option<(i64, &str)>,
    start_bounds: Option<(i64, i64)>,
) -> Result<IndexIter, StoreError> {
    let t = txn.open_table(table)?;
    let (lo, hi) = start_bounds.unwrap_or((i64::MIN, i64::MAX));
    let lower = match (order, after) {
        (SortOrder::Asc, Some((v, id))) => Bound::Excluded((p, v, id)),
        _ => Bound::Included((p, lo, "")),
    };
    let upper = match (order, after) {
        (SortOrder::Desc, Some((v, id))) => Bound::Excluded((p, v, id)),
        _ if hi < i64::MAX => Bound::Excluded((p, hi + 1, "")),
        _ => Bound::Excluded((p + 1, i64::MIN, "")),
    };
    let range = t.range::<(u8, i64, &str)>((lower, upper))?;
    let map = move |entry: RangeItem<'_, (u8, i64, &str)>| {
        let (k, v) = entry?;
        let (_, value, id) = k.value();
        let value = if value == NO_END { None } else { Some(value) };
        Ok((SortValue::Num(value), id.to_string(), v.value()))
    };
    Ok(match order {
        SortOrder::Asc => Box::new(range.map(map)),
        SortOrder::Desc => Box::new(range.rev().map(map)),
    })
}

pub(super) fn user_index_iter(
    txn: &ReadTransaction,
    p: u8,
    order: SortOrder,
    after: Option<(&str, &str)>,
) -> Result<IndexIter, StoreError> {
    let t = txn.open_table(IDX_USER)?;
    let lower = match (order, after) {
        (SortOrder::Asc, Some((v, id))) => Bound::Excluded((p, v, id)),
        _ => Bound::Included((p, "", "")),
    };
    let upper = match (order, after) {
        (SortOrder::Desc, Some((v, id))) => Bound::Excluded((p, v, id)),
        _ => Bound::Excluded((p + 1, "", "")),
    };
    let range = t.range::<(u8, &str, &str)>((lower, upper))?;
    let map = |entry: RangeItem<'_, (u8, &str, &str)>| {
        let (k, v) = entry?;
        let (_, uid, id) = k.value();
        Ok((SortValue::Text(uid.to_string()), id.to_string(), v.value()))
    };
    Ok(match order {
        SortOrder::Asc => Box::new(range.map(map)),
        SortOrder::Desc => Box::new(range.rev().map(map)),
    })
}

pub(super) fn list_page(inner: &Inner, query: &SessionQuery) -> Result<SessionPage, StoreError> {
    let limit = query.limit.clamp(1, MAX_LIMIT);
    let cursor = query
        .cursor
        .as_deref()
        .map(|c| Cursor::decode(c, query))
        .transpose()?;
    let from = query.started_from.map(to_ms).unwrap_or(i64::MIN);
    let to = query.started_to.map(to_ms).unwrap_or(i64::MAX);
    let txn = inner.db.begin_read()?;

    if let Some(user_id) = &query.user_id {
        // One user's sessions: few, read through the user index and sorted here.
        let ids = session_ids_of_user(&txn, user_id)?;
        return sorted_page(inner, &txn, ids, query, cursor.as_ref(), (from, to), limit);
    }

    let ended: &[u8] = match query.status {
        Some(StatusFilter::Active) => &[0],
        Some(StatusFilter::Ended) => &[1],
        None => &[0, 1],
    };
    let assisted: &[u8] = match query.admin_assisted {
        Some(false) => &[0],
        Some(true) => &[1],
        None => &[0, 1],
    };
    let parts: Vec<u8> = ended
        .iter()
        .flat_map(|e| assisted.iter().map(move |a| (e << 1) | a))
        .collect();
    let windowed = from > i64::MIN || to < i64::MAX;
    if windowed && query.sort_by != SortField::StartTime {
        // A start-time window with another sort: when the window holds few sessions, read them through
        // the start-time index and sort them here, instead of walking the whole sort index for them.
        if let Some(ids) = ids_started_within(&txn, &parts, from, to)? {
            return sorted_page(inner, &txn, ids, query, cursor.as_ref(), (from, to), limit);
        }
    }
    let start_bounds = (query.sort_by == SortField::StartTime).then_some((from, to));
    let mut heads: Vec<IndexIter> = Vec::new();
    for &p in &parts {
        let iter = match query.sort_by {
            SortField::UserId => {
                let after = cursor.as_ref().and_then(|c| match &c.v {
                    SortValue::Text(t) => Some((t.as_str(), c.id.as_str())),
                    SortValue::Num(_) => None,
                });
                if cursor.is_some() && after.is_none() {
                    return Err(StoreError::InvalidCursor);
                }
                user_index_iter(&txn, p, query.order, after)?
            }
            field => {
                let table = match field {
                    SortField::StartTime => IDX_START,
                    SortField::EndTime => IDX_END,
                    SortField::MessageCount => IDX_COUNT,
                    _ => IDX_TOKENS,
                };
                let after = match &cursor {
                    None => None,
                    Some(Cursor {
                        v: SortValue::Num(v),
                        id,
                        ..
                    }) => Some((v.unwrap_or(NO_END), id.as_str())),
                    Some(_) => return Err(StoreError::InvalidCursor),
                };
                num_index_iter(&txn, table, p, query.order, after, start_bounds)?
            }
        };
        heads.push(iter);
    }

    let mut current: Vec<Option<IndexEntry>> = heads
        .iter_mut()
        .map(|it| it.next().transpose())
        .collect::<Result<_, _>>()?;
    let mut ids = Vec::with_capacity(limit);
    let mut skipped = 0usize;
    while ids.len() < limit {
        // Merge the partitions: take the smallest (asc) or largest (desc) head.
        let mut best: Option<(usize, &IndexEntry)> = None;
        for (i, head) in current.iter().enumerate() {
            let Some(head) = head else { continue };
            let better = match best {
                None => true,
                Some((_, b)) => {
                    let ord = (&head.0, &head.1).cmp(&(&b.0, &b.1));
                    match query.order {
                        SortOrder::Asc => ord.is_lt(),
                        SortOrder::Desc => ord.is_gt(),
                    }
                }
            };
            if better {
                best = Some((i, head));
            }
        }
        let Some((b, _)) = best else { break };
        let next = heads[b].next().transpose()?;
        let Some((_, id, ts)) = std::mem::replace(&mut current[b], next) else {
            break;
        };
        if ts < from || ts > to {
            continue;
        }
        if skipped < query.offset {
            skipped += 1;
            continue;
        }
        ids.push(id);
    }
    let mut sessions = Vec::with_capacity(ids.len());
    for id in ids {
        if let Some(row) = read_row(&txn, &id)? {
            sessions.push(row.record(&inner.keyring)?);
        }
    }
    let next_cursor = next_cursor(query, &sessions, limit);
    Ok(SessionPage {
        sessions,
        next_cursor,
    })
}

/// Most sessions a start-time window may hold for [`list_page`] to read them all and sort them in
/// memory (for a sort other than start time); a wider window walks the sort index, where matches are dense.
pub(super) const WINDOW_SORT_MAX: usize = 2_000;

/// The ids of the sessions of partitions `parts` that started within `[from, to]`, or `None` when there
/// are more than [`WINDOW_SORT_MAX`].
pub(super) fn ids_started_within(
    txn: &ReadTransaction,
    parts: &[u8],
    from: i64,
    to: i64,
) -> Result<Option<Vec<String>>, StoreError> {
    let mut ids = Vec::new();
    for &p in parts {
        for entry in num_index_iter(txn, IDX_START, p, SortOrder::Asc, None, Some((from, to)))? {
            if ids.len() == WINDOW_SORT_MAX {
                return Ok(None);
            }
            ids.push(entry?.1);
        }
    }
    Ok(Some(ids))
}

/// A page of the sessions `ids` (a bounded set: one user's, or one narrow start-time window's), filtered,
/// sorted and paged here like the index walk of [`list_page`] would.
pub(super) fn sorted_page(
    inner: &Inner,
    txn: &ReadTransaction,
    ids: Vec<String>,
    query: &SessionQuery,
    after: Option<&Cursor>,
    (from, to): (i64, i64),
    limit: usize,
) -> Result<SessionPage, StoreError> {
    // Names are decrypted for the page only: filtering and sorting need none of the encrypted fields.
    let mut rows = Vec::new();
    for id in ids {
        let Some(mut row) = read_row(txn, &id)? else {
            continue;
        };
        let name = std::mem::take(&mut row.nm);
        let record = row.record(&inner.keyring)?;
        if !matches_filters(&record, query, from, to) {
            continue;
        }
        row.nm = name;
        rows.push((sort_value(&record, query.sort_by), record, row));
    }
    rows.sort_by(|a, b| (&a.0, &a.1.id).cmp(&(&b.0, &b.1.id)));
    if query.order == SortOrder::Desc {
        rows.reverse();
    }
    let sessions = rows
        .into_iter()
        .filter(|(v, r, _)| match after {
            None => true,
            Some(c) => match query.order {
                SortOrder::Asc => (v, &r.id) > (&c.v, &c.id),
                SortOrder::Desc => (v, &r.id) < (&c.v, &c.id),
            },
        })
        .skip(query.offset)
        .take(limit)
        .map(|(_, _, row)| row.record(&inner.keyring))
        .collect::<Result<Vec<SessionRecord>, StoreError>>()?;
    let next_cursor = next_cursor(query, &sessions, limit);
    Ok(SessionPage {
        sessions,
        next_cursor,
    })
}

pub(super) fn matches_filters(
    record: &SessionRecord,
    query: &SessionQuery,
    from: i64,
    to: i64,
) -> bool {
    let ts = to_ms(record.started_at);
    if ts < from || ts > to {
        return false;
    }
    match query.status {
        Some(StatusFilter::Active) if !record.is_active() => return false,
        Some(StatusFilter::Ended) if record.is_active() => return false,
        _ => {}
    }
    if query
        .admin_assisted
        .is_some_and(|a| a != record.admin_assisted)
    {
        return false;
    }
    true
}

pub(super) fn metrics_in(
    inner: &Inner,
    from: i64,
    to: i64,
    now: i64,
) -> Result<SessionMetrics, StoreError> {
    let txn = inner.db.begin_read()?;
    let index = txn.open_table(IDX_START)?;
    let sessions = txn.open_table(SESSIONS)?;
    let mut m = SessionMetrics::default();
    let mut avg_sum = 0i64;
    let mut open_ms = 0i128;
    for p in 0u8..4 {
        for entry in index.range((p, from, "")..=(p, to, "\u{10FFFF}"))? {
            let (k, _) = entry?;
            let (_, _, id) = k.value();
            let Some(row) = sessions.get(id)? else {
                continue;
            };
            let row: SessionRow = decode(row.value())?;
            m.total_sessions += 1;
            if row.end.is_none() {
                m.active_sessions += 1;
            }
            if row.assisted {
                m.admin_assisted_count += 1;
            }
            m.total_tokens += row.tokens;
            m.max_response_ms = m.max_response_ms.max(row.max_ms);
            avg_sum += row.avg_ms;
            let until = row.end.unwrap_or(now).min(to);
            open_ms += i128::from((until - row.ts).max(0));
        }
    }
    if m.total_sessions > 0 {
        m.avg_response_ms = avg_sum / m.total_sessions;
    }
    if to > from {
        m.avg_concurrent = open_ms as f64 / (to - from) as f64;
    }
    Ok(m)
}

pub(super) async fn list_sessions(
    store: &EmbeddedStore,
    query: &SessionQuery,
) -> Result<SessionPage, StoreError> {
    let query = query.clone();
    store
        .blocking(
            "list_all_sessions_with_options",
            Budget::Long,
            move |inner| list_page(inner, &query),
        )
        .await
}

pub(super) async fn metrics(
    store: &EmbeddedStore,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<SessionMetrics, StoreError> {
    let (from, to, now) = (to_ms(from), to_ms(to), to_ms(crate::store::now()));
    store
        .blocking("get_session_metrics", Budget::Long, move |inner| {
            metrics_in(inner, from, to, now)
        })
        .await
}
