//! Signed download links: `{prefix}/uploads/{id}?expires=<unix seconds>&signature=<hex>`, where the
//! signature is HMAC-SHA256 under the keyring's signing key over the scope (`download`), the file id and
//! the expiry. A link works for its file and until its expiry only, on every node with the same keys.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;

/// A signed link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedLink {
    /// The path with its query.
    pub url: String,
    /// When it stops working.
    pub expires_at: OffsetDateTime,
}

const SCOPE: &str = "download";

fn mac(key: &[u8; 32], file_id: &str, expires: i64) -> Hmac<Sha256> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(format!("chatbox/v1/link\n{SCOPE}\n{file_id}\n{expires}").as_bytes());
    mac
}

impl SignedLink {
    /// The link to `path` (the download path of `file_id`), expiring at `expires_at` (whole seconds).
    pub fn sign(key: &[u8; 32], path: &str, file_id: &str, expires_at: OffsetDateTime) -> Self {
        let expires = expires_at.unix_timestamp();
        let signature = hex::encode(mac(key, file_id, expires).finalize().into_bytes());
        Self {
            url: format!("{path}?expires={expires}&signature={signature}"),
            expires_at: OffsetDateTime::from_unix_timestamp(expires).unwrap_or(expires_at),
        }
    }
}

/// Whether `signature` signs `file_id` and `expires`, and `expires` is not past at `now`. The comparison
/// takes the same time whatever the signature.
pub fn verify(
    key: &[u8; 32],
    file_id: &str,
    expires: i64,
    signature: &str,
    now: OffsetDateTime,
) -> bool {
    let Ok(bytes) = hex::decode(signature) else {
        return false;
    };
    mac(key, file_id, expires).verify_slice(&bytes).is_ok() && now.unix_timestamp() <= expires
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_link_opens_its_file_until_it_expires_and_nothing_else() {
        let key = [7u8; 32];
        let now = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let link = SignedLink::sign(
            &key,
            "/chatbox/uploads/f1",
            "f1",
            now + time::Duration::minutes(5),
        );
        let query = link.url.split_once('?').unwrap().1;
        let (expires, signature) = query.split_once('&').unwrap();
        let expires: i64 = expires.strip_prefix("expires=").unwrap().parse().unwrap();
        let signature = signature.strip_prefix("signature=").unwrap();
        assert!(verify(&key, "f1", expires, signature, now));
        assert!(!verify(&key, "f2", expires, signature, now), "another file");
        assert!(
            !verify(&key, "f1", expires + 60, signature, now),
            "another expiry"
        );
        assert!(
            !verify(&[8u8; 32], "f1", expires, signature, now),
            "another key"
        );
        assert!(!verify(&key, "f1", expires, "zz", now));
        let later = now + time::Duration::minutes(5) + time::Duration::seconds(1);
        assert!(!verify(&key, "f1", expires, signature, later), "expired");
    }
}
