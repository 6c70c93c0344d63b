//! The HTTP surface: poem-openapi endpoints built from the generated types (thin: they authenticate, call
//! the store or the chat services, and map results to the spec's responses), the WebSocket upgrade, the
//! published contract (`/openapi.json`, `/asyncapi.yaml`, Swagger UI at `/docs`) and HTTP middleware.

mod admin;
pub mod auth;
pub mod client_ip;
pub mod cors;
pub mod error;
mod health;
pub mod http_metrics;
pub mod limits;
mod params;
pub mod request_id;
pub mod security_headers;
mod sessions;
mod shared;
mod tags;
mod takeover;
mod users;
mod views;

use std::sync::Arc;

use poem::web::Data;
use poem::{Endpoint, EndpointExt, Route, handler};
use poem_openapi::OpenApiService;

use crate::app::AppState;

/// The AsyncAPI document, served as written.
const ASYNCAPI_YAML: &str = include_str!("../../spec/asyncapi.yaml");

/// Every operation of `spec/openapi.yaml`.
pub type Apis = (
    health::HealthApi,
    sessions::SessionsApi,
    shared::SharedApi,
    admin::AdminApi,
    takeover::TakeoverApi,
    users::UsersApi,
);

/// The OpenAPI service of every HTTP operation, with the server URL set to the path prefix.
pub fn openapi_service(prefix: &str) -> OpenApiService<Apis, ()> {
    let apis = (
        health::HealthApi,
        sessions::SessionsApi,
        shared::SharedApi,
        admin::AdminApi,
        takeover::TakeoverApi,
        users::UsersApi,
    );
    OpenApiService::new(apis, "Chatbox HTTP API", env!("CARGO_PKG_VERSION"))
        .server(prefix.to_string())
}

#[handler]
fn asyncapi() -> poem::Response {
    poem::Response::builder()
        .content_type("application/yaml")
        .body(ASYNCAPI_YAML)
}

#[handler]
fn openapi_json(Data(spec): Data<&Arc<String>>) -> poem::Response {
    poem::Response::builder()
        .content_type("application/json")
        .body(spec.as_str().to_string())
}

/// The routes below the path prefix.
pub fn routes(state: Arc<AppState>) -> impl Endpoint {
    let service = openapi_service(&state.settings.server.path_prefix);
    let spec = Arc::new(service.spec());
    let docs = service.swagger_ui();
    Route::new()
        .at("/ws", crate::ws::ws_handler)
        .at("/openapi.json", openapi_json.data(spec))
        .at("/asyncapi.yaml", asyncapi)
        .nest("/docs", docs)
        .nest("/", service)
        .data(state)
}
