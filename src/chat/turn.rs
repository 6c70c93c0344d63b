//! The turn engine: `loading`, streamed `ai_response` chunks, then the final chunk (`done="true"`) or an
//! error frame, whatever happens. The model gets the session history within the configured window; the
//! answer (also a partial one) is stored with its seq; usage is persisted per session and per user.

use std::sync::Arc;
use std::time::Instant;

use futures::StreamExt;
use tokio_util::sync::CancellationToken;

use crate::llm::{ChatMessage, LlmError, TurnEvent, estimate_tokens};
use crate::protocol::ws::{Loading, Sender, ServerMessage};
use crate::store::{MessageRecord, Sender as StoredSender, SessionRecord, TurnUsage};

use super::frames::{self, Chunk, seq_i64};
use super::live::LiveSession;
use super::turn_queue::TurnTicket;
use super::user_message::message_id;
use super::{Chat, ChatError, ConnCtx};

/// A turn queued by a message that took effect: run by [`Chat::run_turn`] once its ticket's turn comes.
pub struct PendingTurn {
    /// The session answered.
    pub session: SessionRecord,
    /// Its live state.
    pub live: Arc<LiveSession>,
    /// What is answered.
    pub request: TurnRequest,
}

impl PendingTurn {
    /// Queues the turn answering a message that just took effect in `session` (its ticket is taken now).
    pub fn queue(
        session: SessionRecord,
        live: Arc<LiveSession>,
        client_msg_id: Option<String>,
        started: Instant,
        retry: bool,
    ) -> Self {
        let ticket = live.turns.ticket();
        Self {
            session,
            live,
            request: TurnRequest {
                client_msg_id,
                started,
                retry,
                ticket,
            },
        }
    }
}

/// What a turn answers.
pub struct TurnRequest {
    /// The answered message's client id.
    pub client_msg_id: Option<String>,
    /// When the user's message arrived.
    pub started: Instant,
    /// The message was stored before (a retry): answered only if no answer to it is stored yet.
    pub retry: bool,
    /// The turn's place in its session's queue, taken when the message took effect.
    pub ticket: TurnTicket,
}

/// Marks a turn as running (cancellable, counted by graceful shutdown) until dropped.
struct RunningTurn<'a> {
    live: &'a LiveSession,
}

impl<'a> RunningTurn<'a> {
    fn start(live: &'a LiveSession, cancel: &CancellationToken) -> Self {
        live.set_cancel(Some(cancel.clone()));
        Self { live }
    }
}

impl Drop for RunningTurn<'_> {
    fn drop(&mut self) {
        self.live.set_cancel(None);
    }
}

/// Milliseconds until the next UTC midnight (when daily budgets reset).
fn until_midnight_ms() -> u64 {
    let now = time::OffsetDateTime::now_utc();
    let seconds_today =
        u64::from(now.hour()) * 3600 + u64::from(now.minute()) * 60 + u64::from(now.second());
    (86_400 - seconds_today) * 1000
}

impl Chat {
    /// Runs a queued turn when its ticket's turn comes.
    pub(super) async fn run_turn(&self, ctx: &ConnCtx, turn: PendingTurn) -> Result<(), ChatError> {
        let PendingTurn {
            session,
            live,
            request,
        } = turn;
        let (session, live) = (&session, &live);
        request.ticket.wait().await;
        // Read before anything is announced: a failure here reaches the sender as an error frame and no
        // device sees a turn begin that cannot end.
        if request.retry
            && let Some(id) = request.client_msg_id.as_deref()
            && self
                .store
                .messages(&session.id, None)
                .await?
                .iter()
                .any(|m| m.sender == StoredSender::Ai && m.client_msg_id.as_deref() == Some(id))
        {
            // Already answered (a retry and its original both queued for this session's turn): a message
            // is answered once.
            return Ok(());
        }
        let window = self.settings.chat.history_messages.max(1);
        let stored = self.store.recent_messages(&session.id, window).await?;
        if live.assistant().is_some() {
            // An administrator took the session over while this turn waited for the one before it.
            return Ok(());
        }
        let cancel = CancellationToken::new();
        let _running = RunningTurn::start(live, &cancel);
        if request.ticket.cancelled() {
            // A `cancel` after this message, before its turn began.
            cancel.cancel();
        }
        if self.llm.daily_token_budget().is_some() {
            let used = self
                .store
                .user_tokens_on(&session.user_id, time::OffsetDateTime::now_utc().date())
                .await?;
            if self
                .llm
                .check_budget(u64::try_from(used).unwrap_or(0))
                .is_err()
            {
                return Err(ChatError::BudgetExceeded(until_midnight_ms()));
            }
        }
        // The session's model when it is still configured, else the default (the first provider).
        let mut model_id = if self.llm.has_model(&session.model_id) {
            session.model_id.clone()
        } else {
            self.llm.default_model_id().to_string()
        };
        let client_msg_id = request.client_msg_id.clone();
        live.emit(self.bus.as_ref(), None, |seq| {
            frames::encode(&ServerMessage::Loading(Loading {
                session_id: session.id.clone(),
                model_id: Some(model_id.clone()),
                client_msg_id: client_msg_id.clone(),
                sender: Sender::Ai,
                seq: seq_i64(seq),
                timestamp: frames::now(),
            }))
        });

        let history = self.history(stored);
        // What the prompt costs, for a turn cut short before the provider reported its usage.
        let prompt_estimate: u64 = history.iter().map(|m| estimate_tokens(&m.content)).sum();
        let mut stream = self.llm.stream_turn(&model_id, history, cancel.clone());
        let mut text = String::new();
        let mut fallback_from: Option<String> = None;
        let mut tokens: Option<u64> = None;
        let mut provider_kind = self.llm.provider_kind(&model_id).unwrap_or("unknown");
        let mut first_token: Option<Instant> = None;
        let mut finish_reason = "stop";
        // The answer's store id, fixed now: checkpoints and the final answer are one stored message.
        let answer_id = message_id(None);
        let mut checkpointed = Instant::now();
        let outcome: Result<(), LlmError> = loop {
            let event = tokio::select! {
                biased;
                () = cancel.cancelled() => break Err(LlmError::Cancelled),
                event = stream.next() => event,
            };
            match event {
                Some(Ok(TurnEvent::Delta(delta))) => {
                    if first_token.is_none() {
                        first_token = Some(Instant::now());
                        self.metrics
                            .turn_first_token
                            .with_label_values(&[provider_kind])
                            .observe(request.started.elapsed().as_secs_f64());
                    }
                    let chunk_seq = live.emit_chunk(
                        self.bus.as_ref(),
                        &delta,
                        &model_id,
                        client_msg_id.as_deref(),
                        |seq| {
                            frames::encode(
                                &Chunk {
                                    session_id: &session.id,
                                    content: &delta,
                                    model_id: &model_id,
                                    client_msg_id: client_msg_id.as_deref(),
                                    done: false,
                                    extra: Vec::new(),
                                }
                                .frame(seq),
                            )
                        },
                    );
                    text.push_str(&delta);
                    if checkpointed.elapsed() >= self.settings.chat.checkpoint_interval {
                        checkpointed = Instant::now();
                        let mut record = MessageRecord::new(
                            answer_id.clone(),
                            chunk_seq,
                            StoredSender::Ai,
                            text.clone(),
                        );
                        record.model_id = Some(model_id.clone());
                        record.client_msg_id = client_msg_id.clone();
                        record.partial = true;
                        if let Err(err) = self.store.put_answer(&session.id, &record).await {
                            tracing::warn!(session_id = %session.id, error = %err, "answer checkpoint not stored");
                        }
                    }
                }
                Some(Ok(TurnEvent::FallbackSwitched { from, to })) => {
                    tracing::warn!(session_id = %session.id, from = %from, to = %to, "model fallback");
                    fallback_from.get_or_insert(from);
                    provider_kind = self.llm.provider_kind(&to).unwrap_or(provider_kind);
                    model_id = to;
                }
                Some(Ok(TurnEvent::Usage(usage))) => tokens = Some(usage.total()),
                Some(Ok(TurnEvent::Completed(summary))) => {
                    tokens = Some(summary.usage.total());
                    finish_reason = summary.finish_reason.as_str();
                    break Ok(());
                }
                Some(Err(err)) => break Err(err),
                None => {
                    break Err(if cancel.is_cancelled() {
                        LlmError::Cancelled
                    } else {
                        LlmError::StreamBroken {
                            provider: model_id.clone(),
                            detail: "stream ended without completion".into(),
                        }
                    });
                }
            }
        };
        drop(stream);

        let mut extra: Vec<(&'static str, String)> = Vec::new();
        if let Some(from) = &fallback_from {
            extra.push(("fallback_from", from.clone()));
        }
        if let Some(t) = tokens {
            extra.push(("tokens", t.to_string()));
        }
        // The final chunk says why the answer ended; it carries no `partial` key: `partial="true"` means
        // "content is the whole text so far, replace", and this chunk's content is empty. Whether the
        // stored answer is partial follows from `finish_reason` (anything but stop and length).
        let partial = outcome.is_err();
        let finish_reason = match &outcome {
            Ok(()) => finish_reason,
            Err(LlmError::Cancelled) => "cancelled",
            Err(LlmError::Timeout { .. }) => "timeout",
            Err(_) => "error",
        };
        extra.push(("finish_reason", finish_reason.into()));

        // The answer (or what was produced of it) is stored under the final chunk's seq.
        let final_seq = live.reserve_seq();
        let answer = (!text.is_empty()).then(|| {
            let mut record =
                MessageRecord::new(answer_id.clone(), final_seq, StoredSender::Ai, text.clone());
            record.model_id = Some(model_id.clone());
            record.partial = partial;
            record.client_msg_id = client_msg_id.clone();
            if let Some(from) = &fallback_from {
                record.metadata.insert("fallback_from".into(), from.clone());
            }
            record
        });
        let announce_end =
            outcome.is_ok() || matches!(outcome, Err(LlmError::Cancelled)) || !text.is_empty();
        let final_frame = announce_end.then(|| {
            let frame = Chunk {
                session_id: &session.id,
                content: "",
                model_id: &model_id,
                client_msg_id: client_msg_id.as_deref(),
                done: true,
                extra,
            }
            .frame(final_seq);
            (frames::encode(&frame), None)
        });
        // A turn cut short (cancel, timeout, broken stream) after some text still cost tokens: estimated
        // when the provider reported none, so usage and daily budgets count it.
        let tokens =
            tokens.or_else(|| (!text.is_empty()).then(|| prompt_estimate + estimate_tokens(&text)));
        let elapsed = request.started.elapsed();
        self.metrics
            .turn_duration
            .with_label_values(&[provider_kind])
            .observe(elapsed.as_secs_f64());
        let usage = tokens.filter(|t| *t > 0).map(|t| TurnUsage {
            tokens: i64::try_from(t).unwrap_or(i64::MAX),
            response_ms: i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX),
            at: crate::store::now(),
        });
        // The answer and the turn's figures in one write where the store can.
        if (answer.is_some() || usage.is_some())
            && let Err(err) = self
                .store
                .finish_turn(&session.id, answer.as_ref(), usage)
                .await
        {
            tracing::error!(session_id = %session.id, error = %err, "answer or usage not stored");
        }
        // The figures are stored before the final chunk tells the clients the turn is over.
        live.finish_answer(self.bus.as_ref(), final_seq, final_frame);

        match outcome {
            Ok(()) | Err(LlmError::Cancelled) => Ok(()),
            Err(err) => {
                tracing::warn!(session_id = %session.id, conn = ctx.conn_id, error = %err, "turn failed");
                let err = ChatError::Llm(err);
                live.emit(self.bus.as_ref(), None, |seq| {
                    frames::encode(&frames::error(
                        &err,
                        Some(&session.id),
                        client_msg_id.as_deref(),
                        Some(seq_i64(seq)),
                    ))
                });
                self.metrics.message_errors.inc();
                Ok(())
            }
        }
    }

    /// What the model is given: the last `chat.history_messages` stored messages with text, as its roles,
    /// from the first user message among them.
    fn history(&self, messages: Vec<MessageRecord>) -> Vec<ChatMessage> {
        let skip = messages
            .len()
            .saturating_sub(self.settings.chat.history_messages.max(1));
        // The window opens on a user message: providers such as Anthropic refuse a conversation that starts
        // with the assistant.
        messages
            .into_iter()
            .skip(skip)
            .filter(|m| !m.content.is_empty())
            .skip_while(|m| matches!(m.sender, StoredSender::Ai | StoredSender::Admin))
            .map(|m| match m.sender {
                StoredSender::Ai | StoredSender::Admin => ChatMessage::assistant(m.content),
                _ => ChatMessage::user(m.content),
            })
            .collect()
    }
}
