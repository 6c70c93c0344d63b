//! The inbound pipeline of a text frame: JSON decoding that names the bad field (for the log),
//! case-insensitive field names, sanitising (NUL bytes removed, surrounding whitespace trimmed; `type` is
//! matched exactly), defaults, the Go service's validation rules and the spec's limits, then the typed
//! [`ClientMessage`].

use std::fmt::Display;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::protocol::ws::{
    ClientMessage, ENVELOPE_CLIENT_MSG_ID_MAX_BYTES, ENVELOPE_SESSION_ID_MAX_BYTES, Envelope,
    ServerMessage,
};

use super::ChatError;

/// Whether `kind` is a message type of the spec, sent by clients or by the server (the Go service's
/// known types); frames of other types fail validation as they did there.
fn is_known_type(kind: &str) -> bool {
    ClientMessage::MESSAGE_TYPES.contains(&kind) || ServerMessage::MESSAGE_TYPES.contains(&kind)
}

/// The spec's name of `kind` when only the server sends it. The error frame that refuses such a frame
/// repeats this name, which is therefore always one of the spec's.
fn server_only_type(kind: &str) -> Option<&'static str> {
    ServerMessage::MESSAGE_TYPES
        .iter()
        .copied()
        .find(|t| *t == kind && !ClientMessage::MESSAGE_TYPES.contains(t))
}

/// String fields of the envelope that are sanitised. `type` is not among them: it is matched exactly, so
/// `"user_message "` or `"user_message\u0000"` is an unknown type.
const TRIMMED_FIELDS: &[&str] = &[
    "session_id",
    "content",
    "file_id",
    "file_url",
    "model_id",
    "client_msg_id",
];

/// Longest detail of a refusal kept for the log, in bytes (parser messages can quote client input).
const MAX_DETAIL_BYTES: usize = 200;

/// How far in the future a client timestamp may be.
const MAX_CLOCK_SKEW: time::Duration = time::Duration::minutes(1);

/// What a decoded frame carries besides its typed body.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// The typed message.
    pub message: ClientMessage,
    /// The envelope's `session_id` (empty counts as absent).
    pub session_id: Option<String>,
    /// The envelope's `client_msg_id`.
    pub client_msg_id: Option<String>,
}

/// The ids a refused frame carried, as far as they could be read, so its error frame can name them. An id
/// longer than the spec allows is not repeated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hints {
    /// The frame's `session_id` (a non-empty string of at most 128 bytes).
    pub session_id: Option<String>,
    /// The frame's `client_msg_id` (a non-empty string of at most 128 bytes).
    pub client_msg_id: Option<String>,
}

impl Hints {
    fn read(object: &Map<String, Value>) -> Self {
        let field = |name: &str, max_bytes: usize| {
            object
                .get(name)
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty() && s.len() <= max_bytes)
                .map(String::from)
        };
        Self {
            session_id: field("session_id", ENVELOPE_SESSION_ID_MAX_BYTES),
            client_msg_id: field("client_msg_id", ENVELOPE_CLIENT_MSG_ID_MAX_BYTES),
        }
    }
}

/// The detail of a refusal for the log, cut to [`MAX_DETAIL_BYTES`] on a character boundary.
fn detail(text: impl Display) -> String {
    let mut text = text.to_string();
    text.truncate(text.floor_char_boundary(MAX_DETAIL_BYTES));
    text
}

/// A refused frame: why, and the ids it carried.
pub type Refused = (ChatError, Box<Hints>);

/// Decodes one text frame. Errors carry the session id and client message id when they could be read, so
/// the error frame can name them; their texts (parser messages, paths) are for the log only.
pub fn decode(text: &str) -> Result<Decoded, Refused> {
    let value: Value = serde_json::from_str(text)
        .map_err(|e| (ChatError::Malformed(detail(e)), Box::default()))?;
    let Value::Object(object) = value else {
        return Err((
            ChatError::Malformed("a frame must be a JSON object".into()),
            Box::default(),
        ));
    };
    let mut object = normalise_keys(object);
    sanitise(&mut object);
    let hints = Box::new(Hints::read(&object));
    let fail = |err: ChatError| (err, hints.clone());

    let envelope: Envelope = serde_path_to_error::deserialize(Value::Object(object.clone()))
        .map_err(|e| {
            fail(ChatError::Malformed(detail(format_args!(
                "{}: {}",
                e.path(),
                e.inner()
            ))))
        })?;
    check_timestamp(&envelope).map_err(|e| fail(ChatError::Malformed(detail(e))))?;
    validate(&envelope).map_err(|e| fail(ChatError::Invalid(detail(e))))?;
    let kind = envelope.r#type.as_deref().unwrap_or_default();
    if let Some(server_only) = server_only_type(kind) {
        return Err(fail(ChatError::UnroutableType(server_only)));
    }

    // Defaults of the Go service: a missing sender is `user`; a missing timestamp is now.
    object
        .entry("sender")
        .or_insert_with(|| Value::from("user"));
    let message: ClientMessage =
        serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
            fail(ChatError::Invalid(detail(format_args!(
                "{}: {}",
                e.path(),
                e.inner()
            ))))
        })?;
    Ok(Decoded {
        message,
        session_id: envelope.session_id.filter(|s| !s.is_empty()),
        client_msg_id: envelope.client_msg_id.filter(|s| !s.is_empty()),
    })
}

/// Field names are matched case-insensitively, as Go's decoder did: `Session_ID` reads as `session_id`
/// unless the exact name is also present.
fn normalise_keys(object: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::with_capacity(object.len());
    let mut folded = Vec::new();
    for (key, value) in object {
        let lower = key.to_ascii_lowercase();
        if lower == key {
            out.insert(key, value);
        } else {
            folded.push((lower, value));
        }
    }
    for (key, value) in folded {
        out.entry(key).or_insert(value);
    }
    out
}

fn clean(text: &str) -> String {
    text.replace('\0', "").trim().to_string()
}

/// Removes NUL bytes and surrounding whitespace; empty or null timestamps count as absent.
fn sanitise(object: &mut Map<String, Value>) {
    for field in TRIMMED_FIELDS {
        if let Some(Value::String(s)) = object.get_mut(*field) {
            *s = clean(s);
        }
    }
    if let Some(Value::Object(meta)) = object.get_mut("metadata") {
        let cleaned: Map<String, Value> = std::mem::take(meta)
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    Value::String(s) => Value::String(clean(&s)),
                    other => other,
                };
                (clean(&k), v)
            })
            .collect();
        *meta = cleaned;
    }
    if let Some(Value::Object(error)) = object.get_mut("error") {
        for field in ["code", "message"] {
            if let Some(Value::String(s)) = error.get_mut(field) {
                *s = clean(s);
            }
        }
    }
    if matches!(object.get("timestamp"), Some(Value::Null))
        || object.get("timestamp").and_then(Value::as_str) == Some("")
    {
        object.remove("timestamp");
    }
}

fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339).ok()
}

/// A timestamp that is not RFC 3339 fails decoding (reference 1.3 step 2: Go's decoder refused it), not
/// validation.
fn check_timestamp(envelope: &Envelope) -> Result<(), String> {
    match &envelope.timestamp {
        Some(ts) => OffsetDateTime::parse(ts, &Rfc3339)
            .map(drop)
            .map_err(|e| format!("timestamp: {e}")),
        None => Ok(()),
    }
}

fn present(field: &Option<String>) -> bool {
    field.as_deref().is_some_and(|s| !s.is_empty())
}

/// The Go service's validation rules plus the spec's limits; the text is for logs only.
fn validate(envelope: &Envelope) -> Result<(), String> {
    let kind = envelope.r#type.as_deref().unwrap_or_default();
    if !is_known_type(kind) {
        return Err(format!("unknown type {kind:?}"));
    }
    let sender = envelope.sender.as_deref().unwrap_or("user");
    if !matches!(sender, "user" | "ai" | "admin" | "system") {
        return Err(format!("unknown sender {sender:?}"));
    }
    if let Some(at) = envelope.timestamp.as_deref().and_then(parse_timestamp)
        && at > OffsetDateTime::now_utc() + MAX_CLOCK_SKEW
    {
        return Err("timestamp is in the future".into());
    }
    match kind {
        "user_message" | "admin_message" if !present(&envelope.content) => {
            return Err("content is required".into());
        }
        // `file_url` may be left out when `file_id` names an upload (checked by the file service).
        "file_upload" | "voice_message" if !present(&envelope.file_id) => {
            return Err("file_id is required".into());
        }
        "model_select" if !present(&envelope.model_id) => return Err("model_id is required".into()),
        "admin_join" | "admin_leave" | "admin_message" if sender != "admin" => {
            return Err("admin messages need sender admin".into());
        }
        "help_request" if sender != "user" => return Err("help_request needs sender user".into()),
        "resume" if envelope.last_seq.is_none() => return Err("last_seq is required".into()),
        _ => {}
    }
    envelope.validate().map_err(|v| v.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(text: &str) -> String {
        let (err, _) = decode(text).unwrap_err();
        err.to_wire().1
    }

    #[test]
    fn a_user_message_decodes_with_defaults() {
        let d = decode(r#"{"type":"user_message","session_id":" s1 ","content":" hi\u0000 "}"#)
            .unwrap();
        assert_eq!(d.session_id.as_deref(), Some("s1"));
        match d.message {
            ClientMessage::UserMessage(m) => assert_eq!(m.content, "hi"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn field_names_are_case_insensitive() {
        let d = decode(r#"{"Type":"ping","Client_Msg_Id":"c1"}"#).unwrap();
        assert_eq!(d.client_msg_id.as_deref(), Some("c1"));
    }

    /// The log text of the refusal of `text`.
    fn logged(text: &str) -> String {
        decode(text).unwrap_err().0.to_string()
    }

    #[test]
    fn malformed_json_and_wrong_types_get_the_fixed_text_and_the_log_names_the_problem() {
        assert_eq!(code("{not json"), "Invalid message format");
        assert_eq!(code(""), "Invalid message format");
        assert!(logged("").contains("EOF while parsing"));
        let frame = r#"{"type":"user_message","content":"x","metadata":{"size":5}}"#;
        assert_eq!(code(frame), "Invalid message format");
        assert!(logged(frame).contains("metadata.size"), "{}", logged(frame));
        assert_eq!(code(r#"{"type":7}"#), "Invalid message format");
        assert_eq!(code("[1,2]"), "Invalid message format");
        assert!(logged("[1,2]").contains("a frame must be a JSON object"));
    }

    #[test]
    fn logged_details_are_bounded_even_when_the_parser_quotes_the_input() {
        let long = "k".repeat(5_000);
        let frame = format!(r#"{{"type":"resume","last_seq":"{long}"}}"#);
        assert_eq!(code(&frame), "Invalid message format");
        assert!(logged(&frame).len() < 300, "{}", logged(&frame).len());
        assert!(detail("é".repeat(200)).len() <= MAX_DETAIL_BYTES);
    }

    #[test]
    fn validation_failures_use_the_reference_text() {
        assert_eq!(
            code(r#"{"type":"user_message","content":"  "}"#),
            "Message validation failed"
        );
        assert_eq!(code(r#"{"type":"bogus"}"#), "Message validation failed");
        assert_eq!(
            code(r#"{"type":"user_message","content":"x","sender":"robot"}"#),
            "Message validation failed"
        );
        assert_eq!(
            code(r#"{"type":"model_select"}"#),
            "Message validation failed"
        );
        assert_eq!(
            code(r#"{"type":"admin_join","session_id":"s"}"#),
            "Message validation failed"
        );
        assert_eq!(
            code(r#"{"type":"user_message","content":"x","timestamp":"2999-01-01T00:00:00Z"}"#),
            "Message validation failed"
        );
        let long = "a".repeat(10_001);
        assert_eq!(
            code(&format!(r#"{{"type":"user_message","content":"{long}"}}"#)),
            "Message validation failed"
        );
    }

    #[test]
    fn a_badly_formatted_timestamp_is_a_format_error() {
        let frame = r#"{"type":"user_message","content":"x","timestamp":"yesterday"}"#;
        assert_eq!(code(frame), "Invalid message format");
        assert!(logged(frame).contains("timestamp"), "{}", logged(frame));
    }

    #[test]
    fn the_type_is_matched_exactly() {
        for kind in [
            "user_message ",
            " user_message",
            "user_message\\u0000",
            "User_Message",
        ] {
            let frame = format!(r#"{{"type":"{kind}","content":"hi","client_msg_id":"c1"}}"#);
            let (err, hints) = decode(&frame).unwrap_err();
            assert_eq!(err.to_wire().1, "Message validation failed", "{kind:?}");
            assert_eq!(hints.client_msg_id.as_deref(), Some("c1"));
        }
        assert!(decode(r#"{"type":"user_message","content":" hi "}"#).is_ok());
    }

    #[test]
    fn ids_longer_than_the_spec_allows_are_not_repeated() {
        let long = "c".repeat(ENVELOPE_CLIENT_MSG_ID_MAX_BYTES + 1);
        let (_, hints) = decode(&format!(
            r#"{{"type":"ping","client_msg_id":"{long}","session_id":"{long}"}}"#
        ))
        .unwrap_err();
        assert_eq!(*hints, Hints::default());
        let fits = "c".repeat(ENVELOPE_SESSION_ID_MAX_BYTES);
        let (_, hints) = decode(&format!(
            r#"{{"type":"bogus","client_msg_id":"{fits}","session_id":"{fits}"}}"#
        ))
        .unwrap_err();
        assert_eq!(hints.session_id.as_deref(), Some(fits.as_str()));
        assert_eq!(hints.client_msg_id.as_deref(), Some(fits.as_str()));
    }

    #[test]
    fn refusals_carry_the_ids_they_could_read() {
        let (_, hints) = decode(
            r#"{"type":"user_message","content":" ","session_id":"s1","client_msg_id":"c1"}"#,
        )
        .unwrap_err();
        assert_eq!(hints.session_id.as_deref(), Some("s1"));
        assert_eq!(hints.client_msg_id.as_deref(), Some("c1"));
        let (_, hints) = decode(
            r#"{"type":"user_message","content":"x","metadata":{"a":1},"Client_Msg_Id":"c2"}"#,
        )
        .unwrap_err();
        assert_eq!(hints.client_msg_id.as_deref(), Some("c2"));
        let (_, hints) = decode(r#"{"type":"ping","client_msg_id":7}"#).unwrap_err();
        assert_eq!(*hints, Hints::default());
    }

    #[test]
    fn server_only_types_are_refused_by_name() {
        assert_eq!(
            code(r#"{"type":"ai_response","content":"x"}"#),
            "Invalid message format: unknown message type ai_response"
        );
        assert_eq!(
            code(r#"{"type":"pong"}"#),
            "Invalid message format: unknown message type pong"
        );
        // The Go service's eighteen types: twelve a client sends, six only the server sends.
        let server_only: Vec<_> = ServerMessage::MESSAGE_TYPES
            .iter()
            .filter_map(|t| server_only_type(t))
            .collect();
        assert_eq!(
            server_only,
            [
                "connection_status",
                "loading",
                "ai_response",
                "notification",
                "pong",
                "error"
            ]
        );
        assert_eq!(ClientMessage::MESSAGE_TYPES.len(), 12);
        assert!(
            ClientMessage::MESSAGE_TYPES
                .iter()
                .all(|t| is_known_type(t))
        );
        assert!(!is_known_type("user_message "));
        assert_eq!(server_only_type("user_message"), None);
    }

    #[test]
    fn javascript_timestamps_and_empty_timestamps_are_accepted() {
        assert!(decode(r#"{"type":"ping","timestamp":"2020-01-01T00:00:00.123Z"}"#).is_ok());
        assert!(decode(r#"{"type":"ping","timestamp":""}"#).is_ok());
        assert!(decode(r#"{"type":"ping","timestamp":null}"#).is_ok());
    }
}
