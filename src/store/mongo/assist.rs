//! Admin assistance and share tokens: conditional single-document updates, atomic across nodes.

use mongodb::bson::{Bson, doc};

use super::MongoStore;
use super::document::*;
use crate::store::error::StoreError;
use crate::store::new_share_token;
use crate::store::records::*;
use crate::store::runner::Budget;

/// How often a conditional assistance update is retried when the session changed under it.
pub(super) const CAS_ATTEMPTS: usize = 8;

pub(super) async fn claim_assistance(
    store: &MongoStore,
    session_id: &str,
    admin: &AssistingAdmin,
    replacing: Option<&str>,
) -> Result<Claim, StoreError> {
    let mut allowed = vec![Bson::Null, Bson::from(""), Bson::from(admin.id.as_str())];
    allowed.extend(replacing.map(Bson::from));
    // Decided by a conditional update (atomic across nodes on MongoDB) with the slot held (one
    // writer at a time on this node, for servers that apply updates as read-modify-write); the
    // cached state is read again afterwards.
    let held = store.slots.hold(session_id).await;
    held.forget();
    let result = store
        .runner
        .run("claim_assistance", Budget::Short, true, || async {
            for _ in 0..CAS_ATTEMPTS {
                // The filter is the check, the update the set: one single-document atomic update.
                let result = store
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
                let d = store
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

pub(super) async fn release_assistance(
    store: &MongoStore,
    session_id: &str,
    admin_id: &str,
) -> Result<Release, StoreError> {
    // Decided by a conditional update (atomic across nodes on MongoDB) with the slot held (one
    // writer at a time on this node, for servers that apply updates as read-modify-write); the
    // cached state is read again afterwards.
    let held = store.slots.hold(session_id).await;
    held.forget();
    let result = store
        .runner
        .run("release_assistance", Budget::Short, true, || async {
            for _ in 0..CAS_ATTEMPTS {
                let result = store
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
                let d = store
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

pub(super) async fn share(store: &MongoStore, session_id: &str) -> Result<String, StoreError> {
    // Decided by a conditional update (atomic across nodes on MongoDB) with the slot held (one
    // writer at a time on this node, for servers that apply updates as read-modify-write); the
    // cached state is read again afterwards.
    let held = store.slots.hold(session_id).await;
    held.forget();
    let result = store
        .runner
        .run("share_session", Budget::Short, true, || async {
            for _ in 0..8 {
                let current = store.require_session(session_id).await?;
                if let Some(token) = current.share_token {
                    return Ok(token);
                }
                let token = new_share_token();
                match store
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

pub(super) async fn session_by_share_token(
    store: &MongoStore,
    token: &str,
) -> Result<Option<SessionRecord>, StoreError> {
    if token.is_empty() {
        return Ok(None);
    }
    store
        .runner
        .run("get_shared", Budget::Short, true, || async {
            match store
                .sessions
                .find_one(doc! { "shareToken": token })
                .projection(no_msgs())
                .await?
            {
                Some(d) => store.session_from_row(d).await.map(Some),
                None => Ok(None),
            }
        })
        .await
}

pub(super) async fn revoke_share(store: &MongoStore, session_id: &str) -> Result<bool, StoreError> {
    // Decided by a conditional update (atomic across nodes on MongoDB) with the slot held (one
    // writer at a time on this node, for servers that apply updates as read-modify-write); the
    // cached state is read again afterwards.
    let held = store.slots.hold(session_id).await;
    held.forget();
    let result = store
        .runner
        .run("revoke_share", Budget::Short, true, || async {
            let current = store.require_session(session_id).await?;
            if current.share_token.is_none() {
                return Ok(false);
            }
            let r = store
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
