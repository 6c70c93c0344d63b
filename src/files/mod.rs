//! Uploads: files users share in chat sessions, kept encrypted in an object store ([`objects`]) with their
//! metadata in the session store ([`crate::store::FileRecord`]).
//!
//! [`Files`] is the one service over them: [`upload`](Files::upload) checks limits and the type while it
//! encrypts and writes the body as it arrives; [`open`](Files::open) decrypts any byte range as it is read;
//! access rules, signed links, deletion with sessions and users, the orphan purge and key rotation (the
//! file's data key is re-wrapped, the contents stay) live here too. Layout and formats: `docs/storage.md`.

pub mod config;
mod error;
mod link;
pub mod names;
pub mod objects;
pub mod sealed;
pub mod sniff;

use std::ops::RangeInclusive;
use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::store::crypto::Binding;
use crate::store::maintenance::{Start, Stop, periodically};
use crate::store::{
    FileFilter, FileRecord, Keyring, SessionQuery, SessionRecord, SortField, SortOrder,
    StatusFilter, Store,
};

pub use config::UploadsConfig;
pub use error::FilesError;
pub use link::SignedLink;
pub use objects::Objects;
pub use sniff::{Family, Kind};

use sealed::{DataKey, Opener, Plan, Sealer};

/// Most files one listing or purge batch handles.
const BATCH: usize = 500;
/// Bytes read from the request body at a time.
const READ: usize = 64 * 1024;

/// A stored file as callers see it: the record with its name opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredFile {
    /// The record (its `name` is sealed).
    pub record: FileRecord,
    /// The file name.
    pub name: String,
}

impl StoredFile {
    /// What the file is, by its stored content type.
    pub fn family(&self) -> Option<Family> {
        sniff::family_of(&self.record.content_type)
    }
}

/// Who asks for a file.
#[derive(Debug, Clone, Copy)]
pub struct Caller<'a> {
    /// The caller's user id.
    pub user_id: &'a str,
    /// Whether the token has an admin role.
    pub admin: bool,
}

/// The uploads service.
pub struct Files {
    objects: Objects,
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    config: UploadsConfig,
    prefix: String,
}

impl std::fmt::Debug for Files {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Files")
            .field("objects", &self.objects)
            .finish_non_exhaustive()
    }
}

impl Files {
    /// The service over `objects`, with metadata in `store`, keys from `keyring`, and links below the
    /// HTTP path `prefix`.
    pub fn new(
        objects: Objects,
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        config: UploadsConfig,
        prefix: &str,
    ) -> Self {
        Self {
            objects,
            store,
            keyring,
            config,
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// The settings.
    pub fn config(&self) -> &UploadsConfig {
        &self.config
    }

    /// The object store.
    pub fn objects(&self) -> &Objects {
        &self.objects
    }

    /// The download path of file `id` (`{prefix}/uploads/{id}`), which the `file_url` of a message naming
    /// an upload carries.
    pub fn download_path(&self, id: &str) -> String {
        format!("{}/uploads/{id}", self.prefix)
    }

    /// Stores the file read from `body` for `user_id` under the name `sent_name` (the caller applies the
    /// upload rate limit). The body is sealed and written as it arrives and refused as soon as it passes the
    /// size limit or the user's quota; nothing is left behind when it fails.
    pub async fn upload(
        &self,
        user_id: &str,
        sent_name: Option<&str>,
        mut body: impl AsyncRead + Unpin + Send,
    ) -> Result<StoredFile, FilesError> {
        let kept = self
            .store
            .list_files(FileFilter::User(user_id), self.config.max_files + 1)
            .await?;
        let used: u64 = kept.iter().map(|f| f.size).sum();
        if kept.len() >= self.config.max_files || used >= self.config.quota {
            return Err(FilesError::QuotaExceeded);
        }
        let room = self.config.quota - used;
        let limit = self.config.max_size.min(room);

        let mut head = Vec::with_capacity(sniff::HEAD);
        let mut buf = vec![0u8; READ];
        let complete = loop {
            let want = (sniff::HEAD - head.len()).min(READ);
            let n = body
                .read(&mut buf[..want])
                .await
                .map_err(FilesError::body)?;
            if n == 0 {
                break true;
            }
            head.extend_from_slice(&buf[..n]);
            if head.len() >= sniff::HEAD {
                break false;
            }
        };
        if head.len() as u64 > limit {
            return Err(over(head.len() as u64, self.config.max_size));
        }
        let kind = sniff::kind_of(&head, complete).ok_or(FilesError::UnsupportedType)?;

        let id = crate::store::new_session_id();
        let (key, key_bytes) = DataKey::generate();
        let mut intake = Intake {
            sealer: Sealer::new(key),
            hash: Sha256::new(),
            size: 0,
            limit,
            max_size: self.config.max_size,
        };
        let mut writer = self.objects.writer(&id).await?;
        writer.write(sealed::header()).await?;
        let mut next: &[u8] = &head;
        loop {
            let chunks = match intake.take(next) {
                Ok(chunks) => chunks,
                Err(e) => {
                    writer.abort().await;
                    return Err(e);
                }
            };
            for chunk in chunks {
                writer.write(chunk).await?;
            }
            let n = match body.read(&mut buf).await {
                Ok(n) => n,
                Err(e) => {
                    writer.abort().await;
                    return Err(FilesError::body(e));
                }
            };
            if n == 0 {
                break;
            }
            next = &buf[..n];
        }
        let size = intake.size;
        let sha256 = hex::encode(intake.hash.finalize());
        writer
            .write(intake.sealer.finish().map_err(|_| FilesError::Seal)?)
            .await?;
        writer.finish().await?;

        let name = names::sanitise(sent_name.unwrap_or_default());
        let record = FileRecord {
            wrapped_key: self
                .keyring
                .encrypt(&STANDARD.encode(key_bytes), Binding::FileKey { file: &id })?,
            name: self
                .keyring
                .encrypt(&name, Binding::FileName { file: &id })?,
            key_id: self.keyring.active_id().to_string(),
            id,
            user_id: user_id.to_string(),
            session_id: None,
            content_type: kind.content_type.to_string(),
            size,
            sha256,
            created_at: crate::store::now(),
            attached_at: None,
        };
        if let Err(e) = self.store.insert_file(&record).await {
            let _ = self.objects.delete(&record.id).await;
            return Err(e.into());
        }
        Ok(StoredFile { record, name })
    }

    /// The file `id` with its name opened, whoever owns it.
    pub async fn get(&self, id: &str) -> Result<Option<StoredFile>, FilesError> {
        if !valid_id(id) {
            return Ok(None);
        }
        match self.store.get_file(id).await? {
            Some(record) => Ok(Some(self.opened(record)?)),
            None => Ok(None),
        }
    }

    fn opened(&self, record: FileRecord) -> Result<StoredFile, FilesError> {
        let name =
            self.keyring
                .decrypt(&record.name, Binding::FileName { file: &record.id }, false)?;
        Ok(StoredFile { record, name })
    }

    /// The file `id` when `caller` may read it: its owner; once a message posted it in a session, also the
    /// session's user and the administrator assisting that session. Anything else is `None`, exactly like
    /// a missing file.
    pub async fn readable(
        &self,
        id: &str,
        caller: Caller<'_>,
    ) -> Result<Option<StoredFile>, FilesError> {
        let Some(file) = self.get(id).await? else {
            return Ok(None);
        };
        if file.record.user_id == caller.user_id {
            return Ok(Some(file));
        }
        let Some(session_id) = file.record.session_id.as_deref() else {
            return Ok(None);
        };
        let Some(session) = self.store.get_session(session_id).await? else {
            return Ok(None);
        };
        let allowed = session.user_id == caller.user_id
            || (caller.admin && session.assisting_admin_id.as_deref() == Some(caller.user_id));
        Ok(allowed.then_some(file))
    }

    /// The plaintext bytes `range` (the whole file when `None`) of `file`, decrypted as they are read.
    pub async fn open(
        &self,
        file: &FileRecord,
        range: Option<RangeInclusive<u64>>,
    ) -> Result<impl Stream<Item = Result<Bytes, FilesError>> + Send + 'static, FilesError> {
        let key = self.data_key(file)?;
        let plan = Plan::new(file.size, range);
        let source: BoxStream<'static, Result<Bytes, FilesError>> = if plan.is_empty() {
            stream::empty().boxed()
        } else {
            self.objects.read(&file.id, plan.fetch.clone()).await?
        };
        let opener = Opener::new(key, plan);
        Ok(decrypting(source, opener))
    }

    /// At most the first `max` bytes of `file`, in memory (what a model is given).
    pub async fn read_head(&self, file: &FileRecord, max: u64) -> Result<Bytes, FilesError> {
        if file.size == 0 || max == 0 {
            return Ok(Bytes::new());
        }
        let end = file.size.min(max) - 1;
        let mut stream = Box::pin(self.open(file, Some(0..=end)).await?);
        let mut out = Vec::with_capacity(usize::try_from(end + 1).unwrap_or(0));
        while let Some(chunk) = stream.next().await {
            out.extend_from_slice(&chunk?);
        }
        Ok(out.into())
    }

    fn data_key(&self, file: &FileRecord) -> Result<DataKey, FilesError> {
        let text = self.keyring.decrypt(
            &file.wrapped_key,
            Binding::FileKey { file: &file.id },
            false,
        )?;
        let bytes: [u8; 32] = STANDARD
            .decode(text)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(FilesError::Seal)?;
        Ok(DataKey::from_bytes(&bytes))
    }

    /// Records that a message of `session` names `file` (the first session wins); `None` when the file is
    /// gone.
    pub async fn attach(
        &self,
        file: &FileRecord,
        session: &SessionRecord,
    ) -> Result<Option<FileRecord>, FilesError> {
        if file.session_id.is_some() {
            return Ok(Some(file.clone()));
        }
        Ok(self.store.attach_file(&file.id, &session.id).await?)
    }

    /// Deletes a file: its object, then its metadata (a failure in between leaves metadata that the next
    /// delete or purge removes).
    pub async fn remove(&self, file: &FileRecord) -> Result<(), FilesError> {
        self.objects.delete(&file.id).await?;
        self.store.delete_file(&file.id).await?;
        Ok(())
    }

    /// Deletes every file `filter` selects, in batches; returns how many.
    async fn remove_all(&self, filter: FileFilter<'_>) -> Result<u64, FilesError> {
        let mut removed = 0;
        loop {
            let batch = self.store.list_files(filter, BATCH).await?;
            if batch.is_empty() {
                return Ok(removed);
            }
            for file in &batch {
                self.remove(file).await?;
                removed += 1;
            }
            if batch.len() < BATCH {
                return Ok(removed);
            }
        }
    }

    /// Deletes the files of a user (before the user's data goes): the user's own, and those posted in the
    /// user's sessions by an administrator.
    pub async fn remove_user(&self, user_id: &str) -> Result<u64, FilesError> {
        let own = self.remove_all(FileFilter::User(user_id)).await?;
        let query = SessionQuery {
            user_id: Some(user_id.to_string()),
            ..SessionQuery::default()
        };
        Ok(own + self.remove_in_sessions(query, |_| false).await?)
    }

    /// Deletes the files posted in a session.
    pub async fn remove_session(&self, session_id: &str) -> Result<u64, FilesError> {
        self.remove_all(FileFilter::Session(session_id)).await
    }

    /// Deletes the files of the sessions ended before `cutoff` (the retention purge calls this just before
    /// it deletes those sessions), walking the ended sessions in end-time order.
    pub async fn remove_sessions_ended_before(
        &self,
        cutoff: OffsetDateTime,
    ) -> Result<u64, FilesError> {
        let query = SessionQuery {
            status: Some(StatusFilter::Ended),
            sort_by: SortField::EndTime,
            order: SortOrder::Asc,
            ..SessionQuery::default()
        };
        self.remove_in_sessions(query, |s| s.ended_at.is_none_or(|end| end >= cutoff))
            .await
    }

    /// Deletes the files of the sessions `query` lists, page by page (cursor paging, [`BATCH`] at a
    /// time), stopping at the first session for which `stop` holds; returns how many files went.
    async fn remove_in_sessions(
        &self,
        mut query: SessionQuery,
        stop: impl Fn(&SessionRecord) -> bool,
    ) -> Result<u64, FilesError> {
        query.limit = BATCH;
        let mut removed = 0;
        loop {
            let page = self.store.list_sessions(&query).await?;
            for session in &page.sessions {
                if stop(session) {
                    return Ok(removed);
                }
                removed += self.remove_session(&session.id).await?;
            }
            match page.next_cursor {
                Some(next) if !page.sessions.is_empty() => query.cursor = Some(next),
                _ => return Ok(removed),
            }
        }
    }

    /// The retention purge at `now`: the files of the sessions ended more than `retention_days` ago, then
    /// the sessions themselves ([`crate::store::maintenance::purge_expired`]). Returns the sessions purged.
    pub async fn purge_expired(
        &self,
        retention_days: u32,
        now: OffsetDateTime,
    ) -> Result<u64, FilesError> {
        let cutoff = crate::store::maintenance::retention_cutoff(retention_days, now);
        let files = self.remove_sessions_ended_before(cutoff).await?;
        if files > 0 {
            tracing::info!(
                files,
                "purged the files of sessions past the retention period"
            );
        }
        Ok(
            crate::store::maintenance::purge_expired(self.store.as_ref(), retention_days, now)
                .await?,
        )
    }

    /// The files posted in a session (at most 500, oldest first).
    pub async fn session_files(&self, session_id: &str) -> Result<Vec<StoredFile>, FilesError> {
        self.store
            .list_files(FileFilter::Session(session_id), BATCH)
            .await?
            .into_iter()
            .map(|record| self.opened(record))
            .collect()
    }

    /// The orphan purge at `now`: uploads no message named within `orphan_ttl`. Returns how many went.
    pub async fn purge(&self, now: OffsetDateTime) -> Result<u64, FilesError> {
        self.remove_all(FileFilter::UnattachedBefore(now - self.config.orphan_ttl))
            .await
    }

    /// Re-wraps the data keys (and names) of files not under the active key; the contents stay as they
    /// are. Returns how many files changed.
    pub async fn rotate(&self) -> Result<u64, FilesError> {
        let active = self.keyring.active_id().to_string();
        let mut changed = 0;
        loop {
            let batch = self
                .store
                .list_files(FileFilter::NotUnderKey(&active), BATCH)
                .await?;
            let full = batch.len() == BATCH;
            for file in batch {
                let key = self.keyring.decrypt(
                    &file.wrapped_key,
                    Binding::FileKey { file: &file.id },
                    false,
                )?;
                let name = self.keyring.decrypt(
                    &file.name,
                    Binding::FileName { file: &file.id },
                    false,
                )?;
                let wrapped = self
                    .keyring
                    .encrypt(&key, Binding::FileKey { file: &file.id })?;
                let sealed_name = self
                    .keyring
                    .encrypt(&name, Binding::FileName { file: &file.id })?;
                if self
                    .store
                    .update_file_key(&file.id, &active, &wrapped, &sealed_name)
                    .await?
                {
                    changed += 1;
                }
            }
            if !full {
                return Ok(changed);
            }
        }
    }

    /// A signed download link to `file_id`, valid for `uploads.link_ttl` from `now`.
    pub fn link(&self, file_id: &str, now: OffsetDateTime) -> SignedLink {
        SignedLink::sign(
            self.keyring.signing_key(),
            &self.download_path(file_id),
            file_id,
            now + self.config.link_ttl,
        )
    }

    /// Whether `signature` is the one [`link`](Self::link) gave for `file_id` with expiry `expires` (Unix
    /// seconds) and the link has not expired at `now`.
    pub fn verify_link(
        &self,
        file_id: &str,
        expires: i64,
        signature: &str,
        now: OffsetDateTime,
    ) -> bool {
        link::verify(self.keyring.signing_key(), file_id, expires, signature, now)
    }
}

/// Runs [`Files::purge`] every `interval` (the first run after one interval) until `shutdown`.
pub fn spawn_purge(
    files: Arc<Files>,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    periodically(
        interval,
        shutdown,
        Start::AfterInterval,
        Stop::Return,
        move || {
            let files = Arc::clone(&files);
            async move {
                match files.purge(OffsetDateTime::now_utc()).await {
                    Ok(0) => {}
                    Ok(removed) => tracing::info!(removed, "purged orphaned uploads"),
                    Err(e) => tracing::warn!(error = %e, "upload purge failed"),
                }
            }
        },
    )
}

/// Runs [`Files::purge_expired`] now and then every `interval` until `shutdown`: sessions past the
/// retention period go with their files.
pub fn spawn_retention(
    files: Arc<Files>,
    retention_days: u32,
    interval: std::time::Duration,
    shutdown: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    periodically(interval, shutdown, Start::Now, Stop::Return, move || {
        let files = Arc::clone(&files);
        async move {
            if let Err(e) = files
                .purge_expired(retention_days, OffsetDateTime::now_utc())
                .await
            {
                tracing::warn!(error = %e, "retention purge failed");
            }
        }
    })
}

/// An upload's body as it is taken in: its size against the limits, its hash and its sealed chunks.
struct Intake {
    sealer: Sealer,
    hash: Sha256,
    size: u64,
    /// The most this upload may hold: `max_size`, or less when the user's quota has less room.
    limit: u64,
    max_size: u64,
}

/// The refusal of an upload that reached `size` bytes, over its limit: too large, or over the quota.
fn over(size: u64, max_size: u64) -> FilesError {
    if size > max_size {
        FilesError::TooLarge
    } else {
        FilesError::QuotaExceeded
    }
}

impl Intake {
    /// Takes the next bytes; returns the sealed chunks they complete.
    fn take(&mut self, bytes: &[u8]) -> Result<Vec<Bytes>, FilesError> {
        self.size += bytes.len() as u64;
        if self.size > self.limit {
            return Err(over(self.size, self.max_size));
        }
        self.hash.update(bytes);
        self.sealer.push(bytes).map_err(|_| FilesError::Seal)
    }
}

/// Whether `id` looks like an upload id (32 lowercase hex characters).
pub fn valid_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The plaintext of `source` (object bytes) through `opener`.
fn decrypting(
    source: BoxStream<'static, Result<Bytes, FilesError>>,
    opener: Opener,
) -> impl Stream<Item = Result<Bytes, FilesError>> + Send + 'static {
    stream::unfold(
        (source, Some(opener), Vec::<Bytes>::new().into_iter()),
        |(mut source, mut opener, mut ready)| async move {
            loop {
                if let Some(chunk) = ready.next() {
                    return Some((Ok(chunk), (source, opener, ready)));
                }
                let current = opener.as_mut()?;
                match source.next().await {
                    Some(Ok(bytes)) => match current.push(&bytes) {
                        Ok(chunks) => ready = chunks.into_iter(),
                        Err(_) => return Some((Err(FilesError::Seal), (source, None, ready))),
                    },
                    Some(Err(e)) => return Some((Err(e), (source, None, ready))),
                    None => {
                        let last = opener.take()?.finish();
                        return match last {
                            Ok(Some(chunk)) => Some((Ok(chunk), (source, None, ready))),
                            Ok(None) => None,
                            Err(_) => Some((Err(FilesError::Seal), (source, None, ready))),
                        };
                    }
                }
            }
        },
    )
}
