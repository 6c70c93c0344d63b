//! The admin list (filters, sort, cursor paging served by indexes) and `/admin/metrics` on MongoDB.

use futures::TryStreamExt;
use mongodb::bson::{Bson, Document, doc};
use time::OffsetDateTime;

use super::MongoStore;
use super::document::*;
use crate::store::error::StoreError;
use crate::store::query::{
    Cursor, MAX_LIMIT, SortField, SortOrder, SortValue, StatusFilter, next_cursor,
};
use crate::store::records::*;
use crate::store::runner::Budget;
use crate::store::{SessionPage, SessionQuery, to_ms};

pub(super) fn sort_key(field: SortField) -> &'static str {
    match field {
        SortField::StartTime => "ts",
        SortField::EndTime => "endTs",
        SortField::MessageCount => "msgCount",
        SortField::TotalTokens => "totalTokens",
        SortField::UserId => "uid",
    }
}

/// The filter selecting rows after `cursor` in the query's order.
pub(super) fn cursor_filter(
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
    pub(super) async fn list_inner(&self, query: &SessionQuery) -> Result<SessionPage, StoreError> {
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
            .limit(query_limit(limit))
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
    pub(super) async fn metrics_inner(
        &self,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<SessionMetrics, StoreError> {
        let (from_ms, to_ms_) = (to_ms(from), to_ms(to));
        let now = to_ms(crate::store::now());
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
    pub(super) async fn group_sum(
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
}

pub(super) async fn count_active_sessions(store: &MongoStore) -> Result<u64, StoreError> {
    // Served by `idx_end_time` (missing end times are indexed as null).
    store
        .runner
        .run("count_active_sessions", Budget::Short, true, || async {
            Ok(store
                .sessions
                .count_documents(doc! { "endTs": { "$exists": false } })
                .await?)
        })
        .await
}

pub(super) async fn list_user_sessions(
    store: &MongoStore,
    user_id: &str,
    limit: usize,
) -> Result<Vec<SessionRecord>, StoreError> {
    store
        .runner
        .run("list_user_sessions", Budget::Long, true, || async {
            let mut cursor = store
                .sessions
                .find(doc! { "uid": user_id })
                .sort(doc! { "ts": -1 })
                .limit(query_limit(limit))
                .projection(no_msgs())
                .await?;
            let mut out = Vec::new();
            while let Some(d) = cursor.try_next().await? {
                out.push(store.session_from_row(d).await?);
            }
            Ok(out)
        })
        .await
}

pub(super) async fn list_sessions(
    store: &MongoStore,
    query: &SessionQuery,
) -> Result<SessionPage, StoreError> {
    store
        .runner
        .run("list_all_sessions_with_options", Budget::Long, true, || {
            store.list_inner(query)
        })
        .await
}

pub(super) async fn metrics(
    store: &MongoStore,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> Result<SessionMetrics, StoreError> {
    store
        .runner
        .run("get_session_metrics", Budget::Long, true, || {
            store.metrics_inner(from, to)
        })
        .await
}
