//! The storage boundary's error enum.

use super::crypto::CryptoError;

/// A store operation that did not succeed. Messages never contain keys, plaintext or connection strings.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The session does not exist.
    #[error("session not found")]
    NotFound,
    /// The session has ended and accepts no more messages.
    #[error("session has ended")]
    SessionEnded,
    /// A pagination cursor that this server did not issue for this query.
    #[error("invalid pagination cursor")]
    InvalidCursor,
    /// A query parameter that cannot be served.
    #[error("invalid query: {0}")]
    InvalidQuery(String),
    /// Stored data cannot be decrypted (wrong key, unknown key id, tampering).
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    /// The operation did not finish within its timeout (after retries).
    #[error("store operation {operation} timed out")]
    Timeout {
        /// Name of the operation.
        operation: &'static str,
    },
    /// MongoDB driver error.
    #[error("mongodb: {0}")]
    Mongo(#[from] mongodb::error::Error),
    /// The database refused one write of a batch (its code and message).
    #[error("write refused: {0}")]
    Rejected(String),
    /// Embedded database error.
    #[error("embedded store: {0}")]
    Embedded(String),
    /// A stored record cannot be decoded.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// Store set-up failed (keys, data directory).
    #[error("store setup: {0}")]
    Setup(String),
}

impl StoreError {
    /// True when retrying may succeed. `idempotent` operations are retried on every transient failure;
    /// others only when the request certainly did not reach the server.
    pub fn is_transient(&self, idempotent: bool) -> bool {
        use mongodb::error::ErrorKind;
        match self {
            StoreError::Timeout { .. } => idempotent,
            StoreError::Mongo(e) => match e.kind.as_ref() {
                ErrorKind::ServerSelection { .. } | ErrorKind::ConnectionPoolCleared { .. } => true,
                ErrorKind::Io(_) => idempotent,
                _ => idempotent && e.contains_label(mongodb::error::RETRYABLE_WRITE_ERROR),
            },
            _ => false,
        }
    }
}

macro_rules! embedded_error {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Embedded(e.to_string())
            }
        }
    )*};
}

embedded_error!(
    redb::Error,
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);
