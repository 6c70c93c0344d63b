//! Admin assistance (one check-and-set per write transaction) and share tokens.

use redb::ReadableTable;

use super::EmbeddedStore;
use super::rows::*;
use super::tables::*;
use crate::store::error::StoreError;
use crate::store::new_share_token;
use crate::store::records::*;
use crate::store::runner::Budget;

/// Applies `change` to the session `id` in the batch's write transaction; `NotFound` if it does not
/// exist. `change` must not fail (it runs after the checks, and the row is written after it).
/// The assisting admin a row names.
pub(super) fn row_assistant(row: &SessionRow) -> Option<AssistingAdmin> {
    row.admin_id
        .clone()
        .filter(|id| !id.is_empty())
        .map(|id| AssistingAdmin {
            id,
            name: row.admin_name.clone().unwrap_or_default(),
        })
}

pub(super) async fn claim_assistance(
    store: &EmbeddedStore,
    session_id: &str,
    admin: &AssistingAdmin,
    replacing: Option<&str>,
) -> Result<Claim, StoreError> {
    let id = session_id.to_string();
    let admin = admin.clone();
    let replacing = replacing.map(str::to_string);
    // Check and set in one write transaction.
    store
        .write("claim_assistance", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
            if old.end.is_some() {
                return Err(StoreError::SessionEnded);
            }
            if let Some(current) = row_assistant(&old)
                .filter(|a| a.id != admin.id && Some(&a.id) != replacing.as_ref())
            {
                return Ok(Claim::Held(current));
            }
            let mut new = old.clone();
            new.assisted = true;
            new.admin_id = Some(admin.id.clone());
            new.admin_name = Some(admin.name.clone());
            put_row(txn, Some(&old), &new)?;
            Ok(Claim::Granted)
        })
        .await
}

pub(super) async fn release_assistance(
    store: &EmbeddedStore,
    session_id: &str,
    admin_id: &str,
) -> Result<Release, StoreError> {
    let id = session_id.to_string();
    let admin_id = admin_id.to_string();
    store
        .write("release_assistance", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
            match row_assistant(&old) {
                None => Ok(Release::NotAssisted),
                Some(current) if current.id != admin_id => Ok(Release::Held(current)),
                Some(_) => {
                    let mut new = old.clone();
                    new.admin_id = None;
                    new.admin_name = None;
                    put_row(txn, Some(&old), &new)?;
                    Ok(Release::Released)
                }
            }
        })
        .await
}

pub(super) async fn share(store: &EmbeddedStore, session_id: &str) -> Result<String, StoreError> {
    let id = session_id.to_string();
    store
        .write("share_session", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
            if let Some(token) = &old.share {
                return Ok(token.clone());
            }
            let token = {
                let mut shares = txn.open_table(SHARES)?;
                let mut token = new_share_token();
                while shares.get(token.as_str())?.is_some() {
                    token = new_share_token();
                }
                shares.insert(token.as_str(), id.as_str())?;
                token
            };
            let mut new = old.clone();
            new.share = Some(token.clone());
            put_row(txn, Some(&old), &new)?;
            Ok(token)
        })
        .await
}

pub(super) async fn session_by_share_token(
    store: &EmbeddedStore,
    token: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    let token = token.to_string();
    store
        .blocking("get_shared", Budget::Short, move |inner| {
            let txn = inner.db.begin_read()?;
            let id = txn
                .open_table(SHARES)?
                .get(token.as_str())?
                .map(|v| v.value().to_string());
            let Some(id) = id else { return Ok(None) };
            read_row(&txn, &id)?
                .map(|r| r.record(&inner.keyring))
                .transpose()
        })
        .await
}

pub(super) async fn revoke_share(
    store: &EmbeddedStore,
    session_id: &str,
) -> Result<bool, StoreError> {
    let id = session_id.to_string();
    store
        .write("revoke_share", Budget::Short, move |txn, _| {
            let old = write_row_get(txn, &id)?.ok_or(StoreError::NotFound)?;
            let Some(token) = &old.share else {
                return Ok(false);
            };
            txn.open_table(SHARES)?.remove(token.as_str())?;
            let mut new = old.clone();
            new.share = None;
            put_row(txn, Some(&old), &new)?;
            Ok(true)
        })
        .await
}
