/** The WebSocket client against the live server: a streamed turn, two devices in sync, a cut mid-answer. */

import assert from "node:assert/strict";
import { test } from "node:test";

import type { Answer, ConnectionState } from "@chatbox/client";

import { Recorder, eventually, isDone, mintToken, newUser, rest, socket } from "./support.js";

test("a streamed turn: loading, chunks carrying the client_msg_id, one final answer", async () => {
  const token = mintToken(newUser());
  const client = socket(token);
  const frames = new Recorder(client);
  const answers: Answer[] = [];
  client.onAnswer((a) => answers.push(a));
  try {
    const status = await client.connect();
    assert.equal(status.type, "connection_status");
    assert.ok(status.session_id, "connect-time status names a session");
    assert.equal(client.sessionId, status.session_id);
    assert.ok((status.models ?? []).length > 0, "models offered");

    const id = client.send({ type: "user_message", content: "Hello there" });
    assert.ok(id, "a client_msg_id is generated");
    const done = await frames.next(isDone, "final ai_response");

    const loading = frames.of("loading");
    assert.equal(loading.length, 1);
    assert.equal(loading[0].client_msg_id, id);
    const chunks = frames.of("ai_response");
    assert.ok(chunks.length > 2, `streamed in chunks (${chunks.length})`);
    for (const c of chunks) {
      assert.equal(c.client_msg_id, id);
      assert.equal(c.session_id, status.session_id);
    }
    const seqs = frames.frames.flatMap((f) => ("seq" in f && typeof f.seq === "number" ? [f.seq] : []));
    assert.deepEqual([...seqs].sort((a, b) => a - b), seqs, "seq increases");
    const final = answers[answers.length - 1];
    assert.equal(final.done, true);
    assert.equal(final.finish_reason, "stop");
    assert.equal(final.text, chunks.map((c) => c.content ?? "").join(""));
    assert.ok(final.text.length > 0);
    assert.equal(done.type, "ai_response");
    assert.deepEqual(client.unanswered, [], "the message counts as answered");
    assert.equal(client.lastSeq(), seqs[seqs.length - 1]);

    // The answer is in the history, read with the REST client.
    const detail = await rest(token).getSession(status.session_id!);
    assert.deepEqual(
      detail.messages.map((m) => [m.sender, m.content]),
      [
        ["user", "Hello there"],
        ["ai", final.text],
      ],
    );
  } finally {
    client.close();
  }
});

test("two devices of one user share the session and see the same events", async () => {
  const token = mintToken(newUser());
  const phone = socket(token);
  const laptop = socket(token);
  const onPhone = new Recorder(phone);
  const onLaptop = new Recorder(laptop);
  try {
    const a = await phone.connect();
    const b = await laptop.connect();
    assert.equal(a.session_id, b.session_id, "both devices converge on one session");

    const id = phone.send({ type: "user_message", content: "From the phone" });
    const echo = await onLaptop.next((f) => f.type === "user_message", "echo on the laptop");
    assert.equal(echo.type === "user_message" && echo.content, "From the phone");
    assert.equal(echo.type === "user_message" && echo.client_msg_id, id);
    await onPhone.next(isDone, "final answer on the phone");
    await onLaptop.next(isDone, "final answer on the laptop");

    const answerOf = (r: Recorder) => r.of("ai_response").map((c) => c.content ?? "").join("");
    assert.equal(answerOf(onPhone), answerOf(onLaptop));
    const seqsOf = (r: Recorder, type: string) =>
      r.frames.filter((f) => f.type === type).map((f) => ("seq" in f ? f.seq : undefined));
    assert.deepEqual(seqsOf(onPhone, "ai_response"), seqsOf(onLaptop, "ai_response"));
    assert.equal(onPhone.of("user_message").length, 0, "the sender gets no echo of its own message");

    // The laptop answers next; the phone sees that echo.
    laptop.send({ type: "user_message", content: "From the laptop" });
    await onPhone.next((f) => f.type === "user_message" && f.content === "From the laptop", "echo on the phone");
  } finally {
    phone.close();
    laptop.close();
  }
});

test("a socket cut mid-answer reconnects and resumes with last_seq: no gap, no duplicate", async () => {
  const token = mintToken(newUser());
  const watcher = socket(token);
  const cut = socket(token);
  const reference = new Recorder(watcher);
  const resumed = new Recorder(cut);
  const states: ConnectionState[] = [];
  cut.onState((s) => states.push(s));
  const answers: Answer[] = [];
  cut.onAnswer((a) => answers.push(a));
  try {
    await watcher.connect();
    await cut.connect();
    cut.send({ type: "user_message", content: "Tell me a long story" });
    await resumed.next(
      () => resumed.of("ai_response").length >= 3,
      "three chunks before the cut",
    );
    const beforeCut = cut.lastSeq();
    cut.drop();
    await resumed.next(
      (f) => f.type === "connection_status" && f.metadata?.resumed === "true",
      "the end of the replay",
    );
    await resumed.next(isDone, "the final chunk after the resume", 30000);
    await reference.next(isDone, "the final chunk on the uncut device", 30000);

    assert.ok(states.includes("reconnecting"), `states ${states.join(",")}`);
    assert.equal(states[states.length - 1], "open");
    const seqs = (r: Recorder) =>
      r.frames.flatMap((f) => (f.type === "ai_response" || f.type === "loading" ? [f.seq] : []));
    assert.deepEqual(seqs(resumed), seqs(reference), "the same session events, none missing or repeated");
    assert.ok(seqs(resumed).some((s) => s > beforeCut), "events after the cut arrived");
    const text = (r: Recorder) => r.of("ai_response").map((c) => c.content ?? "").join("");
    assert.equal(text(resumed), text(reference));
    assert.equal(answers[answers.length - 1].text, text(reference));
    assert.equal(answers[answers.length - 1].done, true);
  } finally {
    watcher.close();
    cut.close();
  }
});

test("a message whose answer never came is sent again with the same client_msg_id and answered once", async () => {
  const token = mintToken(newUser());
  const client = socket(token);
  const frames = new Recorder(client);
  try {
    const status = await client.connect();
    const id = client.send({ type: "user_message", content: "Are you there?" });
    // Cut before any frame about it could arrive: it stays unanswered and goes out again after the reconnect.
    client.drop();
    assert.deepEqual(client.unanswered, [id]);
    await frames.next((f) => isDone(f) && "client_msg_id" in f && f.client_msg_id === id, "the answer", 30000);
    await eventually(() => client.state === "open", "reconnected");
    assert.deepEqual(client.unanswered, []);

    const detail = await rest(token).getSession(status.session_id!);
    const asked = detail.messages.filter((m) => m.sender === "user");
    assert.equal(asked.length, 1, "stored once");
    assert.equal(detail.messages.filter((m) => m.sender === "ai").length, 1, "answered once");
    const finals = frames.frames.filter((f) => isDone(f) && "client_msg_id" in f && f.client_msg_id === id);
    assert.equal(finals.length, 1, "one final answer delivered");
  } finally {
    client.close();
  }
});

test("a message sent while disconnected waits and goes out once the connection is open", async () => {
  const token = mintToken(newUser());
  const client = socket(token);
  const frames = new Recorder(client);
  try {
    const id = client.send({ type: "user_message", content: "Queued before connecting" });
    assert.equal(client.state, "idle");
    const status = await client.connect();
    const loading = await frames.next((f) => f.type === "loading", "loading");
    assert.equal(loading.type === "loading" && loading.client_msg_id, id);
    assert.equal(loading.type === "loading" && loading.session_id, status.session_id, "session_id filled in");
    await frames.next(isDone, "the answer");
  } finally {
    client.close();
  }
});
