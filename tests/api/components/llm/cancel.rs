//! Cancelling a turn, or dropping its stream, closes the upstream request.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;

#[tokio::test]
async fn cancel_closes_the_upstream_request() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::StallMidStream { after_events: 3 }]);
    let (llm, _) = build(&provider("gpt", "openai", &fake, "idle_timeout = \"60s\""));
    let cancel = CancellationToken::new();
    let mut stream = llm.stream_turn("gpt", vec![ChatMessage::user("Hi")], cancel.clone());
    let first = tokio::time::timeout(Duration::from_secs(5), stream.next())
        .await
        .unwrap();
    assert!(matches!(first, Some(Ok(TurnEvent::Delta(_)))), "{first:?}");
    cancel.cancel();
    fake.wait_closed_by_client(0).await;
    let rest = collect(stream).await;
    assert!(
        matches!(rest.error, Some(LlmError::Cancelled)),
        "{:?}",
        rest.error
    );
}

#[tokio::test]
async fn dropping_the_turn_stream_closes_the_upstream_request() {
    let fake = FakeLlm::start().await;
    fake.script([Fault::StallBeforeFirstToken]);
    let (llm, _) = build(&provider(
        "gpt",
        "openai",
        &fake,
        "first_token_timeout = \"60s\"",
    ));
    let stream = llm.stream_turn(
        "gpt",
        vec![ChatMessage::user("Hi")],
        CancellationToken::new(),
    );
    while fake.request_count() == 0 {
        tokio::task::yield_now().await;
    }
    drop(stream);
    fake.wait_closed_by_client(0).await;
}
