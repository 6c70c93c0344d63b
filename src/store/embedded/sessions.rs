//! Writes to one session: creation of the active session, messages and answers, names, flags, usage and
//! the end.

use redb::{ReadableTable, WriteTransaction};
use time::OffsetDateTime;

use super::EmbeddedStore;
use super::rows::*;
use super::tables::*;
use crate::store::crypto::Binding;
use crate::store::error::StoreError;
use crate::store::records::*;
use crate::store::runner::Budget;
use crate::store::{new_session_id, to_ms, utc_day};

/// Appends `message` to the session `id` (checks first: `NotFound`, duplicate, `SessionEnded` and
/// encryption come before any write).
pub(super) fn append(
    txn: &WriteTransaction,
    id: &str,
    message: &SealedMessage,
) -> Result<AppendOutcome, StoreError> {
    let old = write_row_get(txn, id)?.ok_or(StoreError::NotFound)?;
    if txn
        .open_table(MESSAGE_IDS)?
        .get((id, message.id.as_str()))?
        .is_some()
    {
        return Ok(AppendOutcome::Duplicate);
    }
    if old.end.is_some() {
        return Err(StoreError::SessionEnded);
    }
    let index = u64::try_from(old.count).unwrap_or(0);
    txn.open_table(MESSAGES)?
        .insert((id, index), message.bytes.as_slice())?;
    txn.open_table(MESSAGE_IDS)?
        .insert((id, message.id.as_str()), index)?;
    let mut new = old.clone();
    new.count += 1;
    new.last_seq = new.last_seq.max(message.seq);
    new.last = Some(new.last.map_or(message.ts, |l| l.max(message.ts)));
    put_row(txn, Some(&old), &new)?;
    Ok(AppendOutcome::Stored)
}

/// Appends `answer`, or replaces the stored message with its id (a checkpoint of it) in place.
pub(super) fn put_answer_in(
    txn: &WriteTransaction,
    id: &str,
    answer: &SealedMessage,
) -> Result<(), StoreError> {
    let stored = txn
        .open_table(MESSAGE_IDS)?
        .get((id, answer.id.as_str()))?
        .map(|index| index.value());
    let Some(index) = stored else {
        return append(txn, id, answer).map(|_| ());
    };
    // `NotFound` before the first write, as a job that checks first must.
    let old = write_row_get(txn, id)?.ok_or(StoreError::NotFound)?;
    txn.open_table(MESSAGES)?
        .insert((id, index), answer.bytes.as_slice())?;
    let mut new = old.clone();
    new.last_seq = new.last_seq.max(answer.seq);
    new.last = Some(new.last.map_or(answer.ts, |l| l.max(answer.ts)));
    put_row(txn, Some(&old), &new)
}

pub(super) async fn get_or_create_active(
    store: &EmbeddedStore,
    user_id: &str,
    preferred_id: Option<&str>,
    model_id: &str,
) -> Result<ActiveSession, StoreError> {
    // A session that is already active is found by a read: only creating one takes the writer (which
    // checks again, so two first messages at once still make one session).
    if let Some(session) = super::reads::active_session(store, user_id).await? {
        return Ok(ActiveSession {
            session,
            created: false,
        });
    }
    let user_id = user_id.to_string();
    let preferred = preferred_id.map(str::to_string);
    let model_id = model_id.to_string();
    store
        .write("create_session", Budget::Short, move |txn, inner| {
            let existing = txn
                .open_table(ACTIVE)?
                .get(user_id.as_str())?
                .map(|v| v.value().to_string());
            if let Some(id) = existing
                && let Some(row) = write_row_get(txn, &id)?
                && row.end.is_none()
            {
                return Ok(ActiveSession {
                    session: row.record(&inner.keyring)?,
                    created: false,
                });
            }
            let id = match &preferred {
                Some(p) if !p.is_empty() && write_row_get(txn, p)?.is_none() => p.clone(),
                _ => new_session_id(),
            };
            let row = SessionRow::new(id.clone(), &user_id, &model_id, to_ms(crate::store::now()));
            let session = row.record(&inner.keyring)?;
            put_row(txn, None, &row)?;
            txn.open_table(ACTIVE)?
                .insert(user_id.as_str(), id.as_str())?;
            Ok(ActiveSession {
                session,
                created: true,
            })
        })
        .await
}

pub(super) async fn append_message(
    store: &EmbeddedStore,
    session_id: &str,
    message: &MessageRecord,
) -> Result<AppendOutcome, StoreError> {
    // Sealed and encoded here, so the writer thread only writes.
    let message = SealedMessage::new(&store.inner, session_id, message)?;
    let id = session_id.to_string();
    store
        .write("append_message", Budget::Short, move |txn, _| {
            append(txn, &id, &message)
        })
        .await
}

pub(super) async fn put_answer(
    store: &EmbeddedStore,
    session_id: &str,
    answer: &MessageRecord,
) -> Result<(), StoreError> {
    let answer = SealedMessage::new(&store.inner, session_id, answer)?;
    let id = session_id.to_string();
    store
        .write("put_answer", Budget::Short, move |txn, _| {
            put_answer_in(txn, &id, &answer)
        })
        .await
}

pub(super) async fn set_name(
    store: &EmbeddedStore,
    session_id: &str,
    name: &str,
) -> Result<(), StoreError> {
    let id = session_id.to_string();
    let name = name.to_string();
    store
        .write("set_name", Budget::Short, move |txn, inner| {
            let sealed = if name.is_empty() {
                String::new()
            } else {
                inner
                    .keyring
                    .encrypt(&name, Binding::Name { session: &id })?
            };
            update_row(txn, &id, |row| {
                row.nm = sealed;
                Ok(())
            })
        })
        .await
}

pub(super) async fn raise_seq_mark(
    store: &EmbeddedStore,
    session_id: &str,
    _user_id: &str,
    mark: u64,
) -> Result<(), StoreError> {
    let id = session_id.to_string();
    store
        .write("raise_seq_mark", Budget::Short, move |txn, _| {
            update_row(txn, &id, |row| {
                row.seq_mark = row.seq_mark.max(mark);
                Ok(())
            })
        })
        .await
}

pub(super) async fn set_model(
    store: &EmbeddedStore,
    session_id: &str,
    model_id: &str,
) -> Result<(), StoreError> {
    let id = session_id.to_string();
    let model = model_id.to_string();
    store
        .write("set_model", Budget::Short, move |txn, _| {
            update_row(txn, &id, |row| {
                row.model = model.clone();
                Ok(())
            })
        })
        .await
}

pub(super) async fn end_session(
    store: &EmbeddedStore,
    session_id: &str,
    at: OffsetDateTime,
) -> Result<EndOutcome, StoreError> {
    let id = session_id.to_string();
    let at = to_ms(at);
    store
        .write("end_session", Budget::Short, move |txn, inner| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
            if old.end.is_some() {
                return Ok(EndOutcome {
                    ended_now: false,
                    session: old.record(&inner.keyring)?,
                });
            }
            let mut new = old.clone();
            let end = at.max(old.ts);
            new.end = Some(end);
            new.dur = (end - old.ts) / 1000;
            // Decrypted before any write, so that a key error leaves the batch untouched.
            let session = new.record(&inner.keyring)?;
            put_row(txn, Some(&old), &new)?;
            {
                let mut active = txn.open_table(ACTIVE)?;
                let points_here = active
                    .get(new.uid.as_str())?
                    .is_some_and(|v| v.value() == id);
                if points_here {
                    active.remove(new.uid.as_str())?;
                }
            }
            Ok(EndOutcome {
                ended_now: true,
                session,
            })
        })
        .await
}

pub(super) async fn record_usage(
    store: &EmbeddedStore,
    session_id: &str,
    usage: TurnUsage,
) -> Result<(), StoreError> {
    let id = session_id.to_string();
    store
        .write("record_usage", Budget::Short, move |txn, _| {
            add_usage(txn, &id, &usage)
        })
        .await
}

/// Adds one turn's figures to session `id` and to its user's daily usage (`NotFound` before any write).
fn add_usage(txn: &WriteTransaction, id: &str, usage: &TurnUsage) -> Result<(), StoreError> {
    let old = write_row_get(txn, id)?.ok_or(StoreError::NotFound)?;
    let mut new = old.clone();
    new.tokens += usage.tokens;
    new.max_ms = new.max_ms.max(usage.response_ms);
    new.resp_count += 1;
    new.resp_total_ms += usage.response_ms;
    new.avg_ms = new.resp_total_ms / new.resp_count;
    put_row(txn, Some(&old), &new)?;
    let mut table = txn.open_table(USAGE)?;
    let key = (new.uid.as_str(), utc_day(usage.at));
    let current = table.get(key)?.map_or(0, |v| v.value());
    table.insert(key, current + usage.tokens)?;
    Ok(())
}

/// The answer of a turn (when there is one) and its figures, in one write job: one commit per turn's end.
/// An answer to a session that ended meanwhile is not stored, and its figures still count.
pub(super) async fn finish_turn(
    store: &EmbeddedStore,
    session_id: &str,
    answer: Option<&MessageRecord>,
    usage: Option<TurnUsage>,
) -> Result<(), StoreError> {
    let answer = answer
        .map(|a| SealedMessage::new(&store.inner, session_id, a))
        .transpose()?;
    let id = session_id.to_string();
    store
        .write("finish_turn", Budget::Short, move |txn, _| {
            if let Some(answer) = &answer {
                match put_answer_in(txn, &id, answer) {
                    Ok(()) | Err(StoreError::SessionEnded) => {}
                    Err(e) => return Err(e),
                }
            }
            usage
                .as_ref()
                .map_or(Ok(()), |usage| add_usage(txn, &id, usage))
        })
        .await
}

pub(super) async fn set_help_requested(
    store: &EmbeddedStore,
    session_id: &str,
    requested: bool,
) -> Result<(), StoreError> {
    let id = session_id.to_string();
    store
        .write("set_help", Budget::Short, move |txn, _| {
            update_row(txn, &id, |row| {
                row.help = requested;
                Ok(())
            })
        })
        .await
}
