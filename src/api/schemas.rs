//! `{P}/schemas/` and `{P}/schemas/{name}.json`: the JSON Schemas generated from the specs, built into the
//! binary (`$OUT_DIR/schemas.rs`, the same bytes as `generated/schemas/`), for integrators' validators.

use std::sync::Arc;

use poem::http::{StatusCode, header};
use poem::web::{Data, Path};
use poem::{Request, Response, handler};

use crate::protocol::http::{ErrorBody, HttpErrorCode, SchemaEntry, SchemaList};
use crate::state::AppState;

use super::etag::{etag, fresh};
use super::request_id::RequestId;

include!(concat!(env!("OUT_DIR"), "/schemas.rs"));

/// `Cache-Control` of a schema file.
const CACHE_CONTROL: &str = "public, max-age=300";

/// The media type of a schema file.
const SCHEMA_JSON: &str = "application/schema+json";

#[handler]
pub fn list(Data(state): Data<&Arc<AppState>>) -> poem::Response {
    let prefix = &state.settings.server.path_prefix;
    let schemas = SCHEMAS
        .iter()
        .map(|(name, _)| SchemaEntry {
            name: (*name).to_owned(),
            url: format!("{prefix}/schemas/{name}.json"),
        })
        .collect();
    let body = serde_json::to_string(&SchemaList { schemas }).unwrap_or_default();
    Response::builder()
        .content_type("application/json")
        .header(header::CACHE_CONTROL, CACHE_CONTROL)
        .body(body)
}

#[handler]
pub fn file(req: &Request, Path(file): Path<String>) -> poem::Response {
    let found = file
        .strip_suffix(".json")
        .and_then(|name| SCHEMAS.iter().find(|(n, _)| *n == name));
    let Some((_, contents)) = found else {
        let body = ErrorBody {
            error: "Schema not found".to_owned(),
            code: HttpErrorCode::NotFound,
            request_id: req.extensions().get::<RequestId>().map(|id| id.0.clone()),
        };
        return Response::builder()
            .status(StatusCode::NOT_FOUND)
            .content_type("application/json")
            .body(serde_json::to_string(&body).unwrap_or_default());
    };
    let tag = etag(contents.as_bytes());
    let matched = fresh(req, &tag);
    let builder = Response::builder()
        .header(header::ETAG, tag)
        .header(header::CACHE_CONTROL, CACHE_CONTROL);
    if matched {
        return builder.status(StatusCode::NOT_MODIFIED).finish();
    }
    builder.content_type(SCHEMA_JSON).body(*contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_generated_schema_is_built_in_and_tagged_by_its_bytes() {
        assert!(SCHEMAS.iter().any(|(n, _)| *n == "ai_response.server"));
        assert!(SCHEMAS.iter().any(|(n, _)| *n == "ErrorBody"));
        assert_ne!(etag(SCHEMAS[0].1.as_bytes()), etag(SCHEMAS[1].1.as_bytes()));
    }
}
