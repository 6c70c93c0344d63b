//! LLM providers: the `LlmProvider` trait, the OpenAI-compatible, Anthropic, Dify and demo providers,
//! and the retry, fallback and circuit-breaker policy around them; and [`Transcriber`], voice messages
//! to text through an OpenAI-compatible `/audio/transcriptions` endpoint (`[transcription]`).
//!
//! The chat engine uses [`Llm`]: [`Llm::models`] for the model list and [`Llm::stream_turn`] for the
//! answer, whose terminal [`LlmError`] maps to the client's `(code, message)` with
//! [`LlmError::client_error`] (the only place that does). See `docs/llm.md`.

mod anthropic;
mod breaker;
mod chain;
mod config;
mod demo;
mod dify;
mod error;
mod openai;
mod provider;
mod service;
mod sse;
mod transcribe;
mod usage;

pub use breaker::BreakerState;
pub use chain::{FinishReason, TurnEvent, TurnSummary};
pub use config::{
    BreakerConfig, DEFAULT_TRANSCRIPTION_MODEL, DEMO_PROVIDER_ID, DEMO_PROVIDER_NAME, LlmConfig,
    ProviderConfig, ProviderKind, RetryConfig, TranscriptionConfig, is_internal_host,
};
pub use demo::DemoProvider;
pub use error::{LlmError, TimeoutKind, format_go_duration};
pub use provider::{
    Attachment, AttemptError, ChatMessage, IMAGE_MEDIA_TYPES, IMAGE_NOT_SEEN_NOTE, LlmProvider,
    ProviderEvent, ProviderRequest, ProviderStream, ReportedUsage, Role,
};
pub use service::{ConfiguredModel, Llm, LlmReadiness, ProviderHealth, TurnStream};
pub use transcribe::{TranscribeError, Transcriber};
pub use usage::{TokenUsage, estimate_tokens};
