//! Streaming an answer: `loading`, then one `ai_response` chunk per delta, with the answer so far stored
//! every `checkpoint_interval` so a crash loses at most that much.

use std::time::Instant;

use futures::StreamExt;

use crate::llm::{ChatMessage, LlmError, TurnEvent, estimate_tokens};
use crate::protocol::ws::{Loading, Sender, ServerMessage};
use crate::store::{MessageRecord, Sender as StoredSender};

use super::super::frames::{self, Chunk, seq_i64};
use super::super::user_message::message_id;
use super::{Turn, TurnEngine};

/// What a turn produced, whole or cut short, and the facts its end needs.
pub(super) struct Answer {
    /// The answer's store id, fixed when it began: checkpoints and the final answer are one message.
    pub id: String,
    /// The text streamed so far.
    pub text: String,
    /// The model answering (the fallback's id after a switch).
    pub model_id: String,
    /// Its provider kind, for metric labels.
    pub provider_kind: &'static str,
    /// The first model that failed, when a fallback answered.
    pub fallback_from: Option<String>,
    /// Tokens the provider reported.
    pub tokens: Option<u64>,
    /// Why a completed answer ended (`stop`, `length`).
    pub finish_reason: &'static str,
    /// What the prompt costs, for a turn cut short before the provider reported its usage.
    pub prompt_estimate: u64,
}

impl Answer {
    /// The answer as stored under `seq`; `partial` while it is being streamed or when it was cut short.
    pub fn record(&self, seq: u64, client_msg_id: Option<&str>, partial: bool) -> MessageRecord {
        let mut record =
            MessageRecord::new(self.id.clone(), seq, StoredSender::Ai, self.text.clone());
        record.model_id = Some(self.model_id.clone());
        record.client_msg_id = client_msg_id.map(str::to_string);
        record.partial = partial;
        record
    }
}

impl TurnEngine {
    /// Announces the turn and streams the model's answer to every device until it completes, fails or
    /// is cancelled.
    pub(super) async fn stream(
        &self,
        turn: &Turn<'_>,
        history: Vec<ChatMessage>,
    ) -> (Answer, Result<(), LlmError>) {
        let session = turn.session;
        let model_id = self.llm.model_for(&session.model_id).to_string();
        turn.live.emit(self.bus.as_ref(), None, |seq| {
            frames::encode(&ServerMessage::Loading(Loading {
                session_id: session.id.clone(),
                model_id: Some(model_id.clone()),
                client_msg_id: turn.client_msg_id.map(str::to_string),
                sender: Sender::Ai,
                seq: seq_i64(seq),
                timestamp: frames::now(),
            }))
        });
        let mut answer = Answer {
            id: message_id(None),
            text: String::new(),
            provider_kind: self.llm.provider_kind(&model_id).unwrap_or("unknown"),
            model_id,
            fallback_from: None,
            tokens: None,
            finish_reason: "stop",
            prompt_estimate: history.iter().map(|m| estimate_tokens(&m.content)).sum(),
        };
        let mut stream = self
            .llm
            .stream_turn(&answer.model_id, history, turn.cancel.clone());
        let mut first_token = false;
        let mut checkpointed = Instant::now();
        let outcome = loop {
            let event = tokio::select! {
                biased;
                () = turn.cancel.cancelled() => break Err(LlmError::Cancelled),
                event = stream.next() => event,
            };
            match event {
                Some(Ok(TurnEvent::Delta(delta))) => {
                    if !first_token {
                        first_token = true;
                        self.metrics
                            .turn_first_token
                            .with_label_values(&[answer.provider_kind])
                            .observe(turn.started.elapsed().as_secs_f64());
                    }
                    let seq = self.send_chunk(turn, &answer.model_id, &delta);
                    answer.text.push_str(&delta);
                    if checkpointed.elapsed() >= self.settings.checkpoint_interval {
                        checkpointed = Instant::now();
                        self.checkpoint(turn, &answer, seq).await;
                    }
                }
                Some(Ok(TurnEvent::FallbackSwitched { from, to })) => {
                    tracing::warn!(session_id = %session.id, from = %from, to = %to, "model fallback");
                    answer.fallback_from.get_or_insert(from);
                    answer.provider_kind =
                        self.llm.provider_kind(&to).unwrap_or(answer.provider_kind);
                    answer.model_id = to;
                }
                Some(Ok(TurnEvent::Usage(usage))) => answer.tokens = Some(usage.total()),
                Some(Ok(TurnEvent::Completed(summary))) => {
                    answer.tokens = Some(summary.usage.total());
                    answer.finish_reason = summary.finish_reason.as_str();
                    break Ok(());
                }
                Some(Err(err)) => break Err(err),
                None => {
                    break Err(if turn.cancel.is_cancelled() {
                        LlmError::Cancelled
                    } else {
                        LlmError::StreamBroken {
                            provider: answer.model_id.clone(),
                            detail: "stream ended without completion".into(),
                        }
                    });
                }
            }
        };
        (answer, outcome)
    }

    /// Sends one streamed chunk to every device; returns its seq.
    fn send_chunk(&self, turn: &Turn<'_>, model_id: &str, delta: &str) -> u64 {
        turn.live.emit_chunk(
            self.bus.as_ref(),
            delta,
            model_id,
            turn.client_msg_id,
            |seq| {
                frames::encode(
                    &Chunk {
                        session_id: &turn.session.id,
                        content: delta,
                        model_id,
                        client_msg_id: turn.client_msg_id,
                        done: false,
                        extra: Vec::new(),
                    }
                    .frame(seq),
                )
            },
        )
    }

    /// Stores the answer so far, marked partial, under the seq of its last chunk.
    async fn checkpoint(&self, turn: &Turn<'_>, answer: &Answer, seq: u64) {
        let record = answer.record(seq, turn.client_msg_id, true);
        if let Err(err) = self.store.put_answer(&turn.session.id, &record).await {
            tracing::warn!(session_id = %turn.session.id, error = %err, "answer checkpoint not stored");
        }
    }
}
