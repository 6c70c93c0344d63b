//! File names as clients send them, made safe to store and to send back: the last path component only,
//! no control or bidirectional-override characters, no leading dots, at most 200 bytes.

/// The name a file gets when nothing usable is left of the one sent.
pub const FALLBACK: &str = "file";
const MAX_BYTES: usize = 200;

/// The sanitised name of an upload.
pub fn sanitise(sent: &str) -> String {
    let last = sent.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last
        .chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .collect();
    let trimmed = cleaned
        .trim_start_matches(|c: char| c == '.' || c.is_whitespace())
        .trim_end();
    let mut end = trimmed.len().min(MAX_BYTES);
    while !trimmed.is_char_boundary(end) {
        end -= 1;
    }
    let name = trimmed[..end].trim_end();
    if name.is_empty() {
        FALLBACK.to_string()
    } else {
        name.to_string()
    }
}

/// Characters that reorder how text is shown (`evil\u{202e}gpj.exe` shows as `evilexe.jpg`).
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')
}

/// A `Content-Disposition` value naming `name`: an ASCII fallback and the UTF-8 name (RFC 6266, RFC 8187).
pub fn content_disposition(disposition: &str, name: &str) -> String {
    let ascii: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR_CHAR).to_string();
    format!("{disposition}; filename=\"{ascii}\"; filename*=UTF-8''{encoded}")
}

/// Everything but RFC 8187's `attr-char` is percent-encoded.
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn paths_controls_and_overrides_are_removed() {
        assert_eq!(sanitise("../../etc/passwd"), "passwd");
        assert_eq!(sanitise("C:\\Users\\me\\photo.png"), "photo.png");
        assert_eq!(sanitise("a\u{0}b\nc\u{7f}.txt"), "abc.txt");
        assert_eq!(sanitise("evil\u{202e}gpj.exe"), "evilgpj.exe");
        assert_eq!(sanitise("..."), FALLBACK);
        assert_eq!(sanitise(".bashrc"), "bashrc");
        assert_eq!(sanitise(""), FALLBACK);
        assert_eq!(sanitise("dir/"), FALLBACK);
        assert_eq!(sanitise(&"é".repeat(150)).len(), 200);
    }

    #[test]
    fn content_disposition_has_an_ascii_fallback_and_the_encoded_name() {
        assert_eq!(
            content_disposition("attachment", "résumé \"v2\".pdf"),
            "attachment; filename=\"r_sum_ _v2_.pdf\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%22v2%22.pdf"
        );
    }

    proptest! {
        #[test]
        fn a_sanitised_name_is_one_safe_component(sent in ".*") {
            let name = sanitise(&sent);
            prop_assert!(!name.is_empty() && name.len() <= MAX_BYTES);
            prop_assert!(!name.contains(['/', '\\']));
            prop_assert!(!name.starts_with('.'));
            prop_assert!(!name.chars().any(|c| c.is_control() || is_bidi_control(c)));
            prop_assert_eq!(sanitise(&name), name.clone());
        }
    }
}
