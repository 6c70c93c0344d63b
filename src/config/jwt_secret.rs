//! The JWT secret: the Go service's strength rules, and the development secret that is generated once
//! and kept in the data directory.

use std::path::Path;

use base64::Engine;
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};

use crate::settings_kit::{ConfigError, create_private_dir, no_placeholder};

/// Case-insensitive substrings that make a JWT secret weak (reference section 3).
const WEAK_PATTERNS: &[&str] = &[
    "secret",
    "test",
    "test123",
    "password",
    "admin",
    "changeme",
    "default",
    "example",
    "demo",
    "12345",
    "placeholder",
];

/// Minimum JWT secret length in bytes.
const MIN_SECRET_BYTES: usize = 32;

/// Refuses JWT secrets shorter than 32 bytes or containing a weak pattern; `key` names the source.
pub fn check_jwt_secret(key: &str, secret: &SecretString) -> Result<(), ConfigError> {
    let value = secret.expose_secret();
    no_placeholder(key, value)?;
    if value.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::invalid(
            key,
            format!("must be at least {MIN_SECRET_BYTES} bytes"),
        ));
    }
    let lower = value.to_ascii_lowercase();
    if let Some(pattern) = WEAK_PATTERNS.iter().find(|p| lower.contains(*p)) {
        return Err(ConfigError::invalid(
            key,
            format!("is weak: contains the common pattern {pattern:?}"),
        ));
    }
    Ok(())
}

/// Name of the file that keeps the development JWT secret in the data directory.
const DEV_SECRET_FILE: &str = "dev-jwt-secret";

/// Reads the development JWT secret from `data_dir`, creating it (mode 0600) on first use.
pub fn load_or_create_dev_secret(data_dir: &Path) -> Result<SecretString, ConfigError> {
    let path = data_dir.join(DEV_SECRET_FILE);
    let io_err = |e: std::io::Error| {
        ConfigError::invalid("CHATBOX_DATA_DIR", format!("{}: {e}", path.display()))
    };
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim().to_string();
        if !existing.is_empty() {
            return Ok(SecretString::from(existing));
        }
    }
    create_private_dir(data_dir).map_err(io_err)?;
    // A random value can contain a weak pattern by chance (say "demo"); draw again until it passes.
    let secret = loop {
        let mut bytes = [0u8; 48];
        rand::rng().fill_bytes(&mut bytes);
        let candidate =
            SecretString::from(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes));
        if check_jwt_secret(DEV_SECRET_FILE, &candidate).is_ok() {
            break candidate;
        }
    };
    write_private(&path, secret.expose_secret()).map_err(io_err)?;
    Ok(secret)
}

/// Writes `contents` to `path` readable only by the owner.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path)?;
    file.write_all(contents.as_bytes())?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_and_weak_secrets_are_refused() {
        let short = SecretString::from("abc");
        assert!(check_jwt_secret("JWT_SECRET", &short).is_err());
        let weak = SecretString::from("local-development-secret-change-in-production");
        let err = check_jwt_secret("JWT_SECRET", &weak)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("JWT_SECRET") && err.contains("secret"),
            "{err}"
        );
        let placeholder = SecretString::from("PLACEHOLDER_JWT_SECRET_0123456789abcdefghij");
        assert!(check_jwt_secret("chatbox.jwt_secret", &placeholder).is_err());
        let strong = SecretString::from("q8Zr1vN3xK5wL7pT9yB2cF4hJ6mQ0sUa");
        assert!(check_jwt_secret("JWT_SECRET", &strong).is_ok());
    }

    #[test]
    fn errors_never_contain_the_secret() {
        let weak = SecretString::from("hunter2-password-xxxxxxxxxxxxxxxxxxxxxxxx");
        let err = check_jwt_secret("JWT_SECRET", &weak)
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn dev_secret_is_generated_once_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_dev_secret(dir.path()).unwrap();
        let second = load_or_create_dev_secret(dir.path()).unwrap();
        assert_eq!(first.expose_secret(), second.expose_secret());
        assert!(check_jwt_secret("dev", &first).is_ok());
    }
}
