//! The HTTP surface: poem-openapi endpoints built from the generated types (thin: they authenticate, call
//! the store or the chat services, and map results to the spec's responses), the WebSocket upgrade, the
//! published contract (`/openapi.json`, `/asyncapi.yaml`, Swagger UI at `/docs`) and HTTP middleware.

pub mod client_ip;
mod health;
pub mod limits;
pub mod request_id;
pub mod security_headers;
mod tags;

use std::sync::Arc;

use poem::web::Data;
use poem::{Endpoint, EndpointExt, Route, handler};
use poem_openapi::OpenApiService;

use crate::app::AppState;

/// The AsyncAPI document, served as written.
const ASYNCAPI_YAML: &str = include_str!("../../spec/asyncapi.yaml");

/// The OpenAPI service of every HTTP operation, with the server URL set to the path prefix.
pub fn openapi_service(prefix: &str) -> OpenApiService<health::HealthApi, ()> {
    OpenApiService::new(health::HealthApi, "Chatbox HTTP API", env!("CARGO_PKG_VERSION")).server(prefix.to_string())
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
