//! The HTTP surface: poem-openapi endpoints built from the generated types (thin: they authenticate, call
//! the store or the chat services, and map results to the spec's responses), the WebSocket upgrade, the
//! published contract (`/openapi.json`, `/asyncapi.yaml`, the JSON Schemas at `/schemas/`, Swagger UI at
//! `/docs`), the web console (`/` and `/admin/`, [`console`]) and HTTP middleware.

mod admin;
pub mod auth;
pub mod client_ip;
pub mod console;
pub mod cors;
pub mod error;
mod etag;
mod health;
pub mod http_metrics;
pub mod limits;
mod operations;
mod params;
mod published;
pub mod request_id;
mod schemas;
pub mod security_headers;
mod session_files;
mod sessions;
mod shared;
mod takeover;
mod uploads;
mod users;
mod views;

use std::sync::Arc;

use poem::{Endpoint, EndpointExt, Route};
use poem_openapi::OpenApiService;

use crate::state::AppState;

/// Every operation of `spec/openapi.yaml`, as generated services.
pub type Apis = operations::Apis;

/// What each operation does: the generated trait of every operation is implemented on this type, in the
/// module of its resource (`sessions`, `shared`, `admin`, `takeover`, `users`, `health`).
pub struct Handlers;

/// The OpenAPI service of every HTTP operation, with the server URL set to the path prefix.
pub fn openapi_service(prefix: &str) -> OpenApiService<Apis, ()> {
    OpenApiService::new(
        operations::apis(),
        "Chatbox HTTP API",
        env!("CARGO_PKG_VERSION"),
    )
    .server(prefix.to_string())
}

/// The routes below the path prefix.
pub fn routes(state: Arc<AppState>) -> impl Endpoint {
    let service = openapi_service(&state.settings.server.path_prefix);
    let spec = Arc::new(published::openapi_json_text(&service.spec()));
    let docs = service.swagger_ui();
    // Both `{P}` and `{P}/` reach this level as `/` (the nest strips the prefix; the service nested at `/`
    // owns that path): the first is sent to the second, which is the chat app.
    let home = format!("{}/", state.settings.server.path_prefix);
    let service = service.around(move |ep, req| {
        let home = home.clone();
        async move {
            if req.uri().path() == "/" {
                return Ok(if req.original_uri().path().ends_with('/') {
                    console::chat(&req)
                } else {
                    console::redirect(&home)
                });
            }
            ep.call(req).await.map(poem::IntoResponse::into_response)
        }
    });
    Route::new()
        .at("/ws", crate::ws::ws_handler)
        .at("/uploads", poem::post(uploads::upload))
        .at(
            "/uploads/:file_id",
            poem::get(uploads::download).delete(uploads::delete),
        )
        .at("/uploads/:file_id/link", poem::post(uploads::link))
        .at("/openapi.json", published::openapi_json.data(spec))
        .at("/asyncapi.yaml", published::asyncapi)
        .at("/schemas/", schemas::list)
        .at("/schemas/:file", schemas::file)
        .at("/admin", console::admin_redirect)
        .at("/admin/", console::admin_page)
        .at("/assets/:file", console::asset_file)
        .nest("/docs", docs)
        .nest("/", service)
        .data(state)
}
