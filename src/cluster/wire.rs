//! What nodes send each other through Redis: channel names and the envelope of a message (one header line,
//! then the payload). A frame is serialised once by the node that makes it and carried as is.
//!
//! | kind | channel            | header fields      | payload |
//! |------|--------------------|--------------------|---------|
//! | `D`  | `u:<user>` or `a`  | origin, except     | a frame for the user's (or every admin's) connections |
//! | `T`  | `n:<node>`         | origin, conn       | frames for one connection, one per line |
//! | `S`  | `n:<node>`         | origin, conn       | the first frames of a connection that waits for them |
//! | `A`  | `n:<owner>`        | origin, conn, seq  | attach: the caller (JSON) |
//! | `F`  | `n:<owner>`        | origin, conn       | a frame from a connection: the caller (JSON), a newline, the frame |
//! | `Q`  | `n:<owner>`        | origin, conn       | the connection closed |
//! | `C`  | `n:<owner>`        | origin, call id    | a call (an admin action on a session), JSON |
//! | `R`  | `n:<caller>`       | origin, call id    | its answer, JSON |
//! | `O`  | (not sent)         | origin             | a dead node's turn: the session id, a newline, its record |
//!
//! Frames are JSON texts, which never hold a raw newline, so frames of a batch are one per line.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::Forwarded;
use crate::auth::Identity;
use crate::hub::ConnId;

/// Prefix of every key and channel of the server in Redis.
pub const PREFIX: &str = "chatbox:";

/// The channel of a user's connections.
pub fn user_channel(user_id: &str) -> String {
    format!("{PREFIX}u:{user_id}")
}

/// The channel of every admin connection.
pub fn admins_channel() -> String {
    format!("{PREFIX}a")
}

/// The channel of one node.
pub fn node_channel(node: u32) -> String {
    format!("{PREFIX}n:{node}")
}

/// The caller of a connection, as it travels to the node that handles its frames.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Caller {
    /// User id.
    pub user_id: String,
    /// Display name.
    pub name: String,
    /// Roles.
    pub roles: Vec<String>,
}

impl From<&Identity> for Caller {
    fn from(identity: &Identity) -> Self {
        Self {
            user_id: identity.user_id.clone(),
            name: identity.name.clone(),
            roles: identity.roles.clone(),
        }
    }
}

impl From<Caller> for Identity {
    fn from(caller: Caller) -> Self {
        Self {
            user_id: caller.user_id,
            name: caller.name,
            roles: caller.roles,
        }
    }
}

/// One message between nodes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Envelope {
    /// A frame for every connection of the channel's user (or of every admin), skipping `except`.
    Deliver {
        /// A connection that must not receive it.
        except: Option<ConnId>,
        /// The frame.
        frame: Arc<str>,
    },
    /// Frames for one connection.
    ToConn {
        /// The connection.
        conn: ConnId,
        /// The frames, in order.
        frames: Vec<Arc<str>>,
    },
    /// The first frames of a connection.
    FirstFrames {
        /// The connection.
        conn: ConnId,
        /// `connection_status` and the replay.
        frames: Vec<Arc<str>>,
    },
    /// For the owner of a user: a connection's attach, frame or close, or a call.
    ToOwner(Forwarded),
    /// The answer to a call.
    Reply {
        /// The call's id (of the node that called).
        id: u64,
        /// The answer.
        payload: String,
    },
}

/// A message and the node that sent it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The sending node.
    pub origin: u32,
    /// What it says.
    pub envelope: Envelope,
}

impl Message {
    /// The bytes published.
    pub fn encode(&self) -> Vec<u8> {
        let origin = self.origin;
        let (header, payload) = match &self.envelope {
            Envelope::Deliver { except, frame } => (
                format!("D {origin} {}", except.unwrap_or(0)),
                frame.to_string(),
            ),
            Envelope::ToConn { conn, frames } => (format!("T {origin} {conn}"), frames.join("\n")),
            Envelope::FirstFrames { conn, frames } => {
                (format!("S {origin} {conn}"), frames.join("\n"))
            }
            Envelope::ToOwner(Forwarded::Attach {
                conn,
                caller,
                last_seq,
            }) => (
                format!(
                    "A {origin} {conn} {}",
                    last_seq.map_or_else(|| "-".to_string(), |s| s.to_string())
                ),
                caller_json(caller),
            ),
            Envelope::ToOwner(Forwarded::Frame { conn, caller, text }) => (
                format!("F {origin} {conn}"),
                format!("{}\n{text}", caller_json(caller)),
            ),
            Envelope::ToOwner(Forwarded::Detach { conn }) => {
                (format!("Q {origin} {conn}"), String::new())
            }
            Envelope::ToOwner(Forwarded::Call { id, payload, .. }) => {
                (format!("C {origin} {id}"), payload.clone())
            }
            Envelope::Reply { id, payload } => (format!("R {origin} {id}"), payload.clone()),
            Envelope::ToOwner(Forwarded::Orphan { session_id, record }) => {
                (format!("O {origin}"), format!("{session_id}\n{record}"))
            }
            Envelope::ToOwner(Forwarded::NodeGone { node }) => {
                (format!("G {origin} {node}"), String::new())
            }
        };
        let mut bytes = Vec::with_capacity(header.len() + 1 + payload.len());
        bytes.extend_from_slice(header.as_bytes());
        bytes.push(b'\n');
        bytes.extend_from_slice(payload.as_bytes());
        bytes
    }

    /// Reads published bytes; `None` for anything malformed.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let (header, payload) = text.split_once('\n')?;
        let mut fields = header.split(' ');
        let kind = fields.next()?;
        let origin: u32 = fields.next()?.parse().ok()?;
        let mut number = || fields.next().and_then(|f| f.parse::<u64>().ok());
        let lines = || {
            payload
                .split('\n')
                .map(Arc::from)
                .collect::<Vec<Arc<str>>>()
        };
        let envelope = match kind {
            "D" => Envelope::Deliver {
                except: number().filter(|c| *c != 0),
                frame: Arc::from(payload),
            },
            "T" => Envelope::ToConn {
                conn: number()?,
                frames: lines(),
            },
            "S" => Envelope::FirstFrames {
                conn: number()?,
                frames: lines(),
            },
            "A" => {
                let conn = number()?;
                let last_seq = match fields.next()? {
                    "-" => None,
                    seq => Some(seq.parse().ok()?),
                };
                Envelope::ToOwner(Forwarded::Attach {
                    conn,
                    caller: serde_json::from_str(payload).ok()?,
                    last_seq,
                })
            }
            "F" => {
                let conn = number()?;
                let (caller, text) = payload.split_once('\n')?;
                Envelope::ToOwner(Forwarded::Frame {
                    conn,
                    caller: serde_json::from_str(caller).ok()?,
                    text: text.to_string(),
                })
            }
            "Q" => Envelope::ToOwner(Forwarded::Detach { conn: number()? }),
            "C" => Envelope::ToOwner(Forwarded::Call {
                origin,
                id: number()?,
                payload: payload.to_string(),
            }),
            "O" => {
                let (session_id, record) = payload.split_once('\n')?;
                Envelope::ToOwner(Forwarded::Orphan {
                    session_id: session_id.to_string(),
                    record: record.to_string(),
                })
            }
            "G" => Envelope::ToOwner(Forwarded::NodeGone {
                node: u32::try_from(number()?).ok()?,
            }),
            "R" => Envelope::Reply {
                id: number()?,
                payload: payload.to_string(),
            },
            _ => return None,
        };
        Some(Self { origin, envelope })
    }
}

fn caller_json(caller: &Caller) -> String {
    serde_json::to_string(caller).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(envelope: Envelope) {
        let message = Message {
            origin: 7,
            envelope,
        };
        assert_eq!(Message::decode(&message.encode()), Some(message));
    }

    #[test]
    fn every_kind_round_trips() {
        let caller = Caller {
            user_id: "u 1".into(),
            name: "Ann\nB".into(),
            roles: vec!["admin".into()],
        };
        round_trip(Envelope::Deliver {
            except: Some(5),
            frame: Arc::from(r#"{"type":"x"}"#),
        });
        round_trip(Envelope::Deliver {
            except: None,
            frame: Arc::from("{}"),
        });
        round_trip(Envelope::ToConn {
            conn: 1 << 41,
            frames: vec![Arc::from("{\"a\":1}"), Arc::from("{\"b\":2}")],
        });
        round_trip(Envelope::FirstFrames {
            conn: 3,
            frames: vec![Arc::from("{}")],
        });
        round_trip(Envelope::ToOwner(Forwarded::Attach {
            conn: 3,
            caller: caller.clone(),
            last_seq: Some(-1),
        }));
        round_trip(Envelope::ToOwner(Forwarded::Attach {
            conn: 3,
            caller: caller.clone(),
            last_seq: None,
        }));
        round_trip(Envelope::ToOwner(Forwarded::Frame {
            conn: 9,
            caller,
            text: "{\n \"type\": \"ping\"\n}".into(),
        }));
        round_trip(Envelope::ToOwner(Forwarded::Detach { conn: 9 }));
        round_trip(Envelope::ToOwner(Forwarded::NodeGone { node: 4 }));
        round_trip(Envelope::ToOwner(Forwarded::Call {
            origin: 7,
            id: 12,
            payload: "{\"a\":\n1}".into(),
        }));
        round_trip(Envelope::ToOwner(Forwarded::Orphan {
            session_id: "s1".into(),
            record: "{}".into(),
        }));
        round_trip(Envelope::Reply {
            id: 12,
            payload: "{}".into(),
        });
    }

    #[test]
    fn malformed_bytes_are_refused() {
        for bytes in [
            &b""[..],
            b"D x 0\n{}",
            b"Z 1 2\n",
            b"T 1\n{}",
            b"A 1 2 3\nnot json",
            b"\xff\n",
        ] {
            assert_eq!(Message::decode(bytes), None, "{bytes:?}");
        }
    }
}
