//! Encryption at rest: a keyring of AES-256-GCM keys with ids, one of them active.
//!
//! Stored formats (see `docs/storage.md`):
//! - current: `cb1:<key id>:<base64std(nonce12 ‖ ciphertext ‖ tag16)>`, sealed with associated data that names
//!   the record (`chatbox/v1/msg/<session>/<message>` or `chatbox/v1/name/<session>`), so a value copied to
//!   another record does not open;
//! - legacy (Go service): `base64std(nonce12 ‖ ciphertext ‖ tag16)` with the raw key and no associated data;
//! - legacy plaintext (Go service without key): any other string, including an untagged value that looks
//!   like base64 but opens with no configured key and is not shaped like a ciphertext (a hex digest, or
//!   base64 of text): the Go service returns it as stored too.
//!
//! An untagged value shaped like a Go ciphertext (base64 of at least nonce + tag whose bytes are not
//! text) that opens with no configured key is [`CryptoError::UndecryptableLegacy`]: the reads mark it
//! unreadable rather than showing the base64 as if it were the message.

use std::fmt;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};

/// Id given to `ENCRYPTION_KEY` unless `ENCRYPTION_KEY_ID` says otherwise.
pub const DEFAULT_KEY_ID: &str = "k0";
/// Prefix of the current ciphertext format.
pub const PREFIX: &str = "cb1:";
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;

/// Encryption and decryption failures. Messages never contain keys or plaintext.
#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    /// A configured key is not 32 bytes (raw, base64 or hex).
    #[error("invalid encryption key: {0}")]
    InvalidKey(&'static str),
    /// A ciphertext does not open with the configured key(s): another key was used, or the value was altered
    /// or moved to another record.
    #[error(
        "cannot decrypt stored data (key id {key_id}): it was encrypted with a different key, or altered, or moved from another record; check ENCRYPTION_KEY / ENCRYPTION_KEYS"
    )]
    WrongKey {
        /// Id named by the ciphertext.
        key_id: String,
    },
    /// The ciphertext names a key id that is not configured.
    #[error(
        "stored data was encrypted with key id {0:?}, which is not configured (ENCRYPTION_KEYS)"
    )]
    UnknownKeyId(String),
    /// An untagged value in the Go service's ciphertext format opens with none of the configured keys (the
    /// Go service's key is not configured).
    #[error(
        "stored data in the Go service's format opens with none of the configured keys; configure the Go service's ENCRYPTION_KEY (ENCRYPTION_KEYS)"
    )]
    UndecryptableLegacy,
    /// A value with the current prefix is not well formed.
    #[error("malformed ciphertext")]
    Malformed,
    /// Encryption failed (not expected with valid keys).
    #[error("encryption failed")]
    Encrypt,
}

/// How the start-up key check and `/readyz` name the key of Go-format ciphertexts, which carry no key id
/// (parentheses never occur in a key id).
pub const LEGACY_KEY_LABEL: &str = "(go)";

impl CryptoError {
    /// The key a decryption failure needs: the key id a tagged value names ([`LEGACY_KEY_LABEL`] for a Go
    /// ciphertext); `None` for a malformed value and for encryption errors.
    pub fn missing_key(&self) -> Option<&str> {
        match self {
            CryptoError::WrongKey { key_id } | CryptoError::UnknownKeyId(key_id) => Some(key_id),
            CryptoError::UndecryptableLegacy => Some(LEGACY_KEY_LABEL),
            CryptoError::InvalidKey(_) | CryptoError::Malformed | CryptoError::Encrypt => None,
        }
    }
}

/// What a stored value is, without decrypting it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoredKind {
    /// Current format under the active key.
    Active,
    /// Current format under another key id.
    OtherKey(String),
    /// The Go service's ciphertext.
    Legacy,
    /// Not encrypted.
    Plaintext,
}

/// The record a ciphertext belongs to (its associated data).
#[derive(Debug, Clone, Copy)]
pub enum Binding<'a> {
    /// Content of message `message` in session `session`.
    Message {
        /// Session id.
        session: &'a str,
        /// Message id.
        message: &'a str,
    },
    /// Name of session `session`.
    Name {
        /// Session id.
        session: &'a str,
    },
    /// The store's key canary (see `docs/storage.md`).
    Canary,
    /// The data key of uploaded file `file` (its contents are sealed with that key).
    FileKey {
        /// File id.
        file: &'a str,
    },
    /// The name of uploaded file `file`.
    FileName {
        /// File id.
        file: &'a str,
    },
}

impl Binding<'_> {
    fn aad(&self) -> Vec<u8> {
        match self {
            Binding::Message { session, message } => {
                format!("chatbox/v1/msg/{}/{session}/{message}", session.len()).into_bytes()
            }
            Binding::Name { session } => format!("chatbox/v1/name/{session}").into_bytes(),
            Binding::Canary => b"chatbox/v1/canary".to_vec(),
            Binding::FileKey { file } => format!("chatbox/v1/file-key/{file}").into_bytes(),
            Binding::FileName { file } => format!("chatbox/v1/file-name/{file}").into_bytes(),
        }
    }
}

/// True for ids made of letters, digits, `-` and `_`, 1 to 32 characters.
pub fn valid_key_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Reads a key: exactly 32 raw bytes (the Go service's rule), else 64 hex digits, else base64 of 32 bytes.
pub fn parse_key(text: &str) -> Result<[u8; 32], CryptoError> {
    let bytes = text.as_bytes();
    if bytes.len() == 32 {
        let mut key = [0u8; 32];
        key.copy_from_slice(bytes);
        return Ok(key);
    }
    if text.len() == 64
        && let Ok(decoded) = hex::decode(text)
    {
        return to_key(&decoded);
    }
    for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
        if let Ok(decoded) = engine.decode(text) {
            return to_key(&decoded);
        }
    }
    Err(CryptoError::InvalidKey(
        "expected 32 raw bytes, 64 hex digits or base64 of 32 bytes",
    ))
}

/// HMAC-SHA256 of `chatbox/v1/signing` under `key`.
fn signing_key(key: &[u8; 32]) -> [u8; 32] {
    use hmac::{Hmac, Mac};
    let mut mac = <Hmac<sha2::Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(b"chatbox/v1/signing");
    mac.finalize().into_bytes().into()
}

fn to_key(bytes: &[u8]) -> Result<[u8; 32], CryptoError> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| CryptoError::InvalidKey("the decoded key is not 32 bytes"))
}

struct KeyEntry {
    id: String,
    cipher: Aes256Gcm,
    /// HMAC-SHA256 of a fixed label under the key: the key for signatures ([`Keyring::signing_key`]).
    signing: [u8; 32],
}

/// The configured keys; `active` encrypts new data, all decrypt.
pub struct Keyring {
    keys: Vec<KeyEntry>,
    active: usize,
}

impl fmt::Debug for Keyring {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keyring")
            .field(
                "key_ids",
                &self.keys.iter().map(|k| k.id.as_str()).collect::<Vec<_>>(),
            )
            .field("active", &self.active_id())
            .finish()
    }
}

impl Keyring {
    /// Builds a keyring from `(id, key)` pairs; `active_id` must be one of them.
    pub fn new(keys: Vec<(String, [u8; 32])>, active_id: &str) -> Result<Self, CryptoError> {
        let keys: Vec<KeyEntry> = keys
            .into_iter()
            .map(|(id, key)| KeyEntry {
                id,
                signing: signing_key(&key),
                cipher: Aes256Gcm::new(&key.into()),
            })
            .collect();
        let active = keys
            .iter()
            .position(|k| k.id == active_id)
            .ok_or(CryptoError::InvalidKey(
                "the active key id is not in the keyring",
            ))?;
        Ok(Self { keys, active })
    }

    /// Id of the key that encrypts new data.
    pub fn active_id(&self) -> &str {
        &self.keys[self.active].id
    }

    /// A key for signatures (HMAC) derived from the active key: every node with the same keys signs and
    /// verifies alike, and the encryption key itself is never used for anything but encryption.
    pub fn signing_key(&self) -> &[u8; 32] {
        &self.keys[self.active].signing
    }

    /// Ids of all keys.
    pub fn key_ids(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.id.as_str()).collect()
    }

    /// Encrypts `plaintext` with the active key, bound to `binding`.
    pub fn encrypt(&self, plaintext: &str, binding: Binding<'_>) -> Result<String, CryptoError> {
        let key = &self.keys[self.active];
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let aad = binding.aad();
        let sealed = key
            .cipher
            .encrypt(
                Nonce::from_slice(&nonce_bytes),
                Payload {
                    msg: plaintext.as_bytes(),
                    aad: &aad,
                },
            )
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce_bytes);
        out.extend_from_slice(&sealed);
        Ok(format!("{PREFIX}{}:{}", key.id, STANDARD.encode(out)))
    }

    /// Encrypts in the Go service's format (no key id, no associated data) with the key `key_id`.
    /// Only for tests and tools that must produce the legacy layout.
    pub fn encrypt_legacy(&self, plaintext: &str, key_id: &str) -> Result<String, CryptoError> {
        let key = self
            .keys
            .iter()
            .find(|k| k.id == key_id)
            .ok_or_else(|| CryptoError::UnknownKeyId(key_id.to_string()))?;
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let sealed = key
            .cipher
            .encrypt(Nonce::from_slice(&nonce_bytes), plaintext.as_bytes())
            .map_err(|_| CryptoError::Encrypt)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&sealed);
        Ok(STANDARD.encode(out))
    }

    /// Classifies a stored message content (`legacy_allowed`) or name (names were never encrypted by the Go
    /// service, so only the current format counts as encrypted).
    pub fn classify(&self, stored: &str, legacy_allowed: bool) -> StoredKind {
        if let Some(rest) = stored.strip_prefix(PREFIX)
            && let Some((id, _)) = rest.split_once(':')
        {
            return if id == self.active_id() {
                StoredKind::Active
            } else {
                StoredKind::OtherKey(id.to_string())
            };
        }
        if legacy_allowed && legacy_bytes(stored).is_some() {
            StoredKind::Legacy
        } else {
            StoredKind::Plaintext
        }
    }

    /// Decrypts a stored value bound to `binding`. Tagged (`cb1:`) values must open with their key, else
    /// [`CryptoError::WrongKey`] / [`CryptoError::UnknownKeyId`]. With `legacy_allowed`, untagged values
    /// that look like the Go format are tried with every key; one that does not open is
    /// [`CryptoError::UndecryptableLegacy`] when its bytes are shaped like a ciphertext (not text, not a
    /// hex digest), else it is returned as stored (legacy plaintext), as the Go service reads it.
    pub fn decrypt(
        &self,
        stored: &str,
        binding: Binding<'_>,
        legacy_allowed: bool,
    ) -> Result<String, CryptoError> {
        if let Some(rest) = stored.strip_prefix(PREFIX) {
            let (id, body) = rest.split_once(':').ok_or(CryptoError::Malformed)?;
            let key = self
                .keys
                .iter()
                .find(|k| k.id == id)
                .ok_or_else(|| CryptoError::UnknownKeyId(id.to_string()))?;
            let bytes = STANDARD.decode(body).map_err(|_| CryptoError::Malformed)?;
            if bytes.len() < NONCE_LEN + TAG_LEN {
                return Err(CryptoError::Malformed);
            }
            let aad = binding.aad();
            let plain = key
                .cipher
                .decrypt(
                    Nonce::from_slice(&bytes[..NONCE_LEN]),
                    Payload {
                        msg: &bytes[NONCE_LEN..],
                        aad: &aad,
                    },
                )
                .map_err(|_| CryptoError::WrongKey {
                    key_id: id.to_string(),
                })?;
            return String::from_utf8(plain).map_err(|_| CryptoError::Malformed);
        }
        if !legacy_allowed {
            return Ok(stored.to_string());
        }
        let Some(bytes) = legacy_bytes(stored) else {
            return Ok(stored.to_string());
        };
        for key in &self.keys {
            if let Ok(plain) = key
                .cipher
                .decrypt(Nonce::from_slice(&bytes[..NONCE_LEN]), &bytes[NONCE_LEN..])
                && let Ok(text) = String::from_utf8(plain)
            {
                return Ok(text);
            }
        }
        if shaped_like_ciphertext(stored, &bytes) {
            return Err(CryptoError::UndecryptableLegacy);
        }
        // Like the Go service (reference 4.3): an untagged value that does not open and is not shaped like
        // a ciphertext is legacy plaintext that merely looks like base64 (a hex digest, base64 of text),
        // returned as stored.
        Ok(stored.to_string())
    }
}

/// True when the base64 text `stored`, decoding to `bytes`, is shaped like a ciphertext rather than like
/// legacy plaintext: the random nonce, ciphertext and tag are not valid UTF-8 (28 random bytes are with a
/// probability far below one in a million), and the text is not made of hex digits only (a digest).
fn shaped_like_ciphertext(stored: &str, bytes: &[u8]) -> bool {
    std::str::from_utf8(bytes).is_err() && !stored.bytes().all(|b| b.is_ascii_hexdigit())
}

/// The decoded bytes when `stored` looks like a Go ciphertext: padded standard base64 of at least
/// nonce + tag (28 bytes).
fn legacy_bytes(stored: &str) -> Option<Vec<u8>> {
    if stored.len() < 40 || !stored.len().is_multiple_of(4) {
        return None;
    }
    STANDARD
        .decode(stored)
        .ok()
        .filter(|b| b.len() >= NONCE_LEN + TAG_LEN)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use proptest::prelude::*;

    const GO_KEY: &str = "0123456789abcdef0123456789abcdef";

    fn ring() -> Keyring {
        Keyring::new(
            vec![
                ("k0".into(), parse_key(GO_KEY).unwrap()),
                ("k1".into(), [7u8; 32]),
            ],
            "k1",
        )
        .unwrap()
    }

    const MSG: Binding<'static> = Binding::Message {
        session: "s1",
        message: "m1",
    };

    #[test]
    fn keys_parse_raw_hex_and_base64() {
        assert_eq!(&parse_key(GO_KEY).unwrap(), GO_KEY.as_bytes());
        let hex_key = hex::encode([9u8; 32]);
        assert_eq!(parse_key(&hex_key).unwrap(), [9u8; 32]);
        let b64 = STANDARD.encode([3u8; 32]);
        assert_eq!(parse_key(&b64).unwrap(), [3u8; 32]);
        assert!(parse_key("short").is_err());
        assert!(parse_key(&STANDARD.encode([1u8; 31])).is_err());
    }

    #[test]
    fn ciphertext_is_bound_to_its_record() {
        let ring = ring();
        let sealed = ring.encrypt("hello", MSG).unwrap();
        assert!(sealed.starts_with("cb1:k1:"));
        assert_eq!(ring.decrypt(&sealed, MSG, true).unwrap(), "hello");
        let other = Binding::Message {
            session: "s1",
            message: "m2",
        };
        assert!(matches!(
            ring.decrypt(&sealed, other, true),
            Err(CryptoError::WrongKey { .. })
        ));
        let name = Binding::Name { session: "s1" };
        assert!(ring.decrypt(&sealed, name, true).is_err());
    }

    #[test]
    fn legacy_go_ciphertext_and_plaintext_are_read() {
        let ring = ring();
        let legacy = ring.encrypt_legacy("from go", "k0").unwrap();
        assert_eq!(ring.classify(&legacy, true), StoredKind::Legacy);
        assert_eq!(ring.decrypt(&legacy, MSG, true).unwrap(), "from go");
        assert_eq!(
            ring.decrypt("plain old text", MSG, true).unwrap(),
            "plain old text"
        );
        assert_eq!(ring.classify("plain old text", true), StoredKind::Plaintext);
    }

    #[test]
    fn wrong_key_is_an_error_never_garbage() {
        let writer = ring();
        let reader = Keyring::new(vec![("k1".into(), [8u8; 32])], "k1").unwrap();
        let sealed = writer.encrypt("secret text", MSG).unwrap();
        let err = reader.decrypt(&sealed, MSG, true).unwrap_err();
        assert!(matches!(err, CryptoError::WrongKey { .. }));
        assert!(!err.to_string().contains("secret text"));

        let only_k0 = Keyring::new(vec![("k0".into(), [1u8; 32])], "k0").unwrap();
        assert!(matches!(
            only_k0.decrypt(&sealed, MSG, true),
            Err(CryptoError::UnknownKeyId(_))
        ));
    }

    #[test]
    fn untagged_values_that_do_not_open_are_legacy_plaintext() {
        let ring = ring();
        let hash = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
        let blob = STANDARD.encode([42u8; 48]);
        let text = STANDARD.encode("an attachment encoded by an old client");
        for text in [hash, blob.as_str(), text.as_str()] {
            assert_eq!(ring.classify(text, true), StoredKind::Legacy, "{text}");
            assert_eq!(ring.decrypt(text, MSG, true).unwrap(), text);
        }
    }

    #[test]
    fn go_ciphertext_under_an_unknown_key_is_an_error_never_its_base64() {
        let ring = ring();
        let foreign = Keyring::new(vec![("x".into(), [5u8; 32])], "x").unwrap();
        for plain in [
            "",
            "other key",
            "a longer message written by the go service",
        ] {
            let sealed = foreign.encrypt_legacy(plain, "x").unwrap();
            let err = ring.decrypt(&sealed, MSG, true).unwrap_err();
            assert!(matches!(err, CryptoError::UndecryptableLegacy), "{err:?}");
            assert_eq!(err.missing_key(), Some(LEGACY_KEY_LABEL));
        }
    }

    #[test]
    fn canary_is_bound_to_its_record() {
        let ring = ring();
        let sealed = ring.encrypt("canary", Binding::Canary).unwrap();
        assert_eq!(
            ring.decrypt(&sealed, Binding::Canary, false).unwrap(),
            "canary"
        );
        assert!(ring.decrypt(&sealed, MSG, true).is_err());
    }

    #[test]
    fn debug_shows_ids_only() {
        let text = format!("{:?}", ring());
        assert!(text.contains("k0") && !text.contains(GO_KEY));
    }

    proptest! {
        #[test]
        fn round_trip(text in ".*", session in "[a-f0-9]{1,32}", message in "[a-z0-9-]{1,36}") {
            let ring = ring();
            let binding = Binding::Message { session: &session, message: &message };
            let sealed = ring.encrypt(&text, binding).unwrap();
            prop_assert_eq!(ring.classify(&sealed, true), StoredKind::Active);
            prop_assert_eq!(ring.decrypt(&sealed, binding, true).unwrap(), text.clone());
            let legacy = ring.encrypt_legacy(&text, "k0").unwrap();
            prop_assert_eq!(ring.decrypt(&legacy, binding, true).unwrap(), text);
        }

        #[test]
        fn short_or_non_base64_text_is_plaintext(text in "[^=]{0,39}") {
            let ring = ring();
            prop_assert_eq!(ring.decrypt(&text, MSG, true).unwrap(), text.clone());
        }
    }
}
