//! What an upload is, decided by its first bytes (magic numbers), never by its name or the type the client
//! claims: an allow-list of images, PDF, audio and UTF-8 text.

/// Bytes of the head of a file that [`kind_of`] looks at.
pub const HEAD: usize = 8 * 1024;

/// What the server does with a kind of file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// An image a model may see.
    Image,
    /// A PDF document (stored and downloadable; not given to models).
    Document,
    /// A recording (transcribed for voice messages).
    Audio,
    /// UTF-8 text, given to the model up to a limit.
    Text,
}

/// An allowed file type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// The content type the file is stored and served with.
    pub content_type: &'static str,
    /// What it is.
    pub family: Family,
}

/// The binary types accepted, by the content type `infer` names for their magic bytes, with what they are
/// and their usual extension.
const ALLOWED: &[(&str, Family, &str)] = &[
    ("image/png", Family::Image, "png"),
    ("image/jpeg", Family::Image, "jpg"),
    ("image/gif", Family::Image, "gif"),
    ("image/webp", Family::Image, "webp"),
    ("application/pdf", Family::Document, "pdf"),
    ("audio/mpeg", Family::Audio, "mp3"),
    ("audio/x-wav", Family::Audio, "wav"),
    ("audio/ogg", Family::Audio, "ogg"),
    ("audio/x-flac", Family::Audio, "flac"),
    ("audio/m4a", Family::Audio, "m4a"),
    ("audio/aac", Family::Audio, "aac"),
    // Browsers record voice as WebM (Opus) or MP4 (AAC); by their magic bytes both are video containers.
    ("video/webm", Family::Audio, "webm"),
    ("video/mp4", Family::Audio, "mp4"),
];

/// The content type of UTF-8 text.
pub const TEXT: &str = "text/plain; charset=utf-8";

/// The kind of a file whose first bytes are `head` (at most [`HEAD`] of them; `complete` when that is the
/// whole file), or `None` when the type is not allowed.
pub fn kind_of(head: &[u8], complete: bool) -> Option<Kind> {
    if let Some(found) = infer::get(head) {
        let mime = found.mime_type();
        if let Some((content_type, family, _)) = ALLOWED.iter().find(|(m, ..)| *m == mime) {
            return Some(Kind {
                content_type,
                family: *family,
            });
        }
        // Text formats `infer` recognises (HTML, XML, shell scripts) are still text: they are served as
        // plain text, never rendered.
        if !mime.starts_with("text/") && !mime.contains("xml") && !mime.contains("shellscript") {
            return None;
        }
    }
    is_text(head, complete).then_some(Kind {
        content_type: TEXT,
        family: Family::Text,
    })
}

/// The family of a stored content type (`None` for a type this server never stores).
pub fn family_of(content_type: &str) -> Option<Family> {
    if content_type == TEXT {
        return Some(Family::Text);
    }
    ALLOWED
        .iter()
        .find(|(m, ..)| *m == content_type)
        .map(|(_, family, _)| *family)
}

/// The usual file extension of a stored content type (`bin` for one this server never stores).
pub fn extension(content_type: &str) -> &'static str {
    if content_type == TEXT {
        return "txt";
    }
    ALLOWED
        .iter()
        .find(|(m, ..)| *m == content_type)
        .map_or("bin", |(.., ext)| *ext)
}

/// UTF-8 without NUL or other control characters than tab, line feed, form feed and carriage return. An
/// incomplete character at the end of a head cut short is allowed.
fn is_text(head: &[u8], complete: bool) -> bool {
    let valid = match std::str::from_utf8(head) {
        Ok(text) => text,
        Err(e) if !complete && e.error_len().is_none() => {
            std::str::from_utf8(&head[..e.valid_up_to()]).unwrap_or_default()
        }
        Err(_) => return false,
    };
    valid
        .chars()
        .all(|c| !c.is_control() || matches!(c, '\t' | '\n' | '\r' | '\x0c'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";
    const JPEG: &[u8] = b"\xff\xd8\xff\xe0\0\x10JFIF\0";
    const PDF: &[u8] = b"%PDF-1.7\n";
    const WEBM: &[u8] = b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81\x01\x42\xf2\x81\x04\x42\xf3\x81\x08\x42\x82\x84webm";
    const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0\0\0\0\0\0\0\0\0";
    const ZIP: &[u8] = b"PK\x03\x04\x14\0\0\0\x08\0";

    #[test]
    fn types_come_from_magic_bytes() {
        assert_eq!(
            kind_of(PNG, true).map(|k| k.content_type),
            Some("image/png")
        );
        assert_eq!(kind_of(JPEG, true).map(|k| k.family), Some(Family::Image));
        assert_eq!(kind_of(PDF, true).map(|k| k.family), Some(Family::Document));
        // `infer` looks for the WebM doc type in the first 256 bytes of a longer head.
        let mut webm = WEBM.to_vec();
        webm.resize(300, 0);
        assert_eq!(kind_of(&webm, true).map(|k| k.family), Some(Family::Audio));
        assert_eq!(kind_of(ELF, true), None);
        assert_eq!(kind_of(ZIP, true), None);
        assert_eq!(
            kind_of("héllo,\tworld\r\n".as_bytes(), true).map(|k| k.family),
            Some(Family::Text)
        );
        assert_eq!(
            kind_of(b"<html><script>x</script>", true).map(|k| k.content_type),
            Some(TEXT)
        );
    }

    #[test]
    fn binary_that_is_not_allowed_is_refused_even_with_text_around_it() {
        assert_eq!(kind_of(b"text\0with nul", true), None);
        assert_eq!(kind_of(b"\x1b[31mred", true), None);
        assert_eq!(kind_of(&[0xff, 0xfe, 0x41], true), None);
    }

    #[test]
    fn a_character_cut_at_the_end_of_the_head_is_text_only_when_more_follows() {
        let cut = &"aé".as_bytes()[..2];
        assert!(kind_of(cut, false).is_some());
        assert!(kind_of(cut, true).is_none());
    }
}
