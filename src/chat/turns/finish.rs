//! The end of a turn: the answer and its figures stored, then the final chunk (`done="true"`, with
//! `finish_reason`, `tokens` and `fallback_from`) and, for a failed turn, the error frame.

use crate::hub::ConnId;
use crate::llm::{LlmError, estimate_tokens};
use crate::store::TurnUsage;

use super::super::ChatError;
use super::super::frames::{self, Chunk, seq_i64};
use super::stream::Answer;
use super::{Turn, TurnEngine};

/// Why an answer ended, as the final chunk's `finish_reason` says it.
fn finish_reason(answer: &Answer, outcome: &Result<(), LlmError>) -> &'static str {
    match outcome {
        Ok(()) => answer.finish_reason,
        Err(LlmError::Cancelled) => "cancelled",
        Err(LlmError::Timeout { .. }) => "timeout",
        Err(_) => "error",
    }
}

impl TurnEngine {
    /// Stores what the turn produced and its figures, then tells every device the turn is over.
    pub(super) async fn finish(
        &self,
        turn: &Turn<'_>,
        conn: ConnId,
        answer: Answer,
        outcome: Result<(), LlmError>,
    ) {
        let session = turn.session;
        let mut extra: Vec<(&'static str, String)> = Vec::new();
        if let Some(from) = &answer.fallback_from {
            extra.push(("fallback_from", from.clone()));
        }
        if let Some(t) = answer.tokens {
            extra.push(("tokens", t.to_string()));
        }
        // The final chunk says why the answer ended; it carries no `partial` key: `partial="true"` means
        // "content is the whole text so far, replace", and this chunk's content is empty. Whether the
        // stored answer is partial follows from `finish_reason` (anything but stop and length).
        extra.push(("finish_reason", finish_reason(&answer, &outcome).into()));

        // The answer (or what was produced of it) is stored under the final chunk's seq.
        let final_seq = turn.live.reserve_seq();
        let stored = (!answer.text.is_empty()).then(|| {
            let mut record = answer.record(final_seq, turn.client_msg_id, outcome.is_err());
            if let Some(from) = &answer.fallback_from {
                record.metadata.insert("fallback_from".into(), from.clone());
            }
            record
        });
        let announce_end = outcome.is_ok()
            || matches!(outcome, Err(LlmError::Cancelled))
            || !answer.text.is_empty();
        let final_frame = announce_end.then(|| {
            let frame = Chunk {
                session_id: &session.id,
                content: "",
                model_id: &answer.model_id,
                client_msg_id: turn.client_msg_id,
                done: true,
                extra,
            }
            .frame(final_seq);
            (frames::encode(&frame), None)
        });
        // A turn cut short (cancel, timeout, broken stream) after some text still cost tokens: estimated
        // when the provider reported none, so usage and daily budgets count it.
        let tokens = answer.tokens.or_else(|| {
            (!answer.text.is_empty())
                .then(|| answer.prompt_estimate + estimate_tokens(&answer.text))
        });
        let elapsed = turn.started.elapsed();
        self.metrics
            .turn_duration
            .with_label_values(&[answer.provider_kind])
            .observe(elapsed.as_secs_f64());
        let usage = tokens.filter(|t| *t > 0).map(|t| TurnUsage {
            tokens: i64::try_from(t).unwrap_or(i64::MAX),
            response_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            at: crate::store::now(),
        });
        // The answer and the turn's figures in one write where the store can.
        if (stored.is_some() || usage.is_some())
            && let Err(err) = self
                .store
                .finish_turn(&session.id, stored.as_ref(), usage)
                .await
        {
            tracing::error!(session_id = %session.id, error = %err, "answer or usage not stored");
        }
        // The figures are stored before the final chunk tells the clients the turn is over.
        turn.live
            .finish_answer(self.bus.as_ref(), final_seq, final_frame);

        if let Err(err) = outcome
            && !matches!(err, LlmError::Cancelled)
        {
            tracing::warn!(session_id = %session.id, conn, error = %err, "turn failed");
            let err = ChatError::Llm(err);
            turn.live.emit(self.bus.as_ref(), None, |seq| {
                frames::encode(&frames::error(
                    &err,
                    Some(&session.id),
                    turn.client_msg_id,
                    Some(seq_i64(seq)),
                ))
            });
            self.metrics.message_errors.inc();
        }
    }
}
