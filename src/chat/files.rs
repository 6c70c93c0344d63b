//! `file_upload` and `voice_message`: the URL must be https to a public host (checked after DNS
//! resolution); the message is stored and shown on every device; a voice message is then answered.

use std::net::IpAddr;
use std::time::Instant;

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
    file_url: String,
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

impl Chat {
    pub(super) async fn file_upload(
        &self,
        ctx: &ConnCtx,
        named_id: Option<&str>,
        m: Upload,
    ) -> Result<Option<PendingTurn>, ChatError> {
        let started = Instant::now();
        self.check_message_rate(ctx)?;
        check_file_url(&m.file_url).await?;
        let (session, live) = self.resolve(ctx, named_id, Access::Existing).await?;
        if !session.is_active() {
            return Err(ChatError::SessionEnded);
        }
        let seq = live.reserve_seq();
        let mut record = MessageRecord::new(
            message_id(m.client_msg_id.as_deref()),
            seq,
            StoredSender::User,
            m.content.clone().unwrap_or_default(),
        );
        record.file_id = Some(m.file_id.clone());
        record.file_url = Some(m.file_url.clone());
        record.client_msg_id = m.client_msg_id.clone();
        record.metadata = m.metadata.clone().unwrap_or_default();
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
                file_url: m.file_url.clone(),
                sender: Sender::User,
                user_id,
                client_msg_id: m.client_msg_id.clone(),
                metadata: m.metadata.clone(),
                seq: seq_i64(seq),
                timestamp: frames::now(),
            })
        } else {
            ServerMessage::FileUpload(FileUploadEvent {
                session_id: session.id.clone(),
                content: m.content.clone(),
                file_id: m.file_id.clone(),
                file_url: m.file_url.clone(),
                sender: Sender::User,
                user_id,
                client_msg_id: m.client_msg_id.clone(),
                metadata: m.metadata.clone(),
                seq: seq_i64(seq),
                timestamp: frames::now(),
            })
        };
        live.complete(self.bus.as_ref(), seq, Some((frames::encode(&frame), None)));
        if !m.voice || live.assistant().is_some() {
            return Ok(None);
        }
        // The model is told about the recording; the URL's query (signatures) is not shown to it.
        let note_seq = live.reserve_seq();
        let note = MessageRecord::new(
            message_id(None),
            note_seq,
            StoredSender::User,
            format!("Audio file: {}", redacted(&m.file_url)),
        );
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
