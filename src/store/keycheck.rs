//! The start-up key check and unreadable items: the key canary both stores keep, the report of key ids that
//! stored data needs but the keyring lacks, and the marking of values that do not decrypt (see
//! `docs/storage.md`, "Key canary and unreadable data").

use std::collections::BTreeSet;

use super::crypto::{Binding, CryptoError, Keyring, PREFIX};
use super::error::StoreError;

/// Sessions sampled by the start-up check: the most recent ones.
pub const KEY_CHECK_SESSIONS: usize = 100;
/// Messages sampled per session by the start-up check: its most recent ones.
pub const KEY_CHECK_MESSAGES: usize = 20;
/// Metadata key set to `"true"` on a message whose content cannot be decrypted (its content is `""`).
pub const UNREADABLE: &str = "unreadable";
/// Plaintext of the canary.
const CANARY_TEXT: &str = "chatbox key canary";

/// What the start-up key check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyReport {
    /// Key id the canary is stored under.
    pub canary_key_id: String,
    /// True when this check wrote the canary (first start on this store).
    pub canary_created: bool,
    /// Keys that stored data needs and the keyring cannot serve: ids that are not configured, ids whose
    /// configured key does not open the data, and [`LEGACY_KEY_LABEL`](super::crypto::LEGACY_KEY_LABEL)
    /// for Go-format ciphertexts that open with no key. Never key material.
    pub missing: BTreeSet<String>,
    /// Stored values examined (the canary included).
    pub checked: usize,
    /// Of those, values that do not decrypt.
    pub unreadable: usize,
}

impl KeyReport {
    /// True when every value examined decrypts.
    pub fn is_ok(&self) -> bool {
        self.missing.is_empty() && self.unreadable == 0
    }

    /// One sentence naming the missing key ids (never keys), for logs, the start-up error and `/readyz`.
    pub fn describe(&self) -> String {
        let ids: Vec<&str> = self.missing.iter().map(String::as_str).collect();
        format!(
            "stored data needs encryption key id(s) {} that the configured keys cannot open ({} of {} \
             sampled values unreadable): configure the old key under its id in ENCRYPTION_KEYS, keeping \
             the new one active with ENCRYPTION_ACTIVE_KEY_ID",
            ids.join(", "),
            self.unreadable,
            self.checked,
        )
    }
}

/// Examines sampled values for a [`KeyReport`].
pub(crate) struct KeyProbe<'a> {
    keyring: &'a Keyring,
    report: KeyReport,
}

impl<'a> KeyProbe<'a> {
    /// A probe whose canary is `canary` (stored under `canary_key_id`, written now when `created`).
    pub(crate) fn new(keyring: &'a Keyring, canary: &str, created: bool) -> Self {
        let mut probe = Self {
            keyring,
            report: KeyReport {
                canary_key_id: canary
                    .strip_prefix(PREFIX)
                    .and_then(|rest| rest.split_once(':'))
                    .map(|(id, _)| id.to_string())
                    .unwrap_or_default(),
                canary_created: created,
                ..KeyReport::default()
            },
        };
        probe.value(canary, Binding::Canary, false);
        probe
    }

    /// Checks one stored value; `legacy_allowed` as in [`Keyring::decrypt`].
    pub(crate) fn value(&mut self, stored: &str, binding: Binding<'_>, legacy_allowed: bool) {
        if stored.is_empty() {
            return;
        }
        self.report.checked += 1;
        if let Err(err) = self.keyring.decrypt(stored, binding, legacy_allowed) {
            self.report.unreadable += 1;
            self.report
                .missing
                .insert(err.missing_key().unwrap_or("(malformed)").to_string());
        }
    }

    /// The report.
    pub(crate) fn finish(self) -> KeyReport {
        self.report
    }
}

/// A fresh canary sealed under the active key.
pub(crate) fn seal_canary(keyring: &Keyring) -> Result<String, StoreError> {
    Ok(keyring.encrypt(CANARY_TEXT, Binding::Canary)?)
}

/// A stored message content, decrypted; `None` when it cannot be (logged, without the value).
pub(crate) fn open_content(
    keyring: &Keyring,
    stored: &str,
    session: &str,
    message: &str,
) -> Option<String> {
    opened(
        keyring.decrypt(stored, Binding::Message { session, message }, true),
        session,
    )
}

/// A stored session name, decrypted; `None` when it cannot be (logged, without the value).
pub(crate) fn open_name(keyring: &Keyring, stored: &str, session: &str) -> Option<String> {
    if stored.is_empty() {
        return Some(String::new());
    }
    opened(
        keyring.decrypt(stored, Binding::Name { session }, false),
        session,
    )
}

fn opened(result: Result<String, CryptoError>, session: &str) -> Option<String> {
    result
        .inspect_err(|err| {
            tracing::debug!(session_id = %session, error = %err, "stored value is unreadable");
        })
        .ok()
}

/// `metadata` of a message whose content could not be decrypted: marked [`UNREADABLE`].
pub(crate) fn mark_unreadable(metadata: &mut std::collections::BTreeMap<String, String>) {
    metadata.insert(UNREADABLE.to_string(), "true".to_string());
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn ring(key: u8, id: &str) -> Keyring {
        Keyring::new(vec![(id.into(), [key; 32])], id).unwrap()
    }

    #[test]
    fn probe_names_unknown_and_changed_key_ids_never_keys() {
        let old = ring(1, "k0");
        let canary = seal_canary(&old).unwrap();
        let name = Binding::Name { session: "s" };
        let stored_name = old.encrypt("my name", name).unwrap();
        let other = ring(2, "k9").encrypt("x", name).unwrap();

        let same = KeyProbe::new(&old, &canary, false);
        assert!(same.finish().is_ok());

        let changed = ring(3, "k0");
        let mut probe = KeyProbe::new(&changed, &canary, false);
        probe.value(&stored_name, name, false);
        probe.value(&other, name, false);
        probe.value("plain legacy text", name, true);
        let report = probe.finish();
        assert_eq!(report.canary_key_id, "k0");
        assert_eq!(report.checked, 4);
        assert_eq!(report.unreadable, 3);
        assert_eq!(report.missing.iter().collect::<Vec<_>>(), vec!["k0", "k9"]);
        let text = report.describe();
        assert!(text.contains("k0, k9") && text.contains("3 of 4"), "{text}");
    }

    #[test]
    fn unreadable_values_open_to_none() {
        let old = ring(1, "k0");
        let sealed = old
            .encrypt(
                "hi",
                Binding::Message {
                    session: "s",
                    message: "m",
                },
            )
            .unwrap();
        assert_eq!(open_content(&old, &sealed, "s", "m").as_deref(), Some("hi"));
        assert_eq!(open_content(&ring(2, "k0"), &sealed, "s", "m"), None);
        assert_eq!(open_name(&ring(2, "k0"), "", "s").as_deref(), Some(""));
    }
}
