//! `GET {P}/ws`: authenticates the token (header or `?token=`), checks the origin, takes a connection slot
//! and upgrades. Refusals are plain-text HTTP responses before the upgrade, with the Go service's texts; the
//! slot is a drop guard, so it is released on every path where the connection does not come to life.

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::web::Data;
use poem::web::websocket::{WebSocket, WebSocketConfig};
use poem::{IntoResponse, Request, Response, handler};

use crate::auth::{AuthError, Identity};
use crate::hub::LimitExceeded;
use crate::state::AppState;

use super::connection::{self, ConnectionParams};

fn plain(status: StatusCode, text: &str) -> Response {
    Response::builder()
        .status(status)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{text}\n"))
}

/// The token from `Authorization: Bearer <t>` (exact prefix, as the Go service), else from `?token=`.
fn token(req: &Request) -> Option<String> {
    let header = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if let Some(token) = header.and_then(|value| value.strip_prefix("Bearer ")) {
        return Some(token.trim().to_string());
    }
    query_param(req, "token")
}

fn query_param(req: &Request, name: &str) -> Option<String> {
    let query = req.uri().query()?;
    url_pairs(query).find(|(k, _)| k == name).map(|(_, v)| v)
}

/// Splits and percent-decodes a query string.
fn url_pairs(query: &str) -> impl Iterator<Item = (String, String)> + '_ {
    query.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

fn percent_decode(text: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let decoded = match bytes[i] {
            b'%' if i + 2 < bytes.len() => hex(bytes[i + 1])
                .zip(hex(bytes[i + 2]))
                .map(|(h, l)| h * 16 + l),
            _ => None,
        };
        match (bytes[i], decoded) {
            (_, Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b'+', None) => {
                out.push(b' ');
                i += 1;
            }
            (b, None) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn origin_allowed(allowed: &[String], origin: Option<&str>) -> bool {
    if allowed.is_empty() || allowed.iter().any(|o| o == "*") {
        return true;
    }
    origin.is_some_and(|origin| allowed.iter().any(|o| o == origin))
}

/// Refuses a connection that a limit does not let in (429, with the Go service's text); a user at the
/// per-user limit has their open connections told.
fn refuse_connection(state: &AppState, identity: &Identity, limit: LimitExceeded) -> Response {
    state
        .metrics
        .ratelimit_blocked
        .with_label_values(&["connection"])
        .inc();
    if limit == LimitExceeded::PerUser {
        state.chat.notify_connection_limit(&identity.user_id);
    }
    tracing::info!(user_id = %identity.user_id, %limit, "websocket connection refused");
    plain(
        StatusCode::TOO_MANY_REQUESTS,
        "Connection limit exceeded, please try again later",
    )
}

/// The handler of `GET {P}/ws`.
#[handler]
pub async fn ws_handler(
    req: &Request,
    ws: poem::Result<WebSocket>,
    Data(state): Data<&Arc<AppState>>,
) -> Response {
    if state.draining.load(std::sync::atomic::Ordering::SeqCst) {
        return plain(StatusCode::SERVICE_UNAVAILABLE, "Server shutting down");
    }
    let identity: Identity = match token(req).map(|t| state.keys.verify(&t)) {
        None | Some(Err(AuthError::Missing)) => {
            return plain(StatusCode::UNAUTHORIZED, "Missing authentication token");
        }
        Some(Err(err)) => {
            tracing::info!(reason = %err, "websocket authentication failed");
            return plain(StatusCode::UNAUTHORIZED, "Authentication failed");
        }
        Some(Ok(identity)) => identity,
    };
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok());
    if !origin_allowed(&state.settings.ws.allowed_origins, origin) {
        tracing::info!(user_id = %identity.user_id, origin = origin.unwrap_or(""), "websocket origin refused");
        return plain(StatusCode::FORBIDDEN, "Forbidden");
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(err) => return err.into_response(),
    };
    let last_seq = match query_param(req, "last_seq") {
        None => None,
        Some(text) => match text.parse::<i64>() {
            Ok(seq) if seq >= 0 => Some(seq),
            _ => return plain(StatusCode::BAD_REQUEST, "Invalid last_seq"),
        },
    };
    let reserved = state.hub.reserve(&identity.user_id);
    let cluster_slot = match (&reserved, &state.cluster) {
        (Ok(_), Some(cluster)) => {
            let per_user = state.settings.ws.max_connections_per_user;
            match cluster.take_slot(&identity.user_id, per_user).await {
                Some(slot) => Some(slot),
                None => return refuse_connection(state, &identity, LimitExceeded::PerUser),
            }
        }
        _ => None,
    };
    let slot = match reserved {
        Ok(slot) => slot,
        Err(limit) => return refuse_connection(state, &identity, limit),
    };
    let settings = &state.settings.ws;
    let mut config = WebSocketConfig::default();
    config.read_buffer_size = settings.read_buffer_size;
    config.write_buffer_size = settings.write_buffer_size;
    config.max_write_buffer_size =
        settings.write_buffer_size.max(settings.max_message_size) * 2 + 1;
    config.max_message_size = Some(settings.max_message_size);
    config.max_frame_size = Some(settings.max_message_size);
    let params = ConnectionParams {
        state: Arc::clone(state),
        identity,
        last_seq,
        slot,
        cluster_slot,
    };
    ws.config(config)
        .on_upgrade(move |socket| connection::run(socket, params))
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_follow_the_allow_list() {
        assert!(origin_allowed(&[], None));
        assert!(origin_allowed(&["*".into()], Some("https://x")));
        let list = vec!["https://app.example".to_string()];
        assert!(origin_allowed(&list, Some("https://app.example")));
        assert!(!origin_allowed(&list, Some("https://evil.example")));
        assert!(!origin_allowed(&list, None));
    }

    #[test]
    fn query_values_are_percent_decoded() {
        let pairs: Vec<_> = url_pairs("token=a%2Eb&last_seq=5&x").collect();
        assert_eq!(pairs[0], ("token".into(), "a.b".into()));
        assert_eq!(pairs[1], ("last_seq".into(), "5".into()));
        assert_eq!(pairs[2], ("x".into(), "".into()));
        assert_eq!(percent_decode("100%"), "100%");
        assert_eq!(percent_decode("%zz"), "%zz");
    }
}
