//! Strong ETags of the files built into the binary (the published JSON Schemas, the console's assets) and
//! the `If-None-Match` check that turns a repeated request into a `304 Not Modified`.

use poem::Request;
use poem::http::header;
use sha2::{Digest, Sha256};

/// The strong ETag of `contents`: the first 16 bytes of its SHA-256, in hex, quoted.
pub fn etag(contents: &[u8]) -> String {
    let digest = Sha256::digest(contents);
    format!("\"{}\"", hex::encode(&digest[..16]))
}

/// Whether an `If-None-Match` value (`*` or a list of tags, weak or strong) matches `tag`.
pub fn none_match(header: &str, tag: &str) -> bool {
    header
        .split(',')
        .map(|t| t.trim().trim_start_matches("W/"))
        .any(|t| t == "*" || t == tag)
}

/// Whether `req` already holds the version tagged `tag` (its `If-None-Match` matches).
pub fn fresh(req: &Request, tag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| none_match(v, tag))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_follow_the_bytes() {
        assert_eq!(etag(b"x"), etag(b"x"));
        assert_ne!(etag(b"x"), etag(b"y"));
        assert_eq!(etag(b"x").len(), 34);
    }

    #[test]
    fn if_none_match_accepts_lists_weak_tags_and_star() {
        assert!(none_match("\"a\", \"b\"", "\"b\""));
        assert!(none_match("W/\"b\"", "\"b\""));
        assert!(none_match("*", "\"b\""));
        assert!(!none_match("\"a\"", "\"b\""));
    }
}
