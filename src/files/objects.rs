//! Where file contents live: an `object_store` store, a directory of the data directory by default or an
//! S3-compatible bucket, written in parts (a large file is never whole in memory) and read by range.

use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{GetOptions, GetRange, ObjectStore, WriteMultipart};
use secrecy::ExposeSecret;

use super::FilesError;
use super::config::UploadsConfig;

/// Bytes of one part of a multipart write (S3's smallest part is 5 MiB).
const PART: usize = 5 * 1024 * 1024;
/// Parts in flight at once while writing.
const PARTS_IN_FLIGHT: usize = 2;

/// The object store of the uploads.
#[derive(Debug, Clone)]
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    prefix: Option<String>,
}

impl Objects {
    /// The configured store: the bucket of `UPLOADS_S3_BUCKET`, else `<data_dir>/uploads` (created, private).
    pub fn open(config: &UploadsConfig, data_dir: &Path) -> Result<Self, FilesError> {
        let Some(bucket) = &config.s3_bucket else {
            let dir = data_dir.join("uploads");
            crate::settings_kit::create_private_dir(&dir)
                .map_err(|e| FilesError::Setup(format!("cannot create {}: {e}", dir.display())))?;
            let store = LocalFileSystem::new_with_prefix(&dir)
                .map_err(|e| FilesError::Setup(format!("{}: {e}", dir.display())))?;
            return Ok(Self {
                store: Arc::new(store),
                prefix: None,
            });
        };
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(config.s3_region.as_deref().unwrap_or("us-east-1"));
        if let Some(endpoint) = &config.s3_endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
            builder = builder
                .with_access_key_id(id.expose_secret())
                .with_secret_access_key(secret.expose_secret());
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token.expose_secret());
        }
        let store = builder
            .build()
            .map_err(|e| FilesError::Setup(format!("UPLOADS_S3_BUCKET: {e}")))?;
        let prefix = config.s3_prefix.trim_matches('/');
        Ok(Self {
            store: Arc::new(store),
            prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
        })
    }

    /// Which kind of store this is, for logs and the start-up banner.
    pub fn describe(&self) -> String {
        self.store.to_string()
    }

    fn path(&self, id: &str) -> ObjectPath {
        match &self.prefix {
            Some(prefix) => ObjectPath::from(format!("{prefix}/{id}")),
            None => ObjectPath::from(id),
        }
    }

    /// Starts writing object `id`.
    pub async fn writer(&self, id: &str) -> Result<ObjectWriter, FilesError> {
        let upload = self
            .store
            .put_multipart(&self.path(id))
            .await
            .map_err(FilesError::objects)?;
        Ok(ObjectWriter {
            inner: Some(WriteMultipart::new_with_chunk_size(upload, PART)),
        })
    }

    /// The bytes `range` of object `id`, as they arrive.
    pub async fn read(
        &self,
        id: &str,
        range: Range<u64>,
    ) -> Result<BoxStream<'static, Result<Bytes, FilesError>>, FilesError> {
        let options = GetOptions {
            range: Some(GetRange::Bounded(range)),
            ..GetOptions::default()
        };
        let result = self
            .store
            .get_opts(&self.path(id), options)
            .await
            .map_err(FilesError::objects)?;
        Ok(result
            .into_stream()
            .map(|chunk| chunk.map_err(FilesError::objects))
            .boxed())
    }

    /// The whole stored object `id`, as stored (tests and tools look at what is at rest).
    pub async fn raw(&self, id: &str) -> Result<Bytes, FilesError> {
        let result = self
            .store
            .get(&self.path(id))
            .await
            .map_err(FilesError::objects)?;
        result.bytes().await.map_err(FilesError::objects)
    }

    /// Deletes object `id`; deleting one that is gone is not an error.
    pub async fn delete(&self, id: &str) -> Result<(), FilesError> {
        match self.store.delete(&self.path(id)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(FilesError::objects(e)),
        }
    }
}

/// An object being written. Dropped before [`finish`](Self::finish), the partial object is aborted in the
/// background: an interrupted upload leaves nothing behind.
pub struct ObjectWriter {
    inner: Option<WriteMultipart>,
}

impl ObjectWriter {
    /// Appends bytes, waiting while too many parts are in flight (bounded memory).
    pub async fn write(&mut self, bytes: Bytes) -> Result<(), FilesError> {
        let Some(inner) = self.inner.as_mut() else {
            return Err(FilesError::Objects("write after finish".into()));
        };
        inner
            .wait_for_capacity(PARTS_IN_FLIGHT)
            .await
            .map_err(FilesError::objects)?;
        inner.put(bytes);
        Ok(())
    }

    /// Completes the object.
    pub async fn finish(mut self) -> Result<(), FilesError> {
        match self.inner.take() {
            Some(inner) => inner.finish().await.map(drop).map_err(FilesError::objects),
            None => Ok(()),
        }
    }

    /// Discards what was written.
    pub async fn abort(mut self) {
        if let Some(inner) = self.inner.take()
            && let Err(e) = inner.abort().await
        {
            tracing::warn!(error = %e, "aborting a partial upload failed");
        }
    }
}

impl Drop for ObjectWriter {
    fn drop(&mut self) {
        if let Some(inner) = self.inner.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(e) = inner.abort().await {
                    tracing::warn!(error = %e, "aborting an interrupted upload failed");
                }
            });
        }
    }
}
