//! The turn engine: one answer to one message, from the budget check to the final chunk. [`TurnEngine`]
//! holds only what a turn uses (store, models, bus, metrics and the turn's settings); a queued turn
//! ([`PendingTurn`]) runs when its ticket's turn comes: `loading`, streamed `ai_response` chunks, then the
//! final chunk (`done="true"`) or an error frame, whatever happens. The answer (also a partial one) is stored
//! with its seq; usage is persisted per session and per user.

mod attachments;
mod budget;
mod finish;
mod stream;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::files::{Files, StoredFile, valid_id};
use crate::hub::{ConnId, EventBus};
use crate::llm::{ChatMessage, Llm};
use crate::metrics::Metrics;
use crate::store::{MessageRecord, Sender as StoredSender, SessionRecord, Store};

use super::ChatError;
use super::live::LiveSession;
use super::turn_queue::TurnTicket;

pub use budget::DailyBudget;

/// A turn queued by a message that took effect: run by [`TurnEngine::run`] once its ticket's turn comes.
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

/// The turn's own settings.
#[derive(Debug, Clone, Copy)]
pub struct TurnSettings {
    /// Stored messages the model is given (`chat.history_messages`).
    pub history_messages: usize,
    /// How often the answer being streamed is stored (`chat.checkpoint_interval`).
    pub checkpoint_interval: Duration,
    /// The per-user daily token budget.
    pub budget: DailyBudget,
    /// Tokens of an uploaded text file given to the model (`uploads.text_tokens`).
    pub text_tokens: usize,
}

/// Runs turns: everything a turn needs and nothing else.
pub struct TurnEngine {
    store: Arc<dyn Store>,
    files: Arc<Files>,
    llm: Arc<Llm>,
    bus: Arc<dyn EventBus>,
    metrics: Arc<Metrics>,
    settings: TurnSettings,
}

/// A turn being run: the session, its live state and what is answered.
struct Turn<'a> {
    session: &'a SessionRecord,
    live: &'a LiveSession,
    client_msg_id: Option<&'a str>,
    started: Instant,
    cancel: CancellationToken,
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

impl TurnEngine {
    /// An engine over these parts.
    pub fn new(
        store: Arc<dyn Store>,
        files: Arc<Files>,
        llm: Arc<Llm>,
        bus: Arc<dyn EventBus>,
        metrics: Arc<Metrics>,
        settings: TurnSettings,
    ) -> Self {
        Self {
            store,
            files,
            llm,
            bus,
            metrics,
            settings,
        }
    }

    /// Runs a queued turn when its ticket's turn comes. An error before the turn began (the store failed,
    /// the budget is spent) is returned for the sender; once the turn began, every device gets its end
    /// (the final chunk and, on failure, an error frame) and this returns `Ok`.
    pub async fn run(&self, conn: ConnId, turn: PendingTurn) -> Result<(), ChatError> {
        let PendingTurn {
            session,
            live,
            request,
        } = turn;
        request.ticket.wait().await;
        // Read before anything is announced: a failure here reaches the sender as an error frame and no
        // device sees a turn begin that cannot end.
        if request.retry
            && let Some(id) = request.client_msg_id.as_deref()
            && self.already_answered(&session.id, id).await?
        {
            // A retry and its original both queued for this session's turn: a message is answered once.
            return Ok(());
        }
        let window = self.settings.history_messages.max(1);
        let stored = self.store.recent_messages(&session.id, window).await?;
        if live.assistant().is_some() {
            // An administrator took the session over while this turn waited for the one before it.
            return Ok(());
        }
        let cancel = CancellationToken::new();
        let _running = RunningTurn::start(&live, &cancel);
        if request.ticket.cancelled() {
            // A `cancel` after this message, before its turn began.
            cancel.cancel();
        }
        self.settings
            .budget
            .check(self.store.as_ref(), &session.user_id)
            .await?;
        let turn = Turn {
            session: &session,
            live: &live,
            client_msg_id: request.client_msg_id.as_deref(),
            started: request.started,
            cancel,
        };
        let history = self.history(&session, stored).await?;
        let (answer, outcome) = self.stream(&turn, history).await;
        self.finish(&turn, conn, answer, outcome).await;
        Ok(())
    }

    /// Whether an answer to the message `client_msg_id` is stored in the session.
    async fn already_answered(
        &self,
        session_id: &str,
        client_msg_id: &str,
    ) -> Result<bool, ChatError> {
        Ok(self
            .store
            .messages(session_id, None)
            .await?
            .iter()
            .any(|m| {
                m.sender == StoredSender::Ai && m.client_msg_id.as_deref() == Some(client_msg_id)
            }))
    }

    /// What the model is given: the last `history_messages` stored messages with text or an uploaded file,
    /// as its roles, from the first user message among them.
    async fn history(
        &self,
        session: &SessionRecord,
        messages: Vec<MessageRecord>,
    ) -> Result<Vec<ChatMessage>, ChatError> {
        let skip = messages
            .len()
            .saturating_sub(self.settings.history_messages.max(1));
        let mut out = Vec::new();
        for m in messages.into_iter().skip(skip) {
            let assistant = matches!(m.sender, StoredSender::Ai | StoredSender::Admin);
            // The window opens on a user message: providers such as Anthropic refuse a conversation that
            // starts with the assistant.
            if out.is_empty() && assistant {
                continue;
            }
            let message = if assistant {
                ChatMessage::assistant(m.content)
            } else {
                match self.uploaded(session, &m).await? {
                    Some(file) => {
                        attachments::message(
                            &self.files,
                            m.content,
                            &file,
                            self.settings.text_tokens,
                        )
                        .await?
                    }
                    None => ChatMessage::user(m.content),
                }
            };
            if !message.content.is_empty() || !message.attachments.is_empty() {
                out.push(message);
            }
        }
        Ok(out)
    }

    /// The upload a stored message names, when it was posted in this session (a `file_id` copied from
    /// elsewhere never reaches the model).
    async fn uploaded(
        &self,
        session: &SessionRecord,
        m: &MessageRecord,
    ) -> Result<Option<StoredFile>, ChatError> {
        let Some(id) = m.file_id.as_deref().filter(|id| valid_id(id)) else {
            return Ok(None);
        };
        Ok(self
            .files
            .get(id)
            .await?
            .filter(|f| f.record.session_id.as_deref() == Some(session.id.as_str())))
    }
}
