//! Builds the keyring from the configuration; in development without a configured key, generates one
//! once into `<data_dir>/encryption.key` (mode 0600).

use std::io::Write;
use std::path::Path;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;

use super::config::StoreConfig;
use super::crypto::{Keyring, parse_key};
use super::error::StoreError;

/// File of the generated development key in the data directory.
pub const DEV_KEY_FILE: &str = "encryption.key";
/// Key id of the generated development key.
pub const DEV_KEY_ID: &str = "dev";

/// Builds the keyring: the configured keys; outside production, also the development key of `data_dir`
/// (generated on first use when no key is configured) so data written in development stays readable.
pub fn load_keyring(
    config: &StoreConfig,
    data_dir: &Path,
    production: bool,
) -> Result<Keyring, StoreError> {
    let bad = |name: &str, e: super::CryptoError| StoreError::Setup(format!("{name}: {e}"));
    let mut keys = Vec::new();
    if let Some(key) = &config.encryption_key {
        keys.push((
            config.primary_key_id(),
            parse_key(key.expose_secret()).map_err(|e| bad("ENCRYPTION_KEY", e))?,
        ));
    }
    for (id, key) in &config.encryption_keys {
        keys.push((
            id.clone(),
            parse_key(key.expose_secret()).map_err(|e| bad("ENCRYPTION_KEYS", e))?,
        ));
    }
    let dev_path = data_dir.join(DEV_KEY_FILE);
    if keys.is_empty() {
        if production {
            return Err(StoreError::Setup(
                "production requires an encryption key (ENCRYPTION_KEY)".into(),
            ));
        }
        let key = read_or_create_dev_key(&dev_path)?;
        keys.push((DEV_KEY_ID.to_string(), key));
        return Keyring::new(keys, DEV_KEY_ID).map_err(|e| bad("keyring", e));
    }
    if !production && dev_path.exists() && !keys.iter().any(|(id, _)| id == DEV_KEY_ID) {
        keys.push((DEV_KEY_ID.to_string(), read_dev_key(&dev_path)?));
    }
    let active = config.active_key_id().ok_or_else(|| {
        StoreError::Setup("ENCRYPTION_ACTIVE_KEY_ID is required with several keys".into())
    })?;
    Keyring::new(keys, &active).map_err(|e| bad("ENCRYPTION_ACTIVE_KEY_ID", e))
}

fn read_dev_key(path: &Path) -> Result<[u8; 32], StoreError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| StoreError::Setup(format!("cannot read {}: {e}", path.display())))?;
    parse_key(text.trim()).map_err(|e| StoreError::Setup(format!("{}: {e}", path.display())))
}

fn read_or_create_dev_key(path: &Path) -> Result<[u8; 32], StoreError> {
    if path.exists() {
        return read_dev_key(path);
    }
    if let Some(dir) = path.parent() {
        crate::settings_kit::create_private_dir(dir)
            .map_err(|e| StoreError::Setup(format!("cannot create {}: {e}", dir.display())))?;
    }
    let key: [u8; 32] = rand::random();
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    match options.open(path) {
        Ok(mut file) => {
            writeln!(file, "{}", STANDARD.encode(key))
                .and_then(|()| file.sync_all())
                .map_err(|e| StoreError::Setup(format!("cannot write {}: {e}", path.display())))?;
            tracing::warn!(
                path = %path.display(),
                "no ENCRYPTION_KEY configured: generated a development encryption key (production refuses to start without one)"
            );
            Ok(key)
        }
        // Another process created it first.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => read_dev_key(path),
        Err(e) => Err(StoreError::Setup(format!(
            "cannot create {}: {e}",
            path.display()
        ))),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use secrecy::SecretString;

    #[test]
    fn development_key_is_generated_once_with_private_permissions() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig::default();
        let first = load_keyring(&config, dir.path(), false).unwrap();
        assert_eq!(first.active_id(), DEV_KEY_ID);
        let sealed = first
            .encrypt("x", super::super::crypto::Binding::Name { session: "s" })
            .unwrap();
        let second = load_keyring(&config, dir.path(), false).unwrap();
        let plain = second
            .decrypt(
                &sealed,
                super::super::crypto::Binding::Name { session: "s" },
                true,
            )
            .unwrap();
        assert_eq!(plain, "x");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join(DEV_KEY_FILE))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
    }

    #[test]
    fn production_without_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        assert!(load_keyring(&StoreConfig::default(), dir.path(), true).is_err());
        assert!(!dir.path().join(DEV_KEY_FILE).exists());
    }

    #[test]
    fn configured_key_is_active_and_dev_key_stays_readable() {
        let dir = tempfile::tempdir().unwrap();
        load_keyring(&StoreConfig::default(), dir.path(), false).unwrap();
        let config = StoreConfig {
            encryption_key: Some(SecretString::from("0123456789abcdef0123456789abcdef")),
            ..StoreConfig::default()
        };
        let ring = load_keyring(&config, dir.path(), false).unwrap();
        assert_eq!(ring.active_id(), "k0");
        assert_eq!(ring.key_ids(), vec!["k0", "dev"]);
    }
}
