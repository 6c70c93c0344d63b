//! The state shared by every request and connection ([`AppState`]) and how it is built from the settings.
//! The HTTP routes (`api`) and the WebSocket layer (`ws`) take it; the server (`app`) builds it and serves
//! them, so nothing here depends on the routes.

mod http_limits;
pub mod key_status;

use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditLog, StoreAuditLog};
use crate::auth::JwtKeys;
use crate::chat::Chat;
use crate::cluster::{Cluster, RedisBus};
use crate::config::Settings;
use crate::files::{Files, Objects};
use crate::hub::{BacklogLimits, EventBus, Hub, LocalBus};
use crate::llm::{Llm, Transcriber};
use crate::metrics::Metrics;
use crate::notify::Notifier;
use crate::store::Store;

pub use http_limits::HttpLimits;
pub use key_status::KeyStatus;

/// State shared by every request and connection.
pub struct AppState {
    /// The validated configuration.
    pub settings: Arc<Settings>,
    /// Token verification keys.
    pub keys: JwtKeys,
    /// Prometheus metrics.
    pub metrics: Arc<Metrics>,
    /// Sessions and messages.
    pub store: Arc<dyn Store>,
    /// Uploaded files.
    pub files: Arc<Files>,
    /// Model providers.
    pub llm: Arc<Llm>,
    /// This node's connections.
    pub hub: Hub,
    /// The chat services.
    pub chat: Arc<Chat>,
    /// Help-request email, webhook and SMS notifications.
    pub notifier: Arc<Notifier>,
    /// HTTP rate limits.
    pub http_limits: HttpLimits,
    /// Cancelled when the server shuts down: connections close with 1001.
    pub shutdown: CancellationToken,
    /// The audit log of administrator actions, kept in the store (the chat service records takeovers,
    /// leaves and transfers in the same log).
    pub audit: Arc<dyn AuditLog>,
    /// Set when shutdown begins: new WebSocket connections are refused and readiness fails.
    pub draining: std::sync::atomic::AtomicBool,
    /// The encryption key check of the stored data (start-up and `/readyz`).
    pub key_status: KeyStatus,
    /// The link to the other nodes (cluster mode, `REDIS_URL`).
    pub cluster: Option<Arc<Cluster>>,
}

impl AppState {
    /// Builds the state from validated settings: opens the store (checking its keys), the models, the hub,
    /// the notifier and the chat services.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let keys = JwtKeys::new(
            &settings.auth.jwt_secret,
            settings.auth.jwt_public_key_pem.as_deref(),
        )
        .context("JWT_PUBLIC_KEY_FILE")?;
        let metrics = Arc::new(Metrics::new());
        let settings = Arc::new(settings);
        let (store, keyring) = crate::store::open_with_keyring(
            &settings.store,
            &settings.data_dir,
            settings.is_production(),
            Arc::clone(&metrics),
        )
        .await
        .context("store")?;
        let files = Arc::new(Files::new(
            Objects::open(&settings.uploads, &settings.data_dir).context("uploads")?,
            Arc::clone(&store),
            keyring,
            settings.uploads.clone(),
            &settings.server.path_prefix,
        ));
        let key_status = KeyStatus::at_start(store.as_ref(), settings.is_production())
            .await
            .context("encryption keys")?;
        crate::store::maintenance::refresh_active_sessions(store.as_ref(), &metrics).await;
        let llm = Arc::new(Llm::new(&settings.llm, Arc::clone(&metrics)).context("llm")?);
        let ws = &settings.ws;
        if let Some(frames) = ws.deprecated_outbound_queue {
            tracing::warn!(
                outbound_queue = frames,
                "chatbox.websocket.outbound_queue (WS_OUTBOUND_QUEUE) is deprecated and ignored: the \
                 outbound backlog is bounded by max_backlog_bytes and max_backlog_age"
            );
        }
        let make_hub = |node| {
            Hub::on_node(
                node,
                ws.max_connections,
                ws.max_connections_per_user,
                BacklogLimits {
                    max_bytes: ws.max_backlog_bytes,
                    max_age: ws.max_backlog_age,
                },
                Arc::clone(&metrics),
            )
        };
        let (hub, bus, cluster, forwarded): (Hub, Arc<dyn EventBus>, _, _) =
            if settings.redis.enabled() {
                let (cluster, forwarded) = Cluster::connect(&settings.redis, make_hub)
                    .await
                    .context("cluster mode (REDIS_URL)")?;
                if settings.uploads.s3_bucket.is_none() {
                    tracing::warn!(
                        "cluster mode keeps uploaded files in this node's data directory: a file \
                         uploaded through one node is not found through the others; set \
                         UPLOADS_S3_BUCKET so that every node shares them"
                    );
                }
                let bus = Arc::new(RedisBus::new(Arc::clone(&cluster)));
                (cluster.hub().clone(), bus, Some(cluster), Some(forwarded))
            } else {
                let hub = make_hub(0);
                let bus = Arc::new(LocalBus::new(hub.clone()));
                (hub, bus, None, None)
            };
        let notifier = Arc::new(
            Notifier::new(&settings.notify, Arc::clone(&metrics)).context("notification")?,
        );
        let audit: Arc<dyn AuditLog> = Arc::new(StoreAuditLog::new(Arc::clone(&store)));
        let transcriber = Transcriber::from_config(&settings.transcription)
            .context("transcription")?
            .map(Arc::new);
        let chat = Arc::new(Chat::new(
            Arc::clone(&store),
            (Arc::clone(&files), transcriber),
            Arc::clone(&llm),
            bus,
            hub.clone(),
            Arc::clone(&settings),
            Arc::clone(&metrics),
            Arc::clone(&notifier),
            Arc::clone(&audit),
            cluster.clone(),
        ));
        if let Some(forwarded) = forwarded {
            tokio::spawn(Arc::clone(&chat).serve_forwarded(forwarded));
        }
        Ok(Self {
            cluster,
            http_limits: HttpLimits::new(&settings),
            settings,
            keys,
            metrics,
            store,
            files,
            llm,
            hub,
            chat,
            notifier,
            shutdown: CancellationToken::new(),
            audit,
            draining: std::sync::atomic::AtomicBool::new(false),
            key_status,
        })
    }
}
