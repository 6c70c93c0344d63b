//! Metadata of uploaded files as the stores keep it ([`FileRecord`]) and the selections
//! [`Store::list_files`](super::Store::list_files) serves ([`FileFilter`]).
//!
//! A file's contents live in the object store, encrypted with a data key of its own; the store keeps
//! what describes the file and that data key, wrapped by a keyring key. Every string here is stored as
//! given: the caller seals what must be secret (the name, the data key) before it reaches the store.

use time::OffsetDateTime;

/// Metadata of one uploaded file (its contents are in the object store, encrypted).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRecord {
    /// File id: 32 lowercase hex characters (`_id`).
    pub id: String,
    /// Owner (`uid`).
    pub user_id: String,
    /// The session the file was posted in; `None` until a message names it (`sid`).
    pub session_id: Option<String>,
    /// File name as given by the caller, which seals it; opaque to the store (`nm`).
    pub name: String,
    /// Media type (`contentType`).
    pub content_type: String,
    /// Size of the plaintext in bytes (`size`).
    pub size: u64,
    /// SHA-256 of the plaintext, hex (`sha256`).
    pub sha256: String,
    /// Id of the keyring key that wraps the file's data key (`keyId`).
    pub key_id: String,
    /// The sealed data key, opaque to the store (`wrappedKey`).
    pub wrapped_key: String,
    /// Upload time, at the store's millisecond precision ([`now`](super::now)) (`ts`).
    pub created_at: OffsetDateTime,
    /// When the file was attached to its session; `None` while unattached (`attTs`).
    pub attached_at: Option<OffsetDateTime>,
}

/// Which files [`Store::list_files`](super::Store::list_files) returns: at most its `limit`, oldest
/// created first (ties by id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFilter<'a> {
    /// Every file of a user.
    User(&'a str),
    /// The files attached to a session.
    Session(&'a str),
    /// Files never attached and created before the time (orphans of abandoned uploads).
    UnattachedBefore(OffsetDateTime),
    /// Files attached before the time (candidates whose session may be gone).
    AttachedBefore(OffsetDateTime),
    /// Files whose data key is wrapped by a key other than the given key id (key rotation).
    NotUnderKey(&'a str),
}

impl FileFilter<'_> {
    /// True when `file` is selected.
    pub fn matches(&self, file: &FileRecord) -> bool {
        match *self {
            Self::User(user) => file.user_id == user,
            Self::Session(session) => file.session_id.as_deref() == Some(session),
            Self::UnattachedBefore(t) => file.session_id.is_none() && file.created_at < t,
            Self::AttachedBefore(t) => file.attached_at.is_some_and(|at| at < t),
            Self::NotUnderKey(key) => file.key_id != key,
        }
    }
}

/// The bound in milliseconds of "before `t`" over times stored at millisecond precision: a stored time
/// `ms` is before `t` exactly when `ms < before_ms(t)` (`t` rounded up to the next millisecond).
pub(crate) fn before_ms(t: OffsetDateTime) -> i64 {
    let nanos = t.unix_timestamp_nanos();
    let ms = nanos.div_euclid(1_000_000) + i128::from(nanos.rem_euclid(1_000_000) != 0);
    i64::try_from(ms).unwrap_or(if ms < 0 { i64::MIN } else { i64::MAX })
}

/// Refuses to attach a file to the empty session id (which would read as unattached).
pub(crate) fn check_session_id(session_id: &str) -> Result<(), super::StoreError> {
    if session_id.is_empty() {
        return Err(super::StoreError::InvalidQuery(
            "a file is attached to a session id, not to an empty one".into(),
        ));
    }
    Ok(())
}

/// The error of inserting a file whose id is taken.
pub(crate) fn duplicate_file(id: &str) -> super::StoreError {
    super::StoreError::Rejected(format!("a file with id {id} exists"))
}

#[cfg(test)]
mod tests {
    use time::Duration;

    use super::*;

    #[test]
    fn before_rounds_up_to_the_next_millisecond() {
        let at = crate::store::from_ms(1_700_000_000_123);
        assert_eq!(before_ms(at), 1_700_000_000_123);
        assert_eq!(before_ms(at + Duration::nanoseconds(1)), 1_700_000_000_124);
        assert_eq!(before_ms(at - Duration::nanoseconds(1)), 1_700_000_000_123);
        assert_eq!(
            before_ms(OffsetDateTime::UNIX_EPOCH - Duration::nanoseconds(1)),
            0
        );
    }
}
