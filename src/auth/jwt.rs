//! Verifies and mints JWTs. HS256/384/512 use the shared secret; RS256 and ES256 are accepted when a public
//! key is configured. `exp` and `nbf` are enforced when present, without leeway, as the Go service did
//! (golang-jwt v5): they may be integers or fractions of seconds (truncated to whole seconds), a token is
//! expired from its `exp` second on and valid from its `nbf` second on, and `iat` is ignored. A token over
//! [`MAX_TOKEN_BYTES`] is refused before it is parsed; the identity it names is checked too: a `user_id`
//! that is blank, longer than 128 bytes or holds control characters is refused, and a `name` is cleaned
//! and cut to 128 bytes (a display name never locks a user out).

use std::collections::HashSet;

use jsonwebtoken::{
    Algorithm, DecodingKey, EncodingKey, Header, Validation, decode, decode_header, encode,
};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

/// Roles that grant the admin routes and admin WebSocket messages.
const ADMIN_ROLES: &[&str] = &["admin", "chat_admin"];

/// Longest token accepted, in bytes (header or `?token=`); a longer one is refused before it is parsed.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `user_id` claim accepted, in bytes.
const MAX_USER_ID_BYTES: usize = 128;
/// Longest display name kept, in bytes; a longer `name` claim is cut on a character boundary.
const MAX_NAME_BYTES: usize = 128;

/// The claims this server reads; other claims are ignored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id (required: not blank, at most 128 bytes, no control characters).
    pub user_id: String,
    /// The user's roles (required; may be empty).
    pub roles: Vec<String>,
    /// Display name; defaults to `user_id`. Control characters are removed and it is cut to 128 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Expiry (seconds since the epoch), enforced when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Not-before (seconds since the epoch), enforced when present.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
}

/// A JSON number of seconds since the epoch, integer or fractional (golang-jwt's `NumericDate`).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(transparent)]
struct NumericDate(f64);

impl NumericDate {
    /// Whole seconds, truncated like golang-jwt's default `TimePrecision` of one second.
    fn seconds(self) -> f64 {
        self.0.floor()
    }
}

/// The claims as they arrive: like [`Claims`], with time claims of any numeric form.
#[derive(Debug, Deserialize)]
struct Incoming {
    user_id: String,
    roles: Vec<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    exp: Option<NumericDate>,
    #[serde(default)]
    nbf: Option<NumericDate>,
}

impl Incoming {
    /// Checks `exp` and `nbf` against `now` (seconds since the epoch, with fractions).
    fn check_times(&self, now: f64) -> Result<(), AuthError> {
        if self.exp.is_some_and(|exp| now >= exp.seconds()) {
            return Err(AuthError::Invalid("token is expired".into()));
        }
        if self.nbf.is_some_and(|nbf| now < nbf.seconds()) {
            return Err(AuthError::Invalid("token is not valid yet".into()));
        }
        Ok(())
    }
}

/// The `user_id` claim if it can name a user: not blank once NUL bytes and surrounding whitespace are
/// removed, at most [`MAX_USER_ID_BYTES`], and free of control characters. It is kept exactly as signed,
/// since it keys the user's data.
fn checked_user_id(user_id: String) -> Result<String, AuthError> {
    if user_id.replace('\0', "").trim().is_empty() {
        return Err(AuthError::Invalid("empty user_id claim".into()));
    }
    if user_id.len() > MAX_USER_ID_BYTES {
        return Err(AuthError::Invalid(format!(
            "user_id claim is longer than {MAX_USER_ID_BYTES} bytes"
        )));
    }
    if user_id.chars().any(char::is_control) {
        return Err(AuthError::Invalid(
            "user_id claim contains control characters".into(),
        ));
    }
    Ok(user_id)
}

/// The display name of a `name` claim: control characters removed, surrounding whitespace trimmed, cut to
/// [`MAX_NAME_BYTES`] on a character boundary; `None` when nothing is left.
fn display_name(name: &str) -> Option<String> {
    let cleaned: String = name.chars().filter(|c| !c.is_control()).collect();
    let cleaned = cleaned.trim();
    let cut = cleaned[..cleaned.floor_char_boundary(MAX_NAME_BYTES)].trim_end();
    (!cut.is_empty()).then(|| cut.to_string())
}

/// Who is calling, as established by a verified token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The `user_id` claim.
    pub user_id: String,
    /// The `name` claim (cleaned and cut to 128 bytes), or the user id.
    pub name: String,
    /// The `roles` claim.
    pub roles: Vec<String>,
}

impl Identity {
    /// True when the roles include `admin` or `chat_admin`.
    pub fn is_admin(&self) -> bool {
        self.roles.iter().any(|r| ADMIN_ROLES.contains(&r.as_str()))
    }
}

/// Why a token was refused (the text is for logs; clients get the reference's generic texts).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No token was presented.
    #[error("missing authentication token")]
    Missing,
    /// The token is malformed, has a bad signature, is expired or lacks required claims.
    #[error("invalid token: {0}")]
    Invalid(String),
}

/// The keys tokens are verified (and, for HMAC, minted) with.
#[derive(Clone)]
pub struct JwtKeys {
    secret: SecretString,
    hmac: DecodingKey,
    rsa: Option<DecodingKey>,
    ec: Option<DecodingKey>,
}

impl std::fmt::Debug for JwtKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeys")
            .field("rsa", &self.rsa.is_some())
            .field("ec", &self.ec.is_some())
            .finish_non_exhaustive()
    }
}

impl JwtKeys {
    /// Builds the keys from the HMAC secret and an optional PEM public key (RSA or EC P-256).
    pub fn new(secret: &SecretString, public_key_pem: Option<&str>) -> Result<Self, AuthError> {
        let hmac = DecodingKey::from_secret(secret.expose_secret().as_bytes());
        let (rsa, ec) = match public_key_pem {
            Some(pem) => {
                let rsa = DecodingKey::from_rsa_pem(pem.as_bytes()).ok();
                let ec = DecodingKey::from_ec_pem(pem.as_bytes()).ok();
                if rsa.is_none() && ec.is_none() {
                    return Err(AuthError::Invalid(
                        "public key is neither RSA nor EC PEM".into(),
                    ));
                }
                (rsa, ec)
            }
            None => (None, None),
        };
        Ok(Self {
            secret: secret.clone(),
            hmac,
            rsa,
            ec,
        })
    }

    /// Verifies `token` and returns the caller's identity.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = token.trim();
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid(format!(
                "token is longer than {MAX_TOKEN_BYTES} bytes"
            )));
        }
        let header = decode_header(token).map_err(|e| AuthError::Invalid(e.to_string()))?;
        let key = match header.alg {
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512 => &self.hmac,
            Algorithm::RS256 => self
                .rsa
                .as_ref()
                .ok_or_else(|| AuthError::Invalid("RS256 is not configured".into()))?,
            Algorithm::ES256 => self
                .ec
                .as_ref()
                .ok_or_else(|| AuthError::Invalid("ES256 is not configured".into()))?,
            other => {
                return Err(AuthError::Invalid(format!(
                    "algorithm {other:?} is not accepted"
                )));
            }
        };
        // The library reads `exp`/`nbf` as integers only; they are checked below instead.
        let mut validation = Validation::new(header.alg);
        validation.required_spec_claims = HashSet::new();
        validation.leeway = 0;
        validation.validate_exp = false;
        validation.validate_nbf = false;
        validation.validate_aud = false;
        let data = decode::<Incoming>(token, key, &validation)
            .map_err(|e| AuthError::Invalid(e.to_string()))?;
        let claims = data.claims;
        let now = time::OffsetDateTime::now_utc().unix_timestamp_nanos() as f64 / 1e9;
        claims.check_times(now)?;
        let user_id = checked_user_id(claims.user_id)?;
        let name = claims
            .name
            .as_deref()
            .and_then(display_name)
            .unwrap_or_else(|| user_id.clone());
        Ok(Identity {
            user_id,
            name,
            roles: claims.roles,
        })
    }

    /// Mints an HS256 token for `claims` with the configured secret.
    pub fn mint(&self, claims: &Claims) -> Result<String, AuthError> {
        encode(
            &Header::new(Algorithm::HS256),
            claims,
            &EncodingKey::from_secret(self.secret.expose_secret().as_bytes()),
        )
        .map_err(|e| AuthError::Invalid(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> JwtKeys {
        JwtKeys::new(
            &SecretString::from("q8Zr1vN3xK5wL7pT9yB2cF4hJ6mQ0sUaZZ"),
            None,
        )
        .unwrap()
    }

    fn claims(user: &str, roles: &[&str]) -> Claims {
        Claims {
            user_id: user.into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            name: None,
            exp: None,
            nbf: None,
        }
    }

    #[test]
    fn minted_tokens_verify_and_name_defaults_to_user_id() {
        let k = keys();
        let id = k
            .verify(&k.mint(&claims("u1", &["user"])).unwrap())
            .unwrap();
        assert_eq!(id.user_id, "u1");
        assert_eq!(id.name, "u1");
        assert!(!id.is_admin());
        let admin = k
            .verify(&k.mint(&claims("a1", &["chat_admin"])).unwrap())
            .unwrap();
        assert!(admin.is_admin());
    }

    #[test]
    fn expired_and_not_yet_valid_tokens_are_refused() {
        let k = keys();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let mut c = claims("u1", &[]);
        c.exp = Some(now - 10);
        assert!(k.verify(&k.mint(&c).unwrap()).is_err());
        let mut c = claims("u1", &[]);
        c.nbf = Some(now + 3600);
        assert!(k.verify(&k.mint(&c).unwrap()).is_err());
    }

    #[test]
    fn tokens_without_required_claims_or_with_another_secret_are_refused() {
        let k = keys();
        let other = JwtKeys::new(
            &SecretString::from("zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz"),
            None,
        )
        .unwrap();
        assert!(k.verify(&other.mint(&claims("u1", &[])).unwrap()).is_err());
        let no_roles = encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({"user_id": "u1"}),
            &EncodingKey::from_secret(b"q8Zr1vN3xK5wL7pT9yB2cF4hJ6mQ0sUaZZ"),
        )
        .unwrap();
        assert!(k.verify(&no_roles).is_err());
        let empty_user = k.mint(&claims("", &[])).unwrap();
        assert!(k.verify(&empty_user).is_err());
        assert_eq!(k.verify(""), Err(AuthError::Missing));
    }

    #[test]
    fn user_ids_that_cannot_name_a_user_are_refused() {
        let k = keys();
        let longest = "u".repeat(MAX_USER_ID_BYTES);
        assert_eq!(
            k.verify(&k.mint(&claims(&longest, &[])).unwrap())
                .unwrap()
                .user_id,
            longest
        );
        for bad in [
            " \u{0} ".to_string(),
            "\u{0}".to_string(),
            "u".repeat(MAX_USER_ID_BYTES + 1),
            "alice\nadmin".to_string(),
            "bob\u{1b}[31m".to_string(),
            "carol\u{85}".to_string(),
        ] {
            let token = k.mint(&claims(&bad, &["user"])).unwrap();
            assert!(
                matches!(k.verify(&token), Err(AuthError::Invalid(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn names_are_cleaned_and_cut_instead_of_refused() {
        let k = keys();
        let named = |name: &str| {
            let mut c = claims("u1", &[]);
            c.name = Some(name.into());
            k.verify(&k.mint(&c).unwrap()).unwrap().name
        };
        assert_eq!(named(" Ann\u{0}\nLee "), "AnnLee");
        let long = named(&"é".repeat(100));
        assert!(long.len() <= MAX_NAME_BYTES && long.len() >= MAX_NAME_BYTES - 1);
        assert!(long.chars().all(|c| c == 'é'));
        assert_eq!(named("\u{7}\t"), "u1", "nothing left: the user id");
    }

    #[test]
    fn tokens_over_the_size_limit_are_refused_before_parsing() {
        let k = keys();
        let mut c = claims("u1", &[]);
        c.name = Some("n".repeat(MAX_TOKEN_BYTES));
        let token = k.mint(&c).unwrap();
        assert!(token.len() > MAX_TOKEN_BYTES);
        assert_eq!(
            k.verify(&token),
            Err(AuthError::Invalid(format!(
                "token is longer than {MAX_TOKEN_BYTES} bytes"
            )))
        );
        let garbage = "x".repeat(MAX_TOKEN_BYTES + 1);
        assert_eq!(k.verify(&garbage), k.verify(&token));
    }

    const SECRET: &[u8] = b"q8Zr1vN3xK5wL7pT9yB2cF4hJ6mQ0sUaZZ";
    const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
    const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
    const EC_PRIVATE: &str = include_str!("testdata/ec_private.pem");
    const EC_PUBLIC: &str = include_str!("testdata/ec_public.pem");

    fn signed(alg: Algorithm, key: &EncodingKey, body: &serde_json::Value) -> String {
        encode(&Header::new(alg), body, key).unwrap()
    }

    fn body(user: &str) -> serde_json::Value {
        serde_json::json!({"user_id": user, "roles": ["user"]})
    }

    fn with_public_key(pem: &str) -> JwtKeys {
        JwtKeys::new(
            &SecretString::from("q8Zr1vN3xK5wL7pT9yB2cF4hJ6mQ0sUaZZ"),
            Some(pem),
        )
        .unwrap()
    }

    #[test]
    fn hs384_and_hs512_tokens_are_accepted() {
        let key = EncodingKey::from_secret(SECRET);
        for alg in [Algorithm::HS384, Algorithm::HS512] {
            let token = signed(alg, &key, &body("u2"));
            assert_eq!(keys().verify(&token).unwrap().user_id, "u2", "{alg:?}");
        }
    }

    #[test]
    fn rs256_and_es256_tokens_are_accepted_with_their_public_key() {
        let cases = [
            (
                Algorithm::RS256,
                EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(),
                RSA_PUBLIC,
                EC_PUBLIC,
            ),
            (
                Algorithm::ES256,
                EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(),
                EC_PUBLIC,
                RSA_PUBLIC,
            ),
        ];
        for (alg, private, public, other) in cases {
            let token = signed(alg, &private, &body("pk-user"));
            let id = with_public_key(public).verify(&token).unwrap();
            assert_eq!(id.user_id, "pk-user", "{alg:?}");
            assert!(with_public_key(other).verify(&token).is_err(), "{alg:?}");
            assert!(
                keys().verify(&token).is_err(),
                "{alg:?} without a public key"
            );
        }
    }

    #[test]
    fn rs256_is_refused_without_a_public_key() {
        let key = EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap();
        let token = signed(Algorithm::RS256, &key, &body("rsa-user"));
        assert_eq!(
            keys().verify(&token),
            Err(AuthError::Invalid("RS256 is not configured".into()))
        );
    }

    #[test]
    fn fractional_time_claims_are_accepted_like_golang_jwt() {
        let key = EncodingKey::from_secret(SECRET);
        let now = time::OffsetDateTime::now_utc().unix_timestamp() as f64;
        let valid = serde_json::json!({
            "user_id": "f", "roles": [],
            "exp": now + 3600.5, "nbf": now - 10.25, "iat": now - 10.75,
        });
        assert_eq!(
            keys()
                .verify(&signed(Algorithm::HS256, &key, &valid))
                .unwrap()
                .user_id,
            "f"
        );
        let expired = serde_json::json!({"user_id": "f", "roles": [], "exp": now - 5.5});
        assert!(
            keys()
                .verify(&signed(Algorithm::HS256, &key, &expired))
                .is_err()
        );
        let early = serde_json::json!({"user_id": "f", "roles": [], "nbf": now + 3600.5});
        assert!(
            keys()
                .verify(&signed(Algorithm::HS256, &key, &early))
                .is_err()
        );
        let not_a_number = serde_json::json!({"user_id": "f", "roles": [], "exp": "soon"});
        assert!(
            keys()
                .verify(&signed(Algorithm::HS256, &key, &not_a_number))
                .is_err()
        );
    }

    #[test]
    fn time_claims_are_truncated_to_whole_seconds() {
        let claims = Incoming {
            user_id: "u".into(),
            roles: vec![],
            name: None,
            exp: Some(NumericDate(100.9)),
            nbf: Some(NumericDate(50.9)),
        };
        assert!(claims.check_times(99.99).is_ok());
        assert!(
            claims.check_times(100.0).is_err(),
            "expired from its second on"
        );
        assert!(claims.check_times(50.0).is_ok(), "valid from its second on");
        assert!(claims.check_times(49.99).is_err());
    }
}
