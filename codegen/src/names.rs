//! Case conversion and Rust identifier rules shared by the emitters.

/// Words of an identifier-like string: split at non-alphanumerics, lower-to-upper steps and acronym ends.
fn words(s: &str) -> Vec<String> {
    let mut words = Vec::new();
    for part in s.split(|c: char| !c.is_ascii_alphanumeric()) {
        let chars: Vec<char> = part.chars().collect();
        let mut current = String::new();
        for (i, &c) in chars.iter().enumerate() {
            if !current.is_empty() && c.is_ascii_uppercase() {
                let prev = chars[i - 1];
                let next_lower = chars.get(i + 1).is_some_and(char::is_ascii_lowercase);
                if prev.is_ascii_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_ascii_uppercase() && next_lower)
                {
                    words.push(std::mem::take(&mut current));
                }
            }
            current.push(c);
        }
        if !current.is_empty() {
            words.push(current);
        }
    }
    words
}

/// `user_message` -> `UserMessage`, `getSession` -> `GetSession`, `INVALID_FORMAT` -> `InvalidFormat`,
/// `HTTPServer` -> `HttpServer`.
pub(crate) fn pascal(s: &str) -> String {
    words(s)
        .iter()
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => {
                    first.to_ascii_uppercase().to_string() + &chars.as_str().to_ascii_lowercase()
                }
                None => String::new(),
            }
        })
        .collect()
}

/// `TotalSessions` -> `total_sessions`, `sessionId` -> `session_id`.
pub(crate) fn snake(s: &str) -> String {
    words(s)
        .iter()
        .map(|w| w.to_ascii_lowercase())
        .collect::<Vec<_>>()
        .join("_")
}

/// `UserMessage`, `content` -> `USER_MESSAGE_CONTENT`.
pub(crate) fn screaming(parts: &[&str]) -> String {
    parts
        .iter()
        .map(|p| snake(p).to_ascii_uppercase())
        .collect::<Vec<_>>()
        .join("_")
}

const KEYWORDS: &[&str] = &[
    "as", "break", "const", "continue", "crate", "else", "enum", "extern", "false", "fn", "for",
    "if", "impl", "in", "let", "loop", "match", "mod", "move", "mut", "pub", "ref", "return",
    "self", "Self", "static", "struct", "super", "trait", "true", "type", "unsafe", "use", "where",
    "while", "async", "await", "dyn", "abstract", "become", "box", "do", "final", "macro",
    "override", "priv", "typeof", "unsized", "virtual", "yield", "try", "gen",
];

/// Keywords that cannot be raw identifiers.
const NOT_RAW: &[&str] = &["crate", "self", "Self", "super"];

/// How a name is spelt in Rust source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RustName {
    /// A plain identifier.
    Plain(String),
    /// A keyword written `r#name`; serde and poem-openapi strip the `r#`.
    Raw(String),
}

impl RustName {
    /// The name as serde and poem-openapi see it (without `r#`).
    pub(crate) fn unraw(&self) -> &str {
        match self {
            Self::Plain(s) | Self::Raw(s) => s,
        }
    }

    /// The identifier token.
    pub(crate) fn ident(&self) -> proc_macro2::Ident {
        let span = proc_macro2::Span::call_site();
        match self {
            Self::Plain(s) => proc_macro2::Ident::new(s, span),
            Self::Raw(s) => proc_macro2::Ident::new_raw(s, span),
        }
    }
}

/// Makes `candidate` a valid identifier: digits first get a prefix, keywords become raw (or get `_`).
fn identifier(candidate: String, digit_prefix: &str, empty: &str) -> RustName {
    let candidate = if candidate.is_empty() {
        empty.to_owned()
    } else if candidate.starts_with(|c: char| c.is_ascii_digit()) {
        format!("{digit_prefix}{candidate}")
    } else {
        candidate
    };
    if NOT_RAW.contains(&candidate.as_str()) {
        RustName::Plain(format!("{candidate}_"))
    } else if KEYWORDS.contains(&candidate.as_str()) {
        RustName::Raw(candidate)
    } else {
        RustName::Plain(candidate)
    }
}

/// A struct field name for a wire name.
pub(crate) fn field(wire: &str) -> RustName {
    identifier(snake(wire), "_", "field")
}

/// A type or variant name for a wire name.
pub(crate) fn type_name(wire: &str) -> RustName {
    identifier(pascal(wire), "V", "Empty")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cases_convert_like_serde_expects() {
        assert_eq!(pascal("user_message"), "UserMessage");
        assert_eq!(pascal("getSession"), "GetSession");
        assert_eq!(pascal("SessionMetadata"), "SessionMetadata");
        assert_eq!(pascal("INVALID_FORMAT"), "InvalidFormat");
        assert_eq!(pascal("HTTPServer"), "HttpServer");
        assert_eq!(pascal("adminGetMetrics"), "AdminGetMetrics");
        assert_eq!(snake("TotalSessions"), "total_sessions");
        assert_eq!(snake("sessionId"), "session_id");
        assert_eq!(snake("HTTPServer"), "http_server");
        assert_eq!(snake("retry_after"), "retry_after");
        assert_eq!(snake("p95Ms"), "p95_ms");
        assert_eq!(
            screaming(&["UserMessage", "content"]),
            "USER_MESSAGE_CONTENT"
        );
    }

    #[test]
    fn keywords_and_digits_become_valid_identifiers() {
        assert_eq!(field("type"), RustName::Raw("type".into()));
        assert_eq!(field("self"), RustName::Plain("self_".into()));
        assert_eq!(field("2fa"), RustName::Plain("_2fa".into()));
        assert_eq!(type_name("1st"), RustName::Plain("V1st".into()));
        assert_eq!(
            type_name("in-progress"),
            RustName::Plain("InProgress".into())
        );
    }
}
