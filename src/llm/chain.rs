//! One chat turn against the provider chain: retries before the first token (backoff with full jitter,
//! `Retry-After`), the fallback chain, breakers, the four timeouts, usage and metrics.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use rand::Rng;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backoff::{Backoff, Jitter};

use super::breaker::Permit;
use super::config::RetryConfig;
use super::error::{LlmError, TimeoutKind};
use super::provider::{AttemptError, ChatMessage, ProviderEvent, ProviderRequest, ReportedUsage};
use super::service::{ProviderEntry, Shared};
use super::usage::{TokenUsage, estimate_tokens};

/// What a turn streams to the chat engine.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnEvent {
    /// A non-empty piece of the answer.
    Delta(String),
    /// The turn moved to the next provider of the fallback chain (before any delta); record it in the
    /// turn's metadata.
    FallbackSwitched {
        /// Provider id that failed.
        from: String,
        /// Provider id tried next.
        to: String,
    },
    /// Tokens of the turn: provider-reported, or estimated when it reported none. Sent once, just
    /// before `Completed` or before the error of a turn that streamed a partial answer.
    Usage(TokenUsage),
    /// The answer is complete; the last event of a successful turn.
    Completed(TurnSummary),
}

/// Why a completed answer ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// The model finished its answer.
    Stop,
    /// The provider cut the answer at its token limit (`max_tokens`).
    Length,
}

impl FinishReason {
    /// The wire spelling (`finish_reason` metadata of the final chunk).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stop => "stop",
            Self::Length => "length",
        }
    }
}

/// Facts about a completed turn, for the session's metadata and figures.
#[derive(Debug, Clone, PartialEq)]
pub struct TurnSummary {
    /// The model id the client asked for.
    pub requested_model_id: String,
    /// The provider id that answered (differs after a fallback).
    pub model_id: String,
    /// Its kind (`openai`, `anthropic`, `dify`, `demo`).
    pub provider_kind: &'static str,
    /// The first provider that failed, when a fallback answered.
    pub fallback_from: Option<String>,
    /// Attempts over the whole chain (1 when the first succeeded).
    pub attempts: u32,
    /// Tokens used.
    pub usage: TokenUsage,
    /// Why the answer ended.
    pub finish_reason: FinishReason,
    /// From the start of the answering attempt's request to its first token.
    pub first_token_latency: Option<Duration>,
    /// From the start of the turn to the end of the answer.
    pub duration: Duration,
}

type Sender = mpsc::Sender<Result<TurnEvent, LlmError>>;

/// Mutable facts of a running turn, readable after a timeout or cancellation.
struct TurnState {
    current: usize,
    streamed: String,
    reported: ReportedUsage,
    input_estimate: u64,
    attempts: u32,
    fallback_from: Option<String>,
    first_token_latency: Option<Duration>,
    length_limited: bool,
}

enum Failure {
    Before(AttemptError),
    After(AttemptError),
    ReceiverGone,
}

/// Runs one turn, sending its events on `tx`; returns when the turn ended (or nobody listens).
pub(crate) async fn run_chain(
    shared: Arc<Shared>,
    primary: usize,
    messages: Vec<ChatMessage>,
    cancel: CancellationToken,
    tx: Sender,
) {
    let started = Instant::now();
    let turn_timeout = shared.entries[primary].turn_timeout;
    let deadline = started + turn_timeout;
    let mut st = TurnState {
        current: primary,
        streamed: String::new(),
        reported: ReportedUsage::default(),
        input_estimate: 0,
        attempts: 0,
        fallback_from: None,
        first_token_latency: None,
        length_limited: false,
    };
    enum End {
        Finished(Result<(), LlmError>),
        TimedOut,
        Cancelled,
    }
    let end = tokio::select! {
        biased;
        () = cancel.cancelled() => End::Cancelled,
        () = tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)) => End::TimedOut,
        result = drive(&shared, primary, &messages, deadline, &mut st, &tx) => End::Finished(result),
    };
    let entry = &shared.entries[st.current];
    let kind = entry.kind.as_str();
    let usage = TokenUsage {
        input_tokens: st.reported.input_tokens.unwrap_or(st.input_estimate),
        output_tokens: st
            .reported
            .output_tokens
            .unwrap_or_else(|| estimate_tokens(&st.streamed)),
        estimated: st.reported.input_tokens.is_none() || st.reported.output_tokens.is_none(),
    };
    let result = match end {
        End::Finished(result) => result,
        End::Cancelled => Err(LlmError::Cancelled),
        End::TimedOut => {
            shared.metrics.llm_errors.with_label_values(&[kind]).inc();
            Err(LlmError::Timeout {
                kind: TimeoutKind::Turn,
                after: turn_timeout,
                provider: entry.id.clone(),
                partial: !st.streamed.is_empty(),
            })
        }
    };
    let streamed_any = !st.streamed.is_empty();
    if result.is_ok() || streamed_any {
        shared
            .metrics
            .tokens_used
            .with_label_values(&[kind])
            .inc_by(usage.total());
    }
    match result {
        Ok(()) => {
            let duration = started.elapsed();
            tracing::info!(
                provider = %entry.id,
                provider_type = kind,
                attempts = st.attempts,
                fallback_from = st.fallback_from.as_deref().unwrap_or(""),
                input_tokens = usage.input_tokens,
                output_tokens = usage.output_tokens,
                usage_estimated = usage.estimated,
                first_token_ms = st.first_token_latency.map_or(0, |d| d.as_millis() as u64),
                duration_ms = duration.as_millis() as u64,
                "LLM turn completed"
            );
            let summary = TurnSummary {
                requested_model_id: shared.entries[primary].id.clone(),
                model_id: entry.id.clone(),
                provider_kind: kind,
                fallback_from: st.fallback_from.clone(),
                attempts: st.attempts,
                usage,
                finish_reason: if st.length_limited {
                    FinishReason::Length
                } else {
                    FinishReason::Stop
                },
                first_token_latency: st.first_token_latency,
                duration,
            };
            if tx.send(Ok(TurnEvent::Usage(usage))).await.is_ok() {
                let _ = tx.send(Ok(TurnEvent::Completed(summary))).await;
            }
        }
        Err(error) => {
            if matches!(error, LlmError::Cancelled) {
                tracing::info!(provider = %entry.id, provider_type = kind, partial = streamed_any, "LLM turn cancelled");
            } else {
                tracing::warn!(
                    provider = %entry.id,
                    provider_type = kind,
                    attempts = st.attempts,
                    partial = streamed_any,
                    error = %error,
                    "LLM turn failed"
                );
            }
            // try_send: a cancelled turn's stream may be gone or full; nobody may be listening.
            if streamed_any {
                let _ = tx.try_send(Ok(TurnEvent::Usage(usage)));
            }
            let _ = tx.try_send(Err(error));
        }
    }
}

/// The provider's system prompt first, then the conversation.
fn with_system_prompt(entry: &ProviderEntry, messages: &[ChatMessage]) -> Vec<ChatMessage> {
    let mut out = Vec::with_capacity(messages.len() + 1);
    if let Some(prompt) = entry
        .system_prompt
        .as_deref()
        .filter(|p| !p.trim().is_empty())
    {
        out.push(ChatMessage::system(prompt));
    }
    out.extend(messages.iter().cloned());
    out
}

/// How one provider of the chain ended its part of the turn.
enum ProviderOutcome {
    /// The turn is over: answered, cancelled, or broken after the first token.
    Finished(Result<(), LlmError>),
    /// The provider failed before the first token (or was skipped); the chain goes on.
    GaveUp(AttemptError),
}

async fn drive(
    shared: &Shared,
    primary: usize,
    messages: &[ChatMessage],
    deadline: Instant,
    st: &mut TurnState,
    tx: &Sender,
) -> Result<(), LlmError> {
    let chain: Vec<usize> = std::iter::once(primary)
        .chain(shared.entries[primary].fallback.iter().copied())
        .collect();
    let mut last_error: Option<(usize, AttemptError)> = None;
    for (position, &index) in chain.iter().enumerate() {
        let entry = &shared.entries[index];
        if position > 0 {
            let from = shared.entries[chain[position - 1]].id.clone();
            tracing::warn!(from = %from, to = %entry.id, "LLM falling back to the next provider");
            st.fallback_from
                .get_or_insert_with(|| shared.entries[primary].id.clone());
            let event = TurnEvent::FallbackSwitched {
                from,
                to: entry.id.clone(),
            };
            if tx.send(Ok(event)).await.is_err() {
                return Err(LlmError::Cancelled);
            }
        }
        st.current = index;
        let request = ProviderRequest {
            messages: with_system_prompt(entry, messages),
        };
        st.input_estimate = request
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        let attempts = try_provider(shared, entry, &request, deadline, st, tx);
        let outcome = if position == 0 {
            // The primary's turn_timeout is the turn's deadline, enforced by `run_chain`.
            attempts.await
        } else {
            // A fallback's own turn_timeout bounds its part of the turn, within the turn's deadline.
            let own = deadline.min(Instant::now() + entry.turn_timeout);
            match tokio::time::timeout_at(tokio::time::Instant::from_std(own), attempts).await {
                Ok(outcome) => outcome,
                Err(_) => {
                    shared
                        .metrics
                        .llm_errors
                        .with_label_values(&[entry.kind.as_str()])
                        .inc();
                    tracing::warn!(provider = %entry.id, provider_type = entry.kind.as_str(), partial = !st.streamed.is_empty(), "LLM fallback provider hit its turn_timeout");
                    if st.streamed.is_empty() {
                        ProviderOutcome::GaveUp(AttemptError::Timeout(TimeoutKind::Turn))
                    } else {
                        ProviderOutcome::Finished(Err(LlmError::Timeout {
                            kind: TimeoutKind::Turn,
                            after: entry.turn_timeout,
                            provider: entry.id.clone(),
                            partial: true,
                        }))
                    }
                }
            }
        };
        match outcome {
            ProviderOutcome::Finished(result) => return result,
            ProviderOutcome::GaveUp(error) => last_error = Some((index, error)),
        }
    }
    Err(match last_error {
        Some((index, AttemptError::Timeout(kind))) => {
            let entry = &shared.entries[index];
            LlmError::Timeout {
                kind,
                after: match kind {
                    TimeoutKind::Connect => entry.connect_timeout,
                    TimeoutKind::FirstToken => entry.first_token_timeout,
                    TimeoutKind::Idle => entry.idle_timeout,
                    TimeoutKind::Turn => entry.turn_timeout,
                },
                provider: entry.id.clone(),
                partial: false,
            }
        }
        Some((index, error)) => LlmError::Unavailable {
            provider: shared.entries[index].id.clone(),
            attempts: st.attempts,
            detail: error.to_string(),
        },
        None => LlmError::Unavailable {
            provider: shared.entries[primary].id.clone(),
            attempts: st.attempts,
            detail: "no attempt made".into(),
        },
    })
}

/// The attempts at one provider: retries before the first token, with backoff and `Retry-After`.
async fn try_provider(
    shared: &Shared,
    entry: &ProviderEntry,
    request: &ProviderRequest,
    deadline: Instant,
    st: &mut TurnState,
    tx: &Sender,
) -> ProviderOutcome {
    let kind = entry.kind.as_str();
    let mut last_error = AttemptError::Connect("no attempt made".into());
    for attempt in 1..=entry.retry.max_attempts {
        let Some(permit) = entry.breaker.try_acquire(Instant::now()) else {
            tracing::warn!(provider = %entry.id, provider_type = kind, "LLM circuit breaker open, skipping provider");
            return ProviderOutcome::GaveUp(AttemptError::Connect("circuit breaker open".into()));
        };
        st.attempts += 1;
        st.reported = ReportedUsage::default();
        st.length_limited = false;
        shared.metrics.llm_requests.with_label_values(&[kind]).inc();
        let attempt_started = Instant::now();
        // Reported as a success at the first token (the provider answers), so a half-open probe that
        // streams a long answer does not hold the provider closed to every other turn meanwhile.
        let mut permit = Some(permit);
        let outcome = run_attempt(shared, entry, request, st, tx, &mut permit).await;
        let (failure, after_first_token) = match outcome {
            Ok(()) => {
                if let Some(permit) = permit.take() {
                    permit.success();
                }
                return ProviderOutcome::Finished(Ok(()));
            }
            Err(Failure::ReceiverGone) => {
                return ProviderOutcome::Finished(Err(LlmError::Cancelled));
            }
            Err(Failure::Before(error)) => (error, false),
            Err(Failure::After(error)) => (error, true),
        };
        if let Some(permit) = permit.take() {
            if failure.counts_against_breaker() {
                permit.failure(Instant::now());
            } else {
                permit.neutral();
            }
        }
        shared.metrics.llm_errors.with_label_values(&[kind]).inc();
        if after_first_token {
            tracing::warn!(
                provider = %entry.id,
                provider_type = kind,
                attempt,
                latency_ms = attempt_started.elapsed().as_millis() as u64,
                error = %failure,
                "LLM stream broke after the first token"
            );
            return ProviderOutcome::Finished(Err(match failure {
                AttemptError::Timeout(TimeoutKind::Idle) => LlmError::Timeout {
                    kind: TimeoutKind::Idle,
                    after: entry.idle_timeout,
                    provider: entry.id.clone(),
                    partial: true,
                },
                other => LlmError::StreamBroken {
                    provider: entry.id.clone(),
                    detail: other.to_string(),
                },
            }));
        }
        tracing::warn!(
            provider = %entry.id,
            provider_type = kind,
            attempt,
            status = failure.status().unwrap_or(0),
            latency_ms = attempt_started.elapsed().as_millis() as u64,
            error = %failure,
            "LLM attempt failed"
        );
        let retryable = failure.is_retryable();
        let retry_after = failure.retry_after();
        last_error = failure;
        if !retryable || attempt == entry.retry.max_attempts {
            break;
        }
        let Some(delay) = retry_wait(&entry.retry, attempt, retry_after, &mut rand::rng()) else {
            tracing::warn!(provider = %entry.id, "Retry-After longer than retry.max_delay, not waiting");
            break;
        };
        if Instant::now() + delay >= deadline {
            break;
        }
        tokio::time::sleep(delay).await;
    }
    ProviderOutcome::GaveUp(last_error)
}

async fn run_attempt(
    shared: &Shared,
    entry: &ProviderEntry,
    request: &ProviderRequest,
    st: &mut TurnState,
    tx: &Sender,
    permit: &mut Option<Permit<'_>>,
) -> Result<(), Failure> {
    let started = tokio::time::Instant::now();
    let first_deadline = started + entry.first_token_timeout;
    let mut stream =
        match tokio::time::timeout_at(first_deadline, entry.provider.open(request)).await {
            Err(_) => {
                return Err(Failure::Before(AttemptError::Timeout(
                    TimeoutKind::FirstToken,
                )));
            }
            Ok(Err(error)) => return Err(Failure::Before(error)),
            Ok(Ok(stream)) => stream,
        };
    let mut got_first = false;
    let fail = |got_first: bool, error: AttemptError| {
        if got_first {
            Failure::After(error)
        } else {
            Failure::Before(error)
        }
    };
    loop {
        let deadline = if got_first {
            tokio::time::Instant::now() + entry.idle_timeout
        } else {
            first_deadline
        };
        let item = match tokio::time::timeout_at(deadline, stream.next()).await {
            Err(_) => {
                let kind = if got_first {
                    TimeoutKind::Idle
                } else {
                    TimeoutKind::FirstToken
                };
                return Err(fail(got_first, AttemptError::Timeout(kind)));
            }
            Ok(item) => item,
        };
        match item {
            None => {
                return Err(fail(
                    got_first,
                    AttemptError::Stream("stream ended without end marker".into()),
                ));
            }
            Some(Err(error)) => return Err(fail(got_first, error)),
            Some(Ok(ProviderEvent::Delta(text))) => {
                if text.is_empty() {
                    continue;
                }
                if !got_first {
                    got_first = true;
                    if let Some(permit) = permit.take() {
                        permit.success();
                    }
                    let latency = started.elapsed();
                    shared
                        .metrics
                        .llm_latency
                        .with_label_values(&[entry.kind.as_str()])
                        .observe(latency.as_secs_f64());
                    st.first_token_latency = Some(latency);
                }
                st.streamed.push_str(&text);
                if tx.send(Ok(TurnEvent::Delta(text))).await.is_err() {
                    return Err(Failure::ReceiverGone);
                }
            }
            Some(Ok(ProviderEvent::Usage(usage))) => {
                st.reported.input_tokens = usage.input_tokens.or(st.reported.input_tokens);
                st.reported.output_tokens = usage.output_tokens.or(st.reported.output_tokens);
            }
            Some(Ok(ProviderEvent::LengthLimit)) => st.length_limited = true,
            Some(Ok(ProviderEvent::Skipped(reason))) => {
                tracing::warn!(provider = %entry.id, provider_type = entry.kind.as_str(), reason = %reason, "LLM stream chunk skipped");
            }
            Some(Ok(ProviderEvent::Done)) => return Ok(()),
        }
    }
}

/// The wait before retry number `retry` of one provider: its `Retry-After` when it sent one (or `None`
/// when that exceeds `max_delay`: not worth waiting for, move on), else full jitter over the backoff.
fn retry_wait<R: Rng + ?Sized>(
    config: &RetryConfig,
    retry: u32,
    retry_after: Option<Duration>,
    rng: &mut R,
) -> Option<Duration> {
    match retry_after {
        Some(wait) if wait > config.max_delay => None,
        Some(wait) => Some(wait),
        None => Some(
            Backoff {
                base: config.base_delay,
                max: config.max_delay,
                jitter: Jitter::Full,
            }
            .delay(retry, rng),
        ),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;

    #[test]
    fn retry_after_wins_over_jitter_unless_too_long() {
        let config = RetryConfig::default();
        let mut rng = StdRng::seed_from_u64(1);
        assert_eq!(
            retry_wait(&config, 1, Some(Duration::from_secs(7)), &mut rng),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_wait(&config, 1, Some(Duration::from_secs(31)), &mut rng),
            None
        );
        let jittered = retry_wait(&config, 2, None, &mut rng).unwrap();
        assert!(jittered <= Duration::from_secs(2));
    }
}
