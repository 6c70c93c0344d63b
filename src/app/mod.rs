//! The server: binds the listener, builds the shared state ([`crate::state`]), serves the route tree under
//! the path prefix, and shuts down gracefully.

use std::future::Future;
use std::sync::Arc;

use anyhow::Context;
use poem::listener::{Acceptor, Listener, TcpAcceptor, TcpListener};
use poem::{EndpointExt, Route, Server};

use crate::api::cors::Cors;
use crate::api::http_metrics::HttpMetrics;
use crate::api::request_id::RequestIdMiddleware;
use crate::api::security_headers::SecurityHeaders;
use crate::config::Settings;
pub use crate::state::AppState;

mod banner;
pub mod listener;

/// How often sessions past the retention period are purged.
const RETENTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(3600);
/// How often orphaned uploads and the files of deleted sessions are purged.
const UPLOAD_PURGE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(600);

/// How often `chatbox_active_sessions_total` is re-read from the store (the global count, so replicas
/// agree and a restart starts from the truth).
const ACTIVE_SESSIONS_REFRESH: std::time::Duration = std::time::Duration::from_secs(30);

/// A bound, ready-to-run server.
pub struct Application {
    acceptor: TcpAcceptor,
    port: u16,
    state: Arc<AppState>,
}

impl Application {
    /// Builds the state and binds the listener (port 0 picks a free port).
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let state = AppState::build(settings).await?;
        let settings = &state.settings;
        let address = std::net::SocketAddr::new(settings.server.host, settings.server.port);
        let acceptor = TcpListener::bind(address)
            .into_acceptor()
            .await
            .with_context(|| format!("cannot listen on {address}"))?;
        let port = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().map(|s| s.port()))
            .unwrap_or(settings.server.port);
        Ok(Self {
            acceptor,
            port,
            state: Arc::new(state),
        })
    }

    /// The port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The shared state (tests use it to mint tokens and read metrics).
    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` completes, then drains within the configured grace period.
    pub async fn run_until_stopped(
        self,
        shutdown: impl Future<Output = ()> + Send,
    ) -> std::io::Result<()> {
        let prefix = self.state.settings.server.path_prefix.clone();
        let grace = self.state.settings.server.shutdown_grace;
        let mut background = vec![
            crate::store::maintenance::spawn_backfill(
                Arc::clone(&self.state.store),
                self.state.shutdown.clone(),
            ),
            crate::store::maintenance::spawn_active_sessions_gauge(
                Arc::clone(&self.state.store),
                Arc::clone(&self.state.metrics),
                ACTIVE_SESSIONS_REFRESH,
                self.state.shutdown.clone(),
            ),
            crate::store::maintenance::spawn_flusher(
                Arc::clone(&self.state.store),
                self.state.settings.store.flush_interval,
                self.state.shutdown.clone(),
            ),
        ];
        background.push(crate::files::spawn_purge(
            Arc::clone(&self.state.files),
            UPLOAD_PURGE_INTERVAL,
            self.state.shutdown.clone(),
        ));
        if let Some(days) = self.state.settings.store.retention_days {
            background.push(crate::files::spawn_retention(
                Arc::clone(&self.state.files),
                days,
                RETENTION_INTERVAL,
                self.state.shutdown.clone(),
            ));
        }
        spawn_idle_sweep(Arc::clone(&self.state));
        let state = Arc::clone(&self.state);
        let signal = async move {
            shutdown.await;
            drain(&state, grace).await;
        };
        let routes = Route::new()
            .nest(prefix, crate::api::routes(Arc::clone(&self.state)))
            // Unknown routes answer as the Go service's router did.
            .catch_error(|_: poem::error::NotFoundError| async {
                poem::Response::builder()
                    .status(poem::http::StatusCode::NOT_FOUND)
                    .content_type("text/plain; charset=utf-8")
                    .body("404 page not found")
            })
            .with(HttpMetrics::new(
                Arc::clone(&self.state.metrics),
                &self.state.settings.server.path_prefix,
            ))
            .with(Cors::new(&self.state.settings.http.cors_allowed_origins))
            .with(SecurityHeaders)
            .with(RequestIdMiddleware);
        let served = Server::new_with_acceptor(listener::NoDelayAcceptor::new(self.acceptor))
            .run_with_graceful_shutdown(routes, signal, Some(CLOSE_WAIT))
            .await;
        // The background tasks hold the store: they end before the caller may reopen it.
        self.state.shutdown.cancel();
        for task in background {
            let _ = task.await;
        }
        if let Some(cluster) = &self.state.cluster {
            cluster.shutdown().await;
        }
        served
    }
}

/// Drops unused in-memory session state periodically (every half idle time, between 10 ms and a minute)
/// until shutdown.
fn spawn_idle_sweep(state: Arc<AppState>) {
    let every = (state.settings.ws.session_idle / 2).clamp(
        std::time::Duration::from_millis(10),
        std::time::Duration::from_secs(60),
    );
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = state.shutdown.cancelled() => break,
                _ = tick.tick() => {
                    state.chat.sweep_idle();
                }
            }
        }
    });
}

/// How long cancelled turns get to store their partial answers once the grace period is over.
const CANCEL_STORE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// How long connections get to finish their close handshakes (and HTTP requests to complete) after the
/// drain, before the server exits. The whole shutdown takes at most `grace + CANCEL_STORE_WAIT + CLOSE_WAIT`.
const CLOSE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// The longest a shutdown takes with `grace` for running answers: the grace period, then storing answers
/// cut short, then the close handshakes. A supervisor's kill timeout must be at least this.
pub fn shutdown_budget(grace: std::time::Duration) -> std::time::Duration {
    grace + CANCEL_STORE_WAIT + CLOSE_WAIT
}

/// Graceful shutdown: new connections are refused and readiness fails; running answers get up to `grace` to
/// finish; answers still running then are cancelled and their partial text stored; then every connection is
/// closed with 1001 "Server shutting down".
async fn drain(state: &AppState, grace: std::time::Duration) {
    state
        .draining
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let running = state.chat.live().running_turns();
    tracing::info!(
        running_turns = running,
        grace_secs = grace.as_secs_f64(),
        "draining"
    );
    let wait_for_turns = |deadline: tokio::time::Instant| async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(20));
        while state.chat.live().running_turns() > 0 && tokio::time::Instant::now() < deadline {
            tick.tick().await;
        }
    };
    let deadline = tokio::time::Instant::now() + grace;
    // Help notifications being delivered get the same deadline; new ones are skipped from now on.
    tokio::join!(wait_for_turns(deadline), state.notifier.drain(deadline));
    let cancelled = state.chat.live().cancel_all();
    if cancelled > 0 {
        tracing::warn!(
            cancelled,
            "answers still running at the end of the grace period were cut short and stored"
        );
        wait_for_turns(tokio::time::Instant::now() + CANCEL_STORE_WAIT).await;
    }
    state.shutdown.cancel();
    state.hub.close_all(1001, "Server shutting down");
}

/// Runs the server from the command line: binds, prints where to reach it, serves until SIGINT or SIGTERM.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let app = Application::build(settings).await?;
    // Listen for signals before the banner announces the server, so a signal sent right after it still
    // shuts down gracefully instead of killing the process.
    let stop = shutdown_signal()?;
    let banner = crate::app::banner::render(&app.state, app.port)?;
    {
        use std::io::Write;
        let mut out = std::io::stdout().lock();
        // The banner is the command's output; a closed stdout is not a reason to stop serving.
        let _ = writeln!(out, "{banner}");
        let _ = out.flush();
    }
    tracing::info!(port = app.port, "chatbox listening");
    app.run_until_stopped(stop).await?;
    tracing::info!("chatbox stopped");
    Ok(())
}

/// Installs the SIGINT (Ctrl-C) and SIGTERM handlers now and returns a future that completes on the first
/// of them.
#[cfg(unix)]
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => tracing::info!("SIGINT received, shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM received, shutting down"),
        }
    })
}

/// Installs the Ctrl-C handler and returns a future that completes on it.
#[cfg(not(unix))]
pub fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    Ok(async {
        if tokio::signal::ctrl_c().await.is_ok() {
            tracing::info!("Ctrl-C received, shutting down");
        }
    })
}
