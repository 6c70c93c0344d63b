//! `file_upload` and `voice_message`: the file is an upload of the caller (`file_id` from `POST /uploads`,
//! attached to the session here) or hosted elsewhere (`file_url`: https to a public host, checked after DNS
//! resolution); the message is stored and shown on every device; a voice message is then answered, from
//! its transcript when the recording is an upload and a transcription service is configured.

use std::net::IpAddr;
use std::time::Instant;

use crate::files::sniff::extension;
use crate::files::{StoredFile, valid_id};
use crate::protocol::ws::{
    FileUpload, FileUploadEvent, Metadata, Sender, ServerMessage, VoiceMessage, VoiceMessageEvent,
};
use crate::store::{AppendOutcome, MessageRecord, Sender as StoredSender};

use super::frames::{self, seq_i64};
use super::resolve::Access;
use super::turns::PendingTurn;
use super::user_message::message_id;
use super::{Chat, ChatError, ConnCtx};

/// A file or voice message, whichever it is.
pub struct Upload {
    voice: bool,
    file_id: String,
    file_url: Option<String>,
    content: Option<String>,
    client_msg_id: Option<String>,
    metadata: Option<Metadata>,
}

impl From<FileUpload> for Upload {
    fn from(m: FileUpload) -> Self {
        Self {
            voice: false,
            file_id: m.file_id,
            file_url: m.file_url,
            content: m.content,
            client_msg_id: m.client_msg_id,
            metadata: m.metadata,
        }
    }
}

impl From<VoiceMessage> for Upload {
    fn from(m: VoiceMessage) -> Self {
        Self {
            voice: true,
            file_id: m.file_id,
            file_url: m.file_url,
            content: m.content,
            client_msg_id: m.client_msg_id,
            metadata: m.metadata,
        }
    }
}

/// True for addresses a file URL must not point to: the private, loopback, link-local and unspecified
/// ranges of reference 1.4, plus shared address space (100.64.0.0/10, carrier-grade NAT), broadcast and
/// multicast, and IPv4 addresses written as IPv6 (`::ffff:127.0.0.1`).
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || (a == 100 && (b & 0xc0) == 64)
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private(IpAddr::V4(v4));
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
        }
    }
}

/// Checks a file URL: https, a host, and no private address (also after resolving the name).
async fn check_file_url(text: &str) -> Result<(), ChatError> {
    let url = reqwest::Url::parse(text).map_err(|_| ChatError::BadFileUrl)?;
    if url.scheme() != "https" {
        return Err(ChatError::BadFileUrl);
    }
    let host = url.host_str().ok_or(ChatError::BadFileUrl)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if is_private(ip) {
            Err(ChatError::BadFileUrl)
        } else {
            Ok(())
        };
    }
    let port = url.port_or_known_default().unwrap_or(443);
    let addrs = tokio::net::lookup_host((host, port))
        .await
        .map_err(|_| ChatError::BadFileUrl)?;
    let mut any = false;
    for addr in addrs {
        any = true;
        if is_private(addr.ip()) {
            return Err(ChatError::BadFileUrl);
        }
    }
    if any {
        Ok(())
    } else {
        Err(ChatError::BadFileUrl)
    }
}

/// The URL with its query replaced, as the model sees it (signed URLs carry secrets in the query).
fn redacted(url: &str) -> String {
    match url.split_once('?') {
        Some((base, _)) => format!("{base}?[REDACTED]"),
        None => url.to_string(),
    }
}

/// Text the model gets for a voice message that is not transcribed (no transcription service).
pub const NOT_TRANSCRIBED: &str = "[The user sent a voice message. This server does not transcribe voice \
messages, so its content is unknown: tell the user that voice messages cannot be understood here and ask \
them to type their message.]";

impl Chat {
    /// The upload a frame's `file_id` names, when it is one of the caller's: `None` for a file hosted
    /// elsewhere (then `file_url` is checked), [`ChatError::FileNotFound`] for another user's upload, or
    /// for an id shaped like an upload id that names none when no `file_url` is given.
    async fn named_upload(
        &self,
        ctx: &ConnCtx,
        m: &Upload,
    ) -> Result<Option<StoredFile>, ChatError> {
        if !valid_id(&m.file_id) {
            return Ok(None);
        }
        match self.files.get(&m.file_id).await? {
            Some(file) if file.record.user_id == ctx.identity().user_id => Ok(Some(file)),
            Some(_) => Err(ChatError::FileNotFound),
            None if m.file_url.is_some() => Ok(None),
            None => Err(ChatError::FileNotFound),
        }
    }

    pub(super) async fn file_upload(
        &self,
        ctx: &ConnCtx,
        named_id: Option<&str>,
        m: Upload,
    ) -> Result<Option<PendingTurn>, ChatError> {
        let started = Instant::now();
        self.check_message_rate(ctx)?;
        let upload = self.named_upload(ctx, &m).await?;
        if upload.is_none() {
            check_file_url(m.file_url.as_deref().unwrap_or_default()).await?;
        }
        let (session, live) = self.resolve(ctx, named_id, Access::Existing).await?;
        if !session.is_active() {
            return Err(ChatError::SessionEnded);
        }
        let file_url = match &upload {
            Some(file) => self.files.download_path(&file.record.id),
            None => m.file_url.clone().unwrap_or_default(),
        };
        // Worked out before the message takes effect, so that a failure leaves nothing half done.
        let voice_note = match (&upload, m.voice) {
            (Some(file), true) => Some(self.voice_note(file).await?),
            (None, true) => Some(format!("Audio file: {}", redacted(&file_url))),
            (_, false) => None,
        };
        if let Some(file) = &upload {
            self.files
                .attach(&file.record, &session)
                .await?
                .ok_or(ChatError::FileNotFound)?;
        }
        let seq = live.reserve_seq();
        let mut record = MessageRecord::new(
            message_id(m.client_msg_id.as_deref()),
            seq,
            StoredSender::User,
            m.content.clone().unwrap_or_default(),
        );
        record.file_id = Some(m.file_id.clone());
        record.file_url = Some(file_url.clone());
        record.client_msg_id = m.client_msg_id.clone();
        record.metadata = m.metadata.clone().unwrap_or_default();
        if let Some(file) = &upload {
            record
                .metadata
                .entry("filename".into())
                .or_insert_with(|| file.name.clone());
            record
                .metadata
                .entry("type".into())
                .or_insert_with(|| file.record.content_type.clone());
            record
                .metadata
                .entry("size".into())
                .or_insert_with(|| file.record.size.to_string());
        }
        let metadata = match &upload {
            Some(_) => Some(record.metadata.clone()),
            None => m.metadata.clone(),
        };
        match self.store.append_message(&session.id, &record).await {
            Ok(AppendOutcome::Stored) => {}
            Ok(AppendOutcome::Duplicate) => {
                live.complete(self.bus.as_ref(), seq, None);
                return Ok(None);
            }
            Err(err) => {
                live.complete(self.bus.as_ref(), seq, None);
                return Err(err.into());
            }
        }
        let user_id = Some(ctx.identity().user_id.clone());
        let frame = if m.voice {
            ServerMessage::VoiceMessage(VoiceMessageEvent {
                session_id: session.id.clone(),
                content: m.content.clone(),
                file_id: m.file_id.clone(),
                file_url,
                sender: Sender::User,
                user_id,
                client_msg_id: m.client_msg_id.clone(),
                metadata,
                seq: seq_i64(seq),
                timestamp: frames::now(),
            })
        } else {
            ServerMessage::FileUpload(FileUploadEvent {
                session_id: session.id.clone(),
                content: m.content.clone(),
                file_id: m.file_id.clone(),
                file_url,
                sender: Sender::User,
                user_id,
                client_msg_id: m.client_msg_id.clone(),
                metadata,
                seq: seq_i64(seq),
                timestamp: frames::now(),
            })
        };
        live.complete(self.bus.as_ref(), seq, Some((frames::encode(&frame), None)));
        let Some(note) = voice_note else {
            return Ok(None);
        };
        if live.assistant().is_some() {
            return Ok(None);
        }
        // The model is told about the recording: its transcript, or that it has none; the URL's query
        // (signatures) is never shown to it.
        let note_seq = live.reserve_seq();
        let note = MessageRecord::new(message_id(None), note_seq, StoredSender::User, note);
        let stored = self.store.append_message(&session.id, &note).await;
        live.complete(self.bus.as_ref(), note_seq, None);
        stored?;
        Ok(Some(PendingTurn::queue(
            session,
            live,
            m.client_msg_id,
            started,
            false,
        )))
    }

    /// What the model is told of an uploaded voice message: its transcript when a transcription service
    /// is configured, else [`NOT_TRANSCRIBED`].
    async fn voice_note(&self, file: &StoredFile) -> Result<String, ChatError> {
        let Some(transcriber) = &self.transcriber else {
            return Ok(NOT_TRANSCRIBED.to_string());
        };
        let audio = self.files.read_head(&file.record, file.record.size).await?;
        // The APIs tell the format by the name's extension: the stored type decides it, not the name.
        let name = format!("voice.{}", extension(&file.record.content_type));
        let text = transcriber
            .transcribe(audio, &name, &file.record.content_type)
            .await
            .map_err(|e| {
                tracing::warn!(error = %e, "transcription failed");
                ChatError::Files(crate::files::FilesError::Transcription)
            })?;
        Ok(format!("[Voice message, transcribed:] {text}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn only_public_https_urls_are_accepted() {
        assert!(check_file_url("https://93.184.216.34/a.png").await.is_ok());
        for bad in [
            "http://93.184.216.34/a.png",
            "https://127.0.0.1/a",
            "https://10.1.2.3/a",
            "https://192.168.0.1/a",
            "https://169.254.169.254/latest",
            "https://[::1]/a",
            "https://[fd00::1]/a",
            "https://[::ffff:127.0.0.1]/a",
            "https://[::ffff:10.0.0.1]/a",
            "https://100.64.0.1/a",
            "https://224.0.0.1/a",
            "https://255.255.255.255/a",
            "https://[ff02::1]/a",
            "https://localhost/a",
            "not a url",
        ] {
            assert!(check_file_url(bad).await.is_err(), "{bad}");
        }
    }

    #[test]
    fn queries_are_redacted_for_the_model() {
        assert_eq!(
            redacted("https://x/a.webm?sig=abc"),
            "https://x/a.webm?[REDACTED]"
        );
        assert_eq!(redacted("https://x/a.webm"), "https://x/a.webm");
    }
}
