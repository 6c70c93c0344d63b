//! The session name rule of the Go service (reference 1.7), cut on UTF-8 boundaries.

/// Longest name in bytes before it is shortened.
const MAX_NAME_BYTES: usize = 50;
/// Bytes kept before the ellipsis when a name is shortened.
const CUT_BYTES: usize = 47;

/// The name of a session whose first user message is `message`.
pub fn session_name(message: &str) -> String {
    let text = message.trim();
    let line_end = text.find(['\n', '\r']);
    let first = match line_end {
        Some(end) => &text[..end],
        None => match text.find(['.', '?', '!']) {
            Some(end) => &text[..=end],
            None => text,
        },
    };
    let first = first.trim();
    if first.is_empty() {
        return "New Chat".into();
    }
    if first.len() <= MAX_NAME_BYTES {
        return first.to_string();
    }
    let mut cut = CUT_BYTES;
    while !first.is_char_boundary(cut) {
        cut -= 1;
    }
    let head = &first[..cut];
    let head = match head.rfind(' ') {
        Some(space) if space > 0 => &head[..space],
        _ => head,
    };
    format!("{head}...")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_sentence_or_line_becomes_the_name() {
        assert_eq!(session_name("Hello there. How are you?"), "Hello there.");
        assert_eq!(session_name("  What is Rust?  More text"), "What is Rust?");
        assert_eq!(session_name("line one\nline two. x"), "line one");
        assert_eq!(session_name("   "), "New Chat");
    }

    #[test]
    fn long_names_are_cut_at_a_space_with_an_ellipsis() {
        let name = session_name(
            "This is a rather long first message that keeps going without any stop at all",
        );
        assert!(name.ends_with("..."));
        assert!(name.len() <= 50, "{name}");
        assert_eq!(name, "This is a rather long first message that keeps...");
    }

    #[test]
    fn cuts_never_split_a_character() {
        let text = "é".repeat(40);
        let name = session_name(&text);
        assert!(name.ends_with("..."));
        assert!(name.len() <= 50);
    }

    proptest::proptest! {
        #[test]
        fn names_are_short_and_valid(text in "\\PC{0,200}") {
            let name = session_name(&text);
            proptest::prop_assert!(name.len() <= 50);
        }
    }
}
