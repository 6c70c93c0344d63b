//! `{P}/healthz`, `{P}/readyz` (the store, the providers, the encryption key check and in cluster mode
//! Redis, within 2 s each)
//! and `{P}/metrics/prometheus`
//! (behind its network allow-list).

use std::sync::Arc;
use std::time::Duration;

use poem::Request;

use poem_openapi::payload::{Json, PlainText};

use crate::protocol::http::{
    ErrorBody, GetHealthResponse, GetPrometheusMetricsResponse, GetReadinessResponse,
    HealthResponse, HttpErrorCode, KeysCheck, LlmCheck, ReadinessChecks, ReadinessResponse,
    ReadinessStatus, StoreCheck,
};
use crate::protocol::ws_timestamp;
use crate::state::AppState;

use super::client_ip::client_ip;
use super::limits::too_many;
use super::request_id::RequestId;
use super::{Handlers, operations};

/// How long readiness waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness reason of the LLM check when no provider can serve (reference 2.4, exact text).
const NO_PROVIDERS: &str = "No LLM providers configured";

fn public_limit(state: &AppState, req: &Request) -> Result<(), Duration> {
    let ip = client_ip(req, &state.settings.http.trusted_proxies);
    let key = ip.map_or_else(|| "unknown".to_string(), |ip| ip.to_string());
    state.http_limits.public.check(&key).inspect_err(|_| {
        state
            .metrics
            .ratelimit_blocked
            .with_label_values(&["message"])
            .inc();
    })
}

/// The failing encryption key check, if it fails; a check that has not completed yet (the store was
/// unreachable at start) runs now, within the readiness timeout.
async fn keys_check(state: &AppState) -> Option<KeysCheck> {
    let report = tokio::time::timeout(
        READY_TIMEOUT,
        state.key_status.checked(state.store.as_ref()),
    )
    .await
    .ok()
    .flatten()?;
    (!report.is_ok()).then(|| KeysCheck {
        status: ReadinessStatus::NotReady,
        reason: report.describe(),
        missing_key_ids: report.missing.iter().cloned().collect(),
    })
}

impl operations::GetHealth for Handlers {
    /// Liveness.
    async fn get_health(req: &Request, state: &Arc<AppState>) -> GetHealthResponse {
        if let Err(wait) = public_limit(state, req) {
            let (body, after) = too_many(wait, false);
            return GetHealthResponse::Status429(body, after);
        }
        GetHealthResponse::Status200(Json(HealthResponse {
            status: "healthy".into(),
            timestamp: ws_timestamp(time::OffsetDateTime::now_utc()),
        }))
    }
}

impl operations::GetReadiness for Handlers {
    /// Readiness: the store answers and at least one model provider is usable.
    async fn get_readiness(req: &Request, state: &Arc<AppState>) -> GetReadinessResponse {
        if let Err(wait) = public_limit(state, req) {
            let (body, after) = too_many(wait, false);
            return GetReadinessResponse::Status429(body, after);
        }
        let store = match tokio::time::timeout(READY_TIMEOUT, state.store.ping()).await {
            Ok(Ok(())) => StoreCheck {
                status: ReadinessStatus::Ready,
                reason: None,
            },
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "readiness: store check failed");
                StoreCheck {
                    status: ReadinessStatus::NotReady,
                    reason: Some("Database connectivity check failed".into()),
                }
            }
            Err(_) => {
                tracing::warn!("readiness: store check timed out");
                StoreCheck {
                    status: ReadinessStatus::NotReady,
                    reason: Some("Database connectivity check failed".into()),
                }
            }
        };
        let llm_ready = state.llm.ready();
        let llm = if llm_ready.ready {
            LlmCheck {
                status: ReadinessStatus::Ready,
                providers_count: Some(i64::try_from(llm_ready.providers.len()).unwrap_or(i64::MAX)),
                reason: None,
            }
        } else {
            // The reference's body: no count, and its reason text also when providers are configured
            // but every one has its circuit breaker open (none can serve a turn).
            LlmCheck {
                status: ReadinessStatus::NotReady,
                providers_count: None,
                reason: Some(NO_PROVIDERS.into()),
            }
        };
        let keys = if store.status == ReadinessStatus::Ready {
            keys_check(state).await
        } else {
            None
        };
        let redis = match &state.cluster {
            Some(cluster) => Some(match cluster.ping().await {
                Ok(()) => StoreCheck {
                    status: ReadinessStatus::Ready,
                    reason: None,
                },
                Err(reason) => StoreCheck {
                    status: ReadinessStatus::NotReady,
                    reason: Some(reason),
                },
            }),
            None => None,
        };
        let draining = state.draining.load(std::sync::atomic::Ordering::SeqCst);
        let ready = !draining
            && store.status == ReadinessStatus::Ready
            && llm.status == ReadinessStatus::Ready
            && keys.is_none()
            && redis
                .as_ref()
                .is_none_or(|r| r.status == ReadinessStatus::Ready);
        let body = Json(ReadinessResponse {
            status: if ready {
                ReadinessStatus::Ready
            } else {
                ReadinessStatus::NotReady
            },
            timestamp: ws_timestamp(time::OffsetDateTime::now_utc()),
            checks: ReadinessChecks {
                mongodb: store,
                llm,
                keys,
                redis,
            },
        });
        if ready {
            GetReadinessResponse::Status200(body)
        } else {
            GetReadinessResponse::Status503(body)
        }
    }
}

impl operations::GetPrometheusMetrics for Handlers {
    /// Prometheus exposition, for clients inside `chatbox.metrics_allowed_networks`.
    async fn get_prometheus_metrics(
        req: &Request,
        state: &Arc<AppState>,
    ) -> GetPrometheusMetricsResponse {
        let allowed = &state.settings.http.metrics_allowed_networks;
        let ip = client_ip(req, &state.settings.http.trusted_proxies);
        if !allowed.is_empty() && !ip.is_some_and(|ip| allowed.iter().any(|net| net.contains(&ip)))
        {
            return GetPrometheusMetricsResponse::Status403(Json(ErrorBody {
                error: "Insufficient permissions".into(),
                code: HttpErrorCode::Forbidden,
                request_id: req.extensions().get::<RequestId>().map(|id| id.0.clone()),
            }));
        }
        if let Err(wait) = public_limit(state, req) {
            let (body, after) = too_many(wait, false);
            return GetPrometheusMetricsResponse::Status429(body, after);
        }
        GetPrometheusMetricsResponse::Status200(PlainText(state.metrics.render()))
    }
}
