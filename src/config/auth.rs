//! Token verification settings: the JWT secret (configured, or generated for development) and the
//! optional public key.

use std::path::{Path, PathBuf};

use secrecy::SecretString;

use super::jwt_secret::{check_jwt_secret, load_or_create_dev_secret};
use super::raw::ChatboxSection;
use crate::settings_kit::{ConfigError, EnvVars};

/// Token verification.
#[derive(Clone)]
pub struct AuthSettings {
    /// HMAC secret for HS256/384/512 tokens.
    pub jwt_secret: SecretString,
    /// Whether the secret was generated for development (printed tokens are then offered).
    pub jwt_secret_generated: bool,
    /// PEM public key enabling RS256 or ES256 tokens (`JWT_PUBLIC_KEY_FILE`).
    pub jwt_public_key_pem: Option<String>,
}

impl std::fmt::Debug for AuthSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthSettings")
            .field("jwt_secret", &"[REDACTED]")
            .field("jwt_secret_generated", &self.jwt_secret_generated)
            .field("jwt_public_key_pem", &self.jwt_public_key_pem.is_some())
            .finish()
    }
}

impl AuthSettings {
    /// Reads `JWT_SECRET`/`chatbox.jwt_secret` (checked for strength; required in production, else
    /// generated into `data_dir`) and `JWT_PUBLIC_KEY_FILE`/`chatbox.jwt_public_key_file`.
    pub(super) fn build(
        env: &EnvVars,
        c: &ChatboxSection,
        production: bool,
        data_dir: &Path,
    ) -> Result<Self, ConfigError> {
        let key_file = env
            .get("JWT_PUBLIC_KEY_FILE")
            .map(PathBuf::from)
            .or_else(|| c.jwt_public_key_file.clone());
        let jwt_public_key_pem = match key_file {
            Some(path) => Some(std::fs::read_to_string(&path).map_err(|e| {
                ConfigError::invalid("JWT_PUBLIC_KEY_FILE", format!("{}: {e}", path.display()))
            })?),
            None => None,
        };
        let (key, secret) = match (env.get("JWT_SECRET"), &c.jwt_secret) {
            (Some(value), _) => ("JWT_SECRET", Some(SecretString::from(value.to_string()))),
            (None, Some(value)) => ("chatbox.jwt_secret", Some(value.clone())),
            (None, None) => ("JWT_SECRET", None),
        };
        let (jwt_secret, jwt_secret_generated) = match secret {
            Some(secret) => {
                check_jwt_secret(key, &secret)?;
                (secret, false)
            }
            None if production => {
                return Err(ConfigError::invalid(
                    key,
                    "is required in production (at least 32 random bytes)",
                ));
            }
            None => (load_or_create_dev_secret(data_dir)?, true),
        };
        Ok(Self {
            jwt_secret,
            jwt_secret_generated,
            jwt_public_key_pem,
        })
    }
}
