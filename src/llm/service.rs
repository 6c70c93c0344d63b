//! [`Llm`], the service the chat engine calls: the model list, readiness, budgets and
//! [`Llm::stream_turn`], which returns a [`TurnStream`] that closes the upstream request when cancelled
//! or dropped.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::Stream;
use tokio::sync::mpsc;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::anthropic::AnthropicProvider;
use super::breaker::{BreakerState, CircuitBreaker};
use super::chain::{TurnEvent, run_chain};
use super::config::{LlmConfig, ProviderKind};
use super::demo::DemoProvider;
use super::dify::DifyProvider;
use super::error::LlmError;
use super::openai::OpenAiProvider;
use super::provider::{ChatMessage, LlmProvider};
use super::sse::{HttpTarget, build_client};
use crate::metrics::Metrics;
use crate::settings_kit::ConfigError;

/// Events buffered between a turn's task and its consumer.
const TURN_CHANNEL_CAPACITY: usize = 64;

/// A model clients can select (`{id, name}` of reference 5.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredModel {
    /// Provider id (`model_id` on the wire).
    pub id: String,
    /// Display name.
    pub name: String,
}

/// One provider's health, for readiness.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderHealth {
    /// Provider id.
    pub id: String,
    /// Provider type.
    pub kind: &'static str,
    /// Its breaker.
    pub breaker: BreakerState,
}

/// Readiness of the LLM layer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LlmReadiness {
    /// True when at least one provider's breaker is not open.
    pub ready: bool,
    /// Every provider in configured order.
    pub providers: Vec<ProviderHealth>,
}

/// A configured provider with its policy.
pub(crate) struct ProviderEntry {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) kind: ProviderKind,
    pub(crate) system_prompt: Option<String>,
    pub(crate) provider: Arc<dyn LlmProvider>,
    pub(crate) breaker: CircuitBreaker,
    pub(crate) retry: super::config::RetryConfig,
    pub(crate) connect_timeout: Duration,
    pub(crate) first_token_timeout: Duration,
    pub(crate) idle_timeout: Duration,
    pub(crate) turn_timeout: Duration,
    pub(crate) fallback: Vec<usize>,
}

/// State shared by the service and its running turns.
pub(crate) struct Shared {
    pub(crate) entries: Vec<ProviderEntry>,
    pub(crate) metrics: Arc<Metrics>,
    by_id: HashMap<String, usize>,
}

/// The LLM service: cheap to clone, shared by every connection.
#[derive(Clone)]
pub struct Llm {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Llm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Llm")
            .field("models", &self.models())
            .finish_non_exhaustive()
    }
}

impl Llm {
    /// Builds the providers of `config` (the demo provider alone when none is configured).
    pub fn new(config: &LlmConfig, metrics: Arc<Metrics>) -> Result<Self, ConfigError> {
        config.validate(false)?;
        let providers = config.effective_providers();
        let by_id: HashMap<String, usize> = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.id.clone(), i))
            .collect();
        let mut entries = Vec::with_capacity(providers.len());
        for (index, p) in providers.into_iter().enumerate() {
            let key = format!("llm.providers[{index}]");
            let mut p = p;
            p.resolve_key_file(&key)?;
            let kind = p.provider_kind().ok_or_else(|| {
                ConfigError::invalid(
                    format!("{key}.type"),
                    format!("provider {:?}: unknown type", p.id),
                )
            })?;
            metrics.init_provider(kind.as_str());
            let connect_timeout = p.connect_timeout.unwrap_or(config.connect_timeout);
            let target = || -> Result<HttpTarget, ConfigError> {
                Ok(HttpTarget {
                    client: build_client(connect_timeout).map_err(|e| {
                        ConfigError::invalid(
                            format!("{key}.endpoint"),
                            format!("provider {:?}: HTTP client: {e}", p.id),
                        )
                    })?,
                    endpoint: p.endpoint.trim().trim_end_matches('/').to_string(),
                    model: p.model.clone(),
                    api_key: p.api_key.clone(),
                    temperature: p.temperature,
                    max_tokens: p.max_tokens,
                })
            };
            let provider: Arc<dyn LlmProvider> = match kind {
                ProviderKind::OpenAi => Arc::new(OpenAiProvider::new(
                    target()?,
                    p.include_usage.unwrap_or(true),
                )),
                ProviderKind::Anthropic => Arc::new(AnthropicProvider::new(target()?)),
                ProviderKind::Dify => Arc::new(DifyProvider::new(target()?)),
                ProviderKind::Demo => Arc::new(DemoProvider::new(Duration::from_millis(
                    config.demo_token_delay_ms,
                ))),
            };
            let fallback = p
                .fallback
                .iter()
                .map(|id| {
                    by_id.get(id).copied().ok_or_else(|| {
                        ConfigError::invalid(
                            format!("{key}.fallback"),
                            format!("provider {:?}: unknown fallback {id:?}", p.id),
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            entries.push(ProviderEntry {
                id: p.id.clone(),
                name: p.name.clone(),
                kind,
                system_prompt: p.system_prompt.clone(),
                provider,
                breaker: CircuitBreaker::new(
                    p.breaker.clone().unwrap_or_else(|| config.breaker.clone()),
                ),
                retry: p.retry.clone().unwrap_or_else(|| config.retry.clone()),
                connect_timeout,
                first_token_timeout: p.first_token_timeout.unwrap_or(config.first_token_timeout),
                idle_timeout: p.idle_timeout.unwrap_or(config.idle_timeout),
                turn_timeout: p.turn_timeout.unwrap_or(config.turn_timeout),
                fallback,
            });
        }
        Ok(Self {
            shared: Arc::new(Shared {
                entries,
                metrics,
                by_id,
            }),
        })
    }

    /// The models clients may select, in configured order.
    pub fn models(&self) -> Vec<ConfiguredModel> {
        self.shared
            .entries
            .iter()
            .map(|e| ConfiguredModel {
                id: e.id.clone(),
                name: e.name.clone(),
            })
            .collect()
    }

    /// The default model: the first configured provider (or `demo`).
    pub fn default_model_id(&self) -> &str {
        self.shared.entries.first().map_or("", |e| e.id.as_str())
    }

    /// The model a turn of a session on model `id` runs with: `id` while it is configured, else the default.
    pub fn model_for<'a>(&'a self, id: &'a str) -> &'a str {
        if self.has_model(id) {
            id
        } else {
            self.default_model_id()
        }
    }

    /// Whether `id` is a model clients may select.
    pub fn has_model(&self, id: &str) -> bool {
        self.shared.by_id.contains_key(id)
    }

    /// The provider type of a model (`openai`, `anthropic`, `dify`, `demo`), for metric labels.
    pub fn provider_kind(&self, id: &str) -> Option<&'static str> {
        self.shared
            .by_id
            .get(id)
            .map(|i| self.shared.entries[*i].kind.as_str())
    }

    /// Whether the model a turn of a session on model `id` runs with ([`Llm::model_for`]) is sent the
    /// images of messages ([`ProviderKind::accepts_images`]); a model that is not gets a note line per
    /// image instead. A fallback provider may differ: each provider applies its own rule.
    pub fn accepts_images(&self, id: &str) -> bool {
        self.shared
            .by_id
            .get(self.model_for(id))
            .is_some_and(|i| self.shared.entries[*i].kind.accepts_images())
    }

    /// Readiness: ready while at least one provider's breaker is not open.
    pub fn ready(&self) -> LlmReadiness {
        let now = Instant::now();
        let providers: Vec<ProviderHealth> = self
            .shared
            .entries
            .iter()
            .map(|e| ProviderHealth {
                id: e.id.clone(),
                kind: e.kind.as_str(),
                breaker: e.breaker.state(now),
            })
            .collect();
        LlmReadiness {
            ready: providers.iter().any(|p| p.breaker != BreakerState::Open),
            providers,
        }
    }

    /// Streams the answer of `model_id` to `messages` (oldest first; the provider's system prompt is
    /// prepended here). The stream yields [`TurnEvent`]s and ends after `Completed` or one `Err`.
    /// Cancelling `cancel` or dropping the stream closes the upstream request promptly.
    /// Must be called within a Tokio runtime.
    pub fn stream_turn(
        &self,
        model_id: &str,
        messages: Vec<ChatMessage>,
        cancel: CancellationToken,
    ) -> TurnStream {
        let (tx, rx) = mpsc::channel(TURN_CHANNEL_CAPACITY);
        let token = cancel.child_token();
        let guard = token.clone().drop_guard();
        match self.shared.by_id.get(model_id) {
            Some(&primary) => {
                tokio::spawn(run_chain(self.shared.clone(), primary, messages, token, tx));
            }
            None => {
                let _ = tx.try_send(Err(LlmError::UnknownModel(model_id.to_string())));
            }
        }
        TurnStream { rx, _guard: guard }
    }
}

/// The events of one turn; dropping it cancels the turn and closes the upstream request.
#[derive(Debug)]
pub struct TurnStream {
    rx: mpsc::Receiver<Result<TurnEvent, LlmError>>,
    _guard: DropGuard,
}

impl Stream for TurnStream {
    type Item = Result<TurnEvent, LlmError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx)
    }
}
