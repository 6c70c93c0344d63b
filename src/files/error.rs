//! The uploads boundary's error enum.

use std::time::Duration;

use crate::store::{CryptoError, StoreError};

/// Why an upload, download or file operation failed. Messages never contain file contents or keys.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The file is larger than `uploads.max_size`.
    #[error("file too large")]
    TooLarge,
    /// The user keeps too many bytes or files.
    #[error("upload quota exceeded")]
    QuotaExceeded,
    /// The file's first bytes are not of an allowed type.
    #[error("file type not allowed")]
    UnsupportedType,
    /// Too many uploads; retry after this long.
    #[error("rate limited for {0:?}")]
    RateLimited(Duration),
    /// Reading the request body failed (the client went away or sent a broken body).
    #[error("reading the upload failed: {0}")]
    Body(String),
    /// The object store failed.
    #[error("object store: {0}")]
    Objects(String),
    /// A stored object does not open with its key, or a data key does not unwrap.
    #[error("stored file does not open (altered, truncated or another key)")]
    Seal,
    /// The metadata store failed.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// A key of the keyring is missing or wrong.
    #[error("keys: {0}")]
    Crypto(#[from] CryptoError),
    /// The transcription service failed for a voice message.
    #[error("transcription failed")]
    Transcription,
    /// The object store could not be set up.
    #[error("uploads: {0}")]
    Setup(String),
}

impl FilesError {
    /// An object store failure.
    pub(crate) fn objects(e: object_store::Error) -> Self {
        Self::Objects(e.to_string())
    }

    /// A request body failure.
    pub(crate) fn body(e: std::io::Error) -> Self {
        // A body over the HTTP layer's limit surfaces as an I/O error naming the limit.
        Self::Body(e.to_string())
    }

    /// True for failures of the server (as opposed to refusals of the request).
    pub fn is_server_error(&self) -> bool {
        matches!(
            self,
            Self::Objects(_)
                | Self::Seal
                | Self::Store(_)
                | Self::Crypto(_)
                | Self::Setup(_)
                | Self::Transcription
        )
    }
}
