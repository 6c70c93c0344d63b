//! How an uploaded file reaches the model with the message that posted it: an image as an image
//! attachment (providers that do not take images get a note instead), text inline up to
//! `uploads.text_tokens` tokens, anything else as a line naming it.

use crate::files::{Family, Files, StoredFile};
use crate::llm::{Attachment, ChatMessage};

use super::ChatError;

/// Largest image given to a model (the providers' own limit is about 5 MB per image).
pub const MAX_IMAGE_BYTES: u64 = 5 * 1024 * 1024;
/// Bytes per token assumed when cutting text to `uploads.text_tokens`.
const BYTES_PER_TOKEN: usize = 4;

/// The user message for a stored file message: `caption` and the file.
pub async fn message(
    files: &Files,
    caption: String,
    file: &StoredFile,
    text_tokens: usize,
) -> Result<ChatMessage, ChatError> {
    let name = &file.name;
    let size = file.record.size;
    let with_caption = |line: String| {
        if caption.is_empty() {
            line
        } else {
            format!("{caption}\n\n{line}")
        }
    };
    Ok(match file.family() {
        Some(Family::Image) if size <= MAX_IMAGE_BYTES => {
            let data = files.read_head(&file.record, size).await?;
            ChatMessage::user(with_caption(format!("[Image: {name}]"))).with_attachments(vec![
                Attachment::Image {
                    media_type: file.record.content_type.clone(),
                    data,
                },
            ])
        }
        Some(Family::Text) => {
            let max = text_tokens.saturating_mul(BYTES_PER_TOKEN) as u64;
            let head = files.read_head(&file.record, max).await?;
            let text = utf8_prefix(&head);
            let cut = if (text.len() as u64) < size {
                "\n[... the rest of the file is not shown]"
            } else {
                ""
            };
            ChatMessage::user(with_caption(format!(
                "[File: {name}]\n{text}{cut}\n[End of file: {name}]"
            )))
        }
        // Recordings reach the model as their transcript (a message of its own).
        Some(Family::Audio) if caption.is_empty() => ChatMessage::user(String::new()),
        _ => ChatMessage::user(with_caption(format!(
            "[File: {name} ({}, {size} bytes), not shown to the model]",
            file.record.content_type
        ))),
    })
}

/// The longest prefix of `bytes` that is UTF-8 (a character cut by a byte limit is left out).
fn utf8_prefix(bytes: &[u8]) -> &str {
    match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_character_cut_by_the_limit_is_left_out() {
        let text = "aé".as_bytes();
        assert_eq!(utf8_prefix(&text[..2]), "a");
        assert_eq!(utf8_prefix(text), "aé");
    }
}
