//! `{P}/healthz`, `{P}/readyz` (the store, the providers and the encryption key check, within 2 s each)
//! and `{P}/metrics/prometheus`
//! (behind its network allow-list).

use std::sync::Arc;
use std::time::Duration;

use poem::Request;
use poem::web::Data;
use poem_openapi::OpenApi;
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
use super::tags::ApiTags;

/// How long readiness waits for the store.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// Readiness reason of the LLM check when no provider can serve (reference 2.4, exact text).
const NO_PROVIDERS: &str = "No LLM providers configured";

/// Health, readiness and metrics endpoints.
pub struct HealthApi;

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

#[OpenApi]
impl HealthApi {
    /// Liveness.
    #[oai(
        path = "/healthz",
        method = "get",
        operation_id = "getHealth",
        tag = "ApiTags::Health"
    )]
    async fn health(&self, req: &Request, Data(state): Data<&Arc<AppState>>) -> GetHealthResponse {
        if let Err(wait) = public_limit(state, req) {
            let (body, after) = too_many(wait, false);
            return GetHealthResponse::Status429(body, after);
        }
        GetHealthResponse::Status200(Json(HealthResponse {
            status: "healthy".into(),
            timestamp: ws_timestamp(time::OffsetDateTime::now_utc()),
        }))
    }

    /// Readiness: the store answers and at least one model provider is usable.
    #[oai(
        path = "/readyz",
        method = "get",
        operation_id = "getReadiness",
        tag = "ApiTags::Health"
    )]
    async fn ready(
        &self,
        req: &Request,
        Data(state): Data<&Arc<AppState>>,
    ) -> GetReadinessResponse {
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
        let draining = state.draining.load(std::sync::atomic::Ordering::SeqCst);
        let ready = !draining
            && store.status == ReadinessStatus::Ready
            && llm.status == ReadinessStatus::Ready
            && keys.is_none();
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
            },
        });
        if ready {
            GetReadinessResponse::Status200(body)
        } else {
            GetReadinessResponse::Status503(body)
        }
    }

    /// Prometheus exposition, for clients inside `chatbox.metrics_allowed_networks`.
    #[oai(
        path = "/metrics/prometheus",
        method = "get",
        operation_id = "getPrometheusMetrics",
        tag = "ApiTags::Metrics"
    )]
    async fn prometheus(
        &self,
        req: &Request,
        Data(state): Data<&Arc<AppState>>,
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
