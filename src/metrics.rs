//! Prometheus metrics: the names and labels of the Go service (dashboards and autoscalers depend on
//! them) plus the histograms and counters this server adds. One [`Metrics`] per application, each
//! with its own registry, so several servers can run in one process (as the tests do).

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Buckets of `chatbox_websocket_connection_duration_seconds`, as in the Go service.
const CONNECTION_DURATION_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0,
];

/// Buckets for whole chat turns and time to first token (seconds).
const TURN_BUCKETS: &[f64] = &[
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

/// Every metric the server exports.
pub struct Metrics {
    registry: Registry,
    /// Serialises lowering `active_sessions`, so concurrent ends never take it below zero.
    lowering_active: std::sync::Mutex<()>,
    /// `chatbox_websocket_connections_total` (gauge): open WebSocket connections on this node.
    pub websocket_connections: IntGauge,
    /// `chatbox_messages_received_total`: inbound frames that passed validation.
    pub messages_received: IntCounter,
    /// `chatbox_messages_sent_total`: frames written to sockets.
    pub messages_sent: IntCounter,
    /// `chatbox_llm_requests_total{provider}`: each LLM attempt, retries included.
    pub llm_requests: IntCounterVec,
    /// `chatbox_llm_latency_seconds{provider}`: time to first token of a streamed answer.
    pub llm_latency: HistogramVec,
    /// `chatbox_llm_errors_total{provider}`: failed attempts and broken streams.
    pub llm_errors: IntCounterVec,
    /// `chatbox_active_sessions_total` (gauge): sessions not yet ended.
    pub active_sessions: IntGauge,
    /// `chatbox_sessions_created_total`.
    pub sessions_created: IntCounter,
    /// `chatbox_sessions_ended_total`.
    pub sessions_ended: IntCounter,
    /// `chatbox_admin_takeovers_total`.
    pub admin_takeovers: IntCounter,
    /// `chatbox_message_errors_total`: parse, validation, busy and routing errors.
    pub message_errors: IntCounter,
    /// `chatbox_tokens_used_total{provider}`: tokens reported by providers (or estimated).
    pub tokens_used: IntCounterVec,
    /// `chatbox_mongodb_operation_seconds{operation}`: store operation latency (both stores).
    pub store_operation: HistogramVec,
    /// `chatbox_ratelimit_blocked_total{limiter}`.
    pub ratelimit_blocked: IntCounterVec,
    /// `chatbox_mongodb_commands_total{command}`: commands sent to MongoDB (round trips), from the
    /// driver's command monitoring.
    pub store_commands: IntCounterVec,
    /// `chatbox_embedded_commits_total`: write transactions committed (each flushed to disk) by the
    /// embedded store's writer thread.
    pub embedded_commits: IntCounter,
    /// `chatbox_embedded_writes_total`: writes committed by them (group commit puts several in one).
    pub embedded_writes: IntCounter,
    /// `chatbox_websocket_connection_duration_seconds`.
    pub connection_duration: Histogram,
    /// `chatbox_http_request_duration_seconds{endpoint,method}`.
    pub http_request_duration: HistogramVec,
    /// `chatbox_admin_messages_dropped_total`: frames dropped for admin connections.
    pub admin_messages_dropped: IntCounter,
    /// `chatbox_turn_first_token_seconds{provider}`: from the user's message to the first answer chunk.
    pub turn_first_token: HistogramVec,
    /// `chatbox_turn_duration_seconds{provider}`: from the user's message to the final chunk.
    pub turn_duration: HistogramVec,
    /// `chatbox_queue_dropped_total{reason}`: frames dropped or connections cut by the slow-consumer policy.
    pub queue_dropped: IntCounterVec,
    /// `chatbox_notifications_total{channel,outcome}`: help-request notifications by channel and outcome.
    pub notifications: IntCounterVec,
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).unwrap_or_else(|e| unreachable!("{name}: {e}"));
    register(registry, metric)
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("{name}: {e}"));
    register(registry, metric)
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).unwrap_or_else(|e| unreachable!("{name}: {e}"));
    register(registry, metric)
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: Option<&[f64]>,
) -> HistogramVec {
    let mut opts = HistogramOpts::new(name, help);
    if let Some(buckets) = buckets {
        opts = opts.buckets(buckets.to_vec());
    }
    let metric = HistogramVec::new(opts, labels).unwrap_or_else(|e| unreachable!("{name}: {e}"));
    register(registry, metric)
}

fn register<M: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: M) -> M {
    // Names are fixed literals, unique within this module: registration cannot fail.
    if let Err(e) = registry.register(Box::new(metric.clone())) {
        unreachable!("metric registration: {e}");
    }
    metric
}

impl Metrics {
    /// Creates every metric in a fresh registry.
    pub fn new() -> Self {
        let r = Registry::new();
        // `process_*` (CPU, resident memory, open files, start time), as the Go service exported them.
        #[cfg(target_os = "linux")]
        if let Err(e) = r.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        )) {
            unreachable!("process collector registration: {e}");
        }
        let connection_duration = Histogram::with_opts(
            HistogramOpts::new(
                "chatbox_websocket_connection_duration_seconds",
                "Lifetime of WebSocket connections",
            )
            .buckets(CONNECTION_DURATION_BUCKETS.to_vec()),
        )
        .unwrap_or_else(|e| unreachable!("connection duration: {e}"));
        let connection_duration = register(&r, connection_duration);
        let metrics = Self {
            websocket_connections: gauge(
                &r,
                "chatbox_websocket_connections_total",
                "Open WebSocket connections on this node",
            ),
            messages_received: counter(
                &r,
                "chatbox_messages_received_total",
                "Inbound WebSocket frames that passed validation",
            ),
            messages_sent: counter(
                &r,
                "chatbox_messages_sent_total",
                "Frames written to WebSocket connections",
            ),
            llm_requests: counter_vec(
                &r,
                "chatbox_llm_requests_total",
                "LLM request attempts",
                &["provider"],
            ),
            llm_latency: histogram_vec(
                &r,
                "chatbox_llm_latency_seconds",
                "Time from an LLM request to its first streamed token",
                &["provider"],
                None,
            ),
            llm_errors: counter_vec(
                &r,
                "chatbox_llm_errors_total",
                "Failed LLM attempts and broken streams",
                &["provider"],
            ),
            active_sessions: gauge(
                &r,
                "chatbox_active_sessions_total",
                "Sessions that have not ended",
            ),
            sessions_created: counter(&r, "chatbox_sessions_created_total", "Sessions created"),
            sessions_ended: counter(&r, "chatbox_sessions_ended_total", "Sessions ended"),
            admin_takeovers: counter(
                &r,
                "chatbox_admin_takeovers_total",
                "Successful admin takeovers",
            ),
            message_errors: counter(
                &r,
                "chatbox_message_errors_total",
                "Inbound frames answered with an error",
            ),
            tokens_used: counter_vec(
                &r,
                "chatbox_tokens_used_total",
                "LLM tokens used",
                &["provider"],
            ),
            store_operation: histogram_vec(
                &r,
                "chatbox_mongodb_operation_seconds",
                "Latency of store operations",
                &["operation"],
                None,
            ),
            ratelimit_blocked: counter_vec(
                &r,
                "chatbox_ratelimit_blocked_total",
                "Requests refused by a rate limiter",
                &["limiter"],
            ),
            store_commands: counter_vec(
                &r,
                "chatbox_mongodb_commands_total",
                "Commands sent to MongoDB",
                &["command"],
            ),
            embedded_commits: counter(
                &r,
                "chatbox_embedded_commits_total",
                "Write transactions committed by the embedded store",
            ),
            embedded_writes: counter(
                &r,
                "chatbox_embedded_writes_total",
                "Writes committed by the embedded store",
            ),
            connection_duration,
            http_request_duration: histogram_vec(
                &r,
                "chatbox_http_request_duration_seconds",
                "HTTP request latency",
                &["endpoint", "method"],
                None,
            ),
            admin_messages_dropped: counter(
                &r,
                "chatbox_admin_messages_dropped_total",
                "Frames dropped for admin connections",
            ),
            turn_first_token: histogram_vec(
                &r,
                "chatbox_turn_first_token_seconds",
                "Time from a user message to the first answer chunk",
                &["provider"],
                Some(TURN_BUCKETS),
            ),
            turn_duration: histogram_vec(
                &r,
                "chatbox_turn_duration_seconds",
                "Time from a user message to the final answer chunk",
                &["provider"],
                Some(TURN_BUCKETS),
            ),
            queue_dropped: counter_vec(
                &r,
                "chatbox_queue_dropped_total",
                "Outbound frames dropped or connections closed by the slow-consumer policy",
                &["reason"],
            ),
            notifications: counter_vec(
                &r,
                "chatbox_notifications_total",
                "Help-request notifications by channel and outcome",
                &["channel", "outcome"],
            ),
            registry: r,
            lowering_active: std::sync::Mutex::new(()),
        };
        // Series with a fixed set of label values exist from the start.
        for limiter in ["connection", "message"] {
            metrics.ratelimit_blocked.with_label_values(&[limiter]);
        }
        metrics.queue_dropped.with_label_values(&["slow_consumer"]);
        metrics
    }

    /// Creates the per-provider series at zero, so dashboards see them before the first request.
    pub fn init_provider(&self, kind: &str) {
        for vec in [&self.llm_requests, &self.llm_errors, &self.tokens_used] {
            vec.with_label_values(&[kind]);
        }
    }

    /// Lowers `chatbox_active_sessions_total` by one for a session that ended, never below zero (the
    /// gauge is refreshed from the store's count, so a session it never counted may end).
    pub fn active_session_ended(&self) {
        let _one_at_a_time = self
            .lowering_active
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if self.active_sessions.get() > 0 {
            self.active_sessions.dec();
        }
    }

    /// The text exposition format served at `{P}/metrics/prometheus`.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let families = self.registry.gather();
        if TextEncoder::new().encode(&families, &mut buf).is_err() {
            return String::new();
        }
        String::from_utf8(buf).unwrap_or_default()
    }

    /// Times a store operation under `chatbox_mongodb_operation_seconds{operation}`.
    pub fn store_timer(&self, operation: &str) -> prometheus::HistogramTimer {
        self.store_operation
            .with_label_values(&[operation])
            .start_timer()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
