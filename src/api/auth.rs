//! Bearer authentication of the HTTP API. [`BearerAuth`] is an OpenAPI security-scheme extractor that
//! declares `bearerAuth` (HTTP bearer, JWT) on the operations using it but never refuses a request
//! itself: it only picks the token out of the header, so the handlers answer with the reference's error
//! bodies (401 `UNAUTHORIZED` / `INVALID_TOKEN`, 403 `FORBIDDEN`) instead of poem-openapi's own.

use poem::Request;
use poem::http::header;
use poem_openapi::registry::{MetaSecurityScheme, Registry};
use poem_openapi::{ApiExtractor, ApiExtractorType, ExtractParamOptions};

use crate::auth::Identity;
use crate::state::AppState;

use super::error::ApiError;

/// Name of the security scheme in the OpenAPI document.
const SCHEME: &str = "bearerAuth";

/// The bearer token of a request, if it carries a well-formed `Authorization: Bearer <token>` header.
pub struct BearerAuth(Option<String>);

impl BearerAuth {
    pub(crate) fn from_header(value: Option<&str>) -> Self {
        // Exact `Bearer ` prefix, as the Go service; an empty token counts as no header.
        let token = value
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .map(String::from);
        Self(token)
    }

    /// The verified caller: 401 when the header is missing or malformed or the token does not verify.
    pub fn identity(&self, state: &AppState) -> Result<Identity, ApiError> {
        let token = self.0.as_deref().ok_or(ApiError::MissingToken)?;
        state
            .keys
            .verify(token)
            .map_err(|err| ApiError::InvalidToken(err.to_string()))
    }

    /// The verified administrator: 401 as [`identity`](Self::identity), 403 without the `admin` or
    /// `chat_admin` role, then the admin rate limit (per admin user id) with 429.
    pub fn admin(&self, state: &AppState) -> Result<Identity, ApiError> {
        let identity = self.identity(state)?;
        if !identity.is_admin() {
            return Err(ApiError::Forbidden);
        }
        state
            .http_limits
            .admin
            .check(&identity.user_id)
            .map_err(|wait| {
                state
                    .metrics
                    .ratelimit_blocked
                    .with_label_values(&["message"])
                    .inc();
                ApiError::RateLimited { wait, admin: true }
            })?;
        Ok(identity)
    }
}

impl<'a> ApiExtractor<'a> for BearerAuth {
    const TYPES: &'static [ApiExtractorType] = &[ApiExtractorType::SecurityScheme];

    type ParamType = ();
    type ParamRawType = ();

    fn register(registry: &mut Registry) {
        registry.create_security_scheme(
            SCHEME,
            MetaSecurityScheme {
                ty: "http",
                description: Some(
                    "HMAC-signed JWT (HS256/HS384/HS512), at most 8192 bytes. Claims: `user_id` (required; not \
                     blank, at most 128 bytes, no control characters), `roles` (required array; `admin` or \
                     `chat_admin` grant the admin routes), `name` (optional display name; control characters \
                     removed, cut to 128 bytes). `exp`/`nbf` enforced when present. A token that breaks these \
                     rules is `INVALID_TOKEN`.",
                ),
                name: None,
                key_in: None,
                scheme: Some("bearer"),
                bearer_format: Some("JWT"),
                flows: None,
                openid_connect_url: None,
            },
        );
    }

    fn security_schemes() -> Vec<&'static str> {
        vec![SCHEME]
    }

    async fn from_request(
        request: &'a Request,
        _body: &mut poem::RequestBody,
        _param_opts: ExtractParamOptions<Self::ParamType>,
    ) -> poem::Result<Self> {
        let value = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        Ok(Self::from_header(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_non_empty_bearer_token_counts() {
        assert_eq!(
            BearerAuth::from_header(Some("Bearer abc")).0.as_deref(),
            Some("abc")
        );
        assert!(BearerAuth::from_header(None).0.is_none());
        assert!(BearerAuth::from_header(Some("Bearer ")).0.is_none());
        assert!(BearerAuth::from_header(Some("Bearer    ")).0.is_none());
        assert!(BearerAuth::from_header(Some("Basic abc")).0.is_none());
        assert!(BearerAuth::from_header(Some("bearer abc")).0.is_none());
    }
}
