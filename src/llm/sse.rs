//! SSE plumbing shared by the HTTP providers: sending a streaming request, turning error statuses into
//! [`AttemptError`]s, parsing the body with `eventsource-stream` (lines capped at 1 MiB) and running a
//! provider's [`SseDecoder`] over the events.

use std::collections::VecDeque;

use bytes::Bytes;
use eventsource_stream::{Event, EventStreamError, Eventsource};
use futures::{Stream, StreamExt};
use secrecy::{ExposeSecret, SecretString};

use super::error::TimeoutKind;
use super::provider::{AttemptError, ProviderEvent, ProviderStream};
use crate::backoff::parse_retry_after;

/// Longest SSE line accepted (reference 5.2: lines up to 1 MiB).
pub const MAX_LINE_BYTES: usize = 1 << 20;
/// How much of an error body is kept for the logs (reference 5.2: first 1024 bytes).
const ERROR_BODY_BYTES: usize = 1024;

/// Where and how an HTTP provider sends its requests.
#[derive(Debug, Clone)]
pub struct HttpTarget {
    /// Client with the provider's connect timeout (one per provider).
    pub client: reqwest::Client,
    /// Base URL without trailing slash.
    pub endpoint: String,
    /// Upstream model name.
    pub model: String,
    /// API key, if any.
    pub api_key: Option<SecretString>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Answer token limit.
    pub max_tokens: Option<u32>,
}

impl HttpTarget {
    /// `endpoint` + `path` (`path` starts with `/`).
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.endpoint)
    }
}

/// Builds the HTTP client of one provider: connect timeout, no overall timeout (the turn policy
/// bounds first token, gaps and the whole turn), HTTP/1.1 keep-alive pool, and no redirects (an API
/// endpoint does not redirect; following one could send the API key to another host or over plain HTTP).
pub fn build_client(
    connect_timeout: std::time::Duration,
) -> Result<reqwest::Client, reqwest::Error> {
    reqwest::Client::builder()
        .connect_timeout(connect_timeout)
        .pool_idle_timeout(std::time::Duration::from_secs(60))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("chatbox/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// Turns a provider's SSE events into [`ProviderEvent`]s.
pub trait SseDecoder: Send + 'static {
    /// Decodes one event; `Done` marks the provider's end of answer.
    fn decode(&mut self, event: &Event) -> Result<Vec<ProviderEvent>, AttemptError>;

    /// Called when the body ends before `Done`: either a final event list (ending with `Done`) or
    /// the error that the stream ended without its end marker.
    fn finish(&mut self) -> Result<Vec<ProviderEvent>, AttemptError> {
        Err(AttemptError::Stream(
            "stream ended without end marker".into(),
        ))
    }
}

/// Errors of the body stream below the SSE parser.
#[derive(Debug, thiserror::Error)]
enum BodyError {
    #[error("{0}")]
    Transport(String),
    #[error("SSE line longer than {MAX_LINE_BYTES} bytes")]
    LineTooLong,
}

/// Maps a reqwest error of `send` to an attempt error.
pub fn send_error(error: &reqwest::Error) -> AttemptError {
    if error.is_timeout() {
        AttemptError::Timeout(TimeoutKind::Connect)
    } else if error.is_connect() {
        AttemptError::Connect(error_chain(error))
    } else {
        AttemptError::Stream(error_chain(error))
    }
}

/// The error and its sources on one line (reqwest's top level alone says little).
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// Sends `request`, checks the status and returns the decoded event stream.
pub async fn open_sse<D: SseDecoder>(
    request: reqwest::RequestBuilder,
    api_key: Option<&SecretString>,
    decoder: D,
) -> Result<ProviderStream, AttemptError> {
    let response = request
        .header(reqwest::header::ACCEPT, "text/event-stream")
        .send()
        .await
        .map_err(|e| send_error(&e))?;
    let status = response.status();
    if !status.is_success() {
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
        let body = if matches!(status.as_u16(), 401 | 403) {
            // Providers echo (masked) keys in auth errors: keep none of it.
            String::from("<auth error body not logged>")
        } else {
            read_error_body(response, api_key).await
        };
        return Err(AttemptError::Status {
            status: status.as_u16(),
            retry_after,
            body,
        });
    }
    Ok(decode_stream(sse_events(response.bytes_stream()), decoder))
}

/// Reads at most [`ERROR_BODY_BYTES`] of an error body, with the API key redacted.
async fn read_error_body(response: reqwest::Response, api_key: Option<&SecretString>) -> String {
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(Ok(chunk)) = stream.next().await {
        body.extend_from_slice(&chunk);
        if body.len() >= ERROR_BODY_BYTES {
            body.truncate(ERROR_BODY_BYTES);
            break;
        }
    }
    let mut text = String::from_utf8_lossy(&body).into_owned();
    if let Some(key) = api_key {
        let key = key.expose_secret();
        if !key.is_empty() {
            text = text.replace(key, "[REDACTED]");
        }
    }
    text
}

/// Parses an SSE body into events, refusing lines over [`MAX_LINE_BYTES`].
pub fn sse_events<S, E>(body: S) -> impl Stream<Item = Result<Event, AttemptError>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
    E: std::error::Error + Send + 'static,
{
    let capped = body.scan(0usize, |since_newline, chunk| {
        let item = match chunk {
            Err(e) => Err(BodyError::Transport(error_chain(&e))),
            Ok(bytes) => {
                match bytes.iter().rposition(|b| *b == b'\n' || *b == b'\r') {
                    Some(pos) => *since_newline = bytes.len() - pos - 1,
                    None => *since_newline += bytes.len(),
                }
                if *since_newline > MAX_LINE_BYTES {
                    Err(BodyError::LineTooLong)
                } else {
                    Ok(bytes)
                }
            }
        };
        futures::future::ready(Some(item))
    });
    capped.eventsource().map(|item| {
        item.map_err(|e| match e {
            EventStreamError::Transport(BodyError::Transport(text)) => AttemptError::Stream(text),
            EventStreamError::Transport(BodyError::LineTooLong) => {
                AttemptError::Stream(format!("SSE line longer than {MAX_LINE_BYTES} bytes"))
            }
            EventStreamError::Utf8(e) => {
                AttemptError::Stream(format!("invalid UTF-8 in stream: {e}"))
            }
            EventStreamError::Parser(e) => AttemptError::Stream(format!("invalid SSE: {e}")),
        })
    })
}

struct DecodeState<S, D> {
    events: std::pin::Pin<Box<S>>,
    decoder: D,
    queue: VecDeque<ProviderEvent>,
    finished: bool,
}

/// Runs `decoder` over `events`; the result ends after `Done` or the first error.
pub fn decode_stream<S, D>(events: S, decoder: D) -> ProviderStream
where
    S: Stream<Item = Result<Event, AttemptError>> + Send + 'static,
    D: SseDecoder,
{
    let state = DecodeState {
        events: Box::pin(events),
        decoder,
        queue: VecDeque::new(),
        finished: false,
    };
    Box::pin(futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(event) = st.queue.pop_front() {
                return Some((Ok(event), st));
            }
            if st.finished {
                return None;
            }
            let decoded = match st.events.next().await {
                Some(Ok(event)) => st.decoder.decode(&event),
                Some(Err(e)) => Err(e),
                None => st.decoder.finish(),
            };
            match decoded {
                Ok(events) => {
                    for event in events {
                        let done = event == ProviderEvent::Done;
                        st.queue.push_back(event);
                        if done {
                            st.finished = true;
                            break;
                        }
                    }
                }
                Err(e) => {
                    st.finished = true;
                    st.queue.clear();
                    return Some((Err(e), st));
                }
            }
        }
    }))
}

/// Test helper: decodes a whole SSE text with `decoder`, collecting events until `Done` or an error.
#[cfg(test)]
pub async fn decode_text<D: SseDecoder>(
    text: &str,
    decoder: D,
) -> Vec<Result<ProviderEvent, AttemptError>> {
    let body = futures::stream::iter(vec![Ok::<_, std::io::Error>(Bytes::from(text.to_string()))]);
    decode_stream(sse_events(body), decoder).collect().await
}

/// Test helper: [`decode_text`] of a stream that must decode without an error.
#[cfg(test)]
pub async fn decode_ok<D: SseDecoder>(text: &str, decoder: D) -> Vec<ProviderEvent> {
    decode_text(text, decoder)
        .await
        .into_iter()
        .map(|event| match event {
            Ok(event) => event,
            Err(error) => panic!("decoding failed: {error}"),
        })
        .collect()
}
