/**
 * The time-driven behaviours of `ChatSocket`, made deterministic: a fake WebSocket (the `WebSocket` option) plays
 * the server, `node:test`'s mock timers drive `setTimeout`, `setInterval` and `Date`, and the `random` option fixes
 * the jitter. No network and no server: heartbeat timeout, reconnect backoff, timed retry, give-up.
 */

import assert from "node:assert/strict";
import { test, type TestContext } from "node:test";

import { ChatSocket, type ChatSocketOptions, type ConnectionState } from "@chatbox/client";

/** A frame the fake server sends or the client wrote. */
type Frame = Record<string, unknown>;

/** The fake server's end of one connection; `close()` from the client never completes (a silent peer). */
class FakeSocket {
  readyState = 0;
  onopen: ((event: unknown) => void) | null = null;
  onmessage: ((event: { data: unknown }) => void) | null = null;
  onclose: ((event: { code: number; reason: string }) => void) | null = null;
  onerror: ((event: unknown) => void) | null = null;
  /** Frames the client wrote, parsed. */
  readonly sent: Frame[] = [];
  /** The client's `close(code, reason)` calls. */
  readonly closeCalls: { code?: number; reason?: string }[] = [];

  constructor(readonly url: string) {}

  send(data: string): void {
    assert.equal(this.readyState, 1, "send on an open socket only");
    this.sent.push(JSON.parse(data) as Frame);
  }

  close(code?: number, reason?: string): void {
    this.closeCalls.push({ code, reason });
    if (this.readyState < 2) {
      this.readyState = 2;
    }
  }

  /** The server accepts: the socket opens and the connect-time `connection_status` arrives. */
  accept(session = "s-1"): void {
    this.readyState = 1;
    this.onopen?.({});
    this.deliver({ type: "connection_status", sender: "system", session_id: session, user_id: "u-1", last_seq: 0 });
  }

  /** The server ends the replay of a resumed connection (`connection_status` with `metadata.resumed`). */
  endReplay(session = "s-1"): void {
    this.deliver({ type: "connection_status", sender: "system", session_id: session, metadata: { resumed: "true" } });
  }

  /** The server sends `frame`. */
  deliver(frame: Frame): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }

  /** The connection ends from the server's side (or the network's). */
  drop(code = 1006): void {
    this.readyState = 3;
    this.onclose?.({ code, reason: "" });
  }

  /** Frames of `type` the client wrote. */
  of(type: string): Frame[] {
    return this.sent.filter((f) => f.type === type);
  }
}

/** Lets pending promise callbacks run (the client awaits its token provider before opening a socket). */
function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** A client on fake sockets and fake time (starting at 0), with the state changes it reported. */
function harness(t: TestContext, options: Partial<ChatSocketOptions> = {}) {
  t.mock.timers.enable({ apis: ["setTimeout", "setInterval", "Date"], now: 0 });
  const sockets: FakeSocket[] = [];
  const Fake = class extends FakeSocket {
    constructor(url: string) {
      super(url);
      sockets.push(this);
    }
  };
  const client = new ChatSocket({ url: "ws://chat.test/ws", token: "jwt", WebSocket: Fake, ...options });
  const states: ConnectionState[] = [];
  client.onState((s) => states.push(s));
  /**
   * Advances the fake clock by `ms`, 1 ms at a time (the mock `Date` jumps to the end of a `tick` before its
   * timers run, so a longer step would show every timer the same time), letting the client finish what each
   * step's timers started.
   */
  const advance = async (ms: number): Promise<void> => {
    t.mock.timers.tick(0);
    await settle();
    for (let i = 0; i < ms; i++) {
      t.mock.timers.tick(1);
      await settle();
    }
  };
  /** Connects and accepts the first socket. */
  const open = async (): Promise<FakeSocket> => {
    const connected = client.connect();
    await settle();
    assert.equal(sockets.length, 1, "connect() opens one socket");
    sockets[0].accept();
    await connected;
    return sockets[0];
  };
  return { client, sockets, states, advance, open, last: () => sockets[sockets.length - 1] };
}

test("heartbeat: pings while idle, and a server that stops answering is detected and replaced", async (t) => {
  const h = harness(t, { heartbeatMs: 1000, heartbeatTimeoutMs: 5000, backoffInitialMs: 400, random: () => 0.5 });
  try {
    const first = await h.open();

    // Frames keep the connection alive: a pong to every ping for 20 s, no close.
    for (let i = 0; i < 20; i++) {
      await h.advance(1000);
      first.deliver({ type: "pong", sender: "system", timestamp: "2025-01-01T00:00:00Z" });
    }
    assert.equal(first.of("ping").length, 20, "one ping per heartbeatMs");
    assert.deepEqual(first.closeCalls, [], "an answering server is kept");

    // Silence from t=20000: still alive at the timeout, closed within one more tick after it.
    await h.advance(5000);
    assert.deepEqual(first.closeCalls, [], "not closed before heartbeatTimeoutMs");
    assert.equal(first.of("ping").length, 25, "pings go on while waiting");
    await h.advance(1000);
    assert.deepEqual(first.closeCalls, [{ code: 4001, reason: "heartbeat timeout" }]);
    assert.equal(h.client.state, "reconnecting");

    // The dead peer never completes the close handshake: the client reconnects anyway, after the backoff
    // (attempt 0: 0.5 * 400 ms).
    assert.equal(h.sockets.length, 1);
    await h.advance(199);
    assert.equal(h.sockets.length, 1, "waits for the backoff");
    await h.advance(1);
    assert.equal(h.sockets.length, 2, "a new connection after heartbeat timeout + backoff");
    assert.match(h.last().url, /[?&]last_seq=0(&|$)/, "the new connection resumes the session");
    h.last().accept();
    assert.equal(h.client.state, "open");

    // A late close event of the abandoned socket changes nothing (within the new connection's timeout).
    first.drop();
    await h.advance(4000);
    assert.equal(h.sockets.length, 2, "no second reconnect for the abandoned socket");
    assert.equal(h.client.state, "open");
    assert.deepEqual(h.states, ["connecting", "open", "reconnecting", "open"]);
  } finally {
    h.client.close();
  }
});

test("reconnect backoff: full jitter below a cap doubling up to backoffMaxMs, reset on connect", async (t) => {
  let r = 0.9999;
  const calls: number[] = [];
  const h = harness(t, {
    heartbeatMs: 0,
    random: () => {
      calls.push(r);
      return r;
    },
  });
  /** The delay until the next socket after the current one closes: asserts it is exactly `ms`. */
  const expectDelay = async (ms: number, what: string): Promise<void> => {
    const before = h.sockets.length;
    h.last().drop();
    assert.equal(h.client.state, "reconnecting");
    if (ms > 0) {
      await h.advance(ms - 1);
      assert.equal(h.sockets.length, before, `${what}: no reconnect before ${ms} ms`);
    }
    await h.advance(ms > 0 ? 1 : 0);
    assert.equal(h.sockets.length, before + 1, `${what}: reconnects after ${ms} ms`);
  };
  try {
    await h.open();
    // The upper bound: random() just below 1 gives just below the cap, which doubles per failed attempt from
    // the default 500 ms and stops at the default 30 s.
    const caps = [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000];
    for (const [attempt, cap] of caps.entries()) {
      await expectDelay(Math.floor(0.9999 * cap), `attempt ${attempt} (cap ${cap})`);
    }
    assert.equal(calls.length, caps.length, "one random draw per reconnect");

    // The jitter scales the cap: a quarter of it, then the lower bound, no wait at all.
    r = 0.25;
    await expectDelay(7500, "a quarter of the 30 s cap");
    r = 0;
    await expectDelay(0, "random() = 0");

    // A connect-time connection_status resets the attempt counter: back to the first cap.
    h.last().accept();
    assert.equal(h.client.state, "open");
    r = 0.9999;
    await expectDelay(499, "after a successful connect");
    await expectDelay(999, "and doubling again");
  } finally {
    h.client.close();
  }
});

test("timed retry: an accepted message no frame names is sent again every retryAfterMs with the same id", async (t) => {
  const h = harness(t, { heartbeatMs: 10_000, retryAfterMs: 2000 });
  try {
    const socket = await h.open();
    await h.advance(500);
    const answered = h.client.send({ type: "user_message", content: "first" } as never);
    const ignored = h.client.send({ type: "user_message", content: "second" } as never);
    assert.ok(answered && ignored);
    const copies = (id: string) => socket.of("user_message").filter((f) => f.client_msg_id === id);
    assert.equal(copies(answered).length, 1, "sent at once");

    // The server answers the first one (a loading frame names its id); the second gets no answer.
    socket.deliver({ type: "loading", session_id: "s-1", client_msg_id: answered, seq: 1 });
    assert.deepEqual(h.client.unanswered, [ignored]);

    // Sent at t=500: not again before t=2500, again once the tick after it runs (ticks every
    // min(heartbeatMs, retryAfterMs / 2) = 1000 ms, so at t=3000), then every retryAfterMs.
    await h.advance(2000);
    assert.equal(copies(ignored).length, 1, "not before retryAfterMs");
    await h.advance(500);
    assert.equal(copies(ignored).length, 2, "sent again after retryAfterMs");
    await h.advance(1999);
    assert.equal(copies(ignored).length, 2, "not again before another retryAfterMs");
    await h.advance(1);
    assert.equal(copies(ignored).length, 3, "and again");
    for (const copy of copies(ignored)) {
      assert.deepEqual(copy, { type: "user_message", content: "second", session_id: "s-1", client_msg_id: ignored });
    }
    assert.equal(copies(answered).length, 1, "an answered message is never sent again");

    // Once answered (by any frame naming the id, an error included), the retries stop.
    const error = { code: "rate_limit_exceeded", message: "slow down" };
    socket.deliver({ type: "error", session_id: "s-1", client_msg_id: ignored, error });
    assert.deepEqual(h.client.unanswered, []);
    await h.advance(20_000);
    assert.equal(copies(ignored).length, 3, "no retry after the answer");
  } finally {
    h.client.close();
  }
});

test("give-up: after maxRetries resends and one more retryAfterMs unanswered, the message is dropped", async (t) => {
  const h = harness(t, { heartbeatMs: 0, retryAfterMs: 1000, maxRetries: 3 });
  try {
    const socket = await h.open();
    const id = h.client.send({ type: "user_message", content: "hello?" } as never);
    assert.ok(id);
    const copies = () => socket.of("user_message").length;

    // Ticks every 500 ms (heartbeat off: min(1000, retryAfterMs / 2)); resends at 1000, 2000, 3000.
    for (let retry = 1; retry <= 3; retry++) {
      await h.advance(1000);
      assert.equal(copies(), 1 + retry, `retry ${retry}`);
      assert.deepEqual(h.client.unanswered, [id], "still waiting for its answer");
    }
    // The last copy gets its retryAfterMs to be answered, then the message is given up.
    await h.advance(999);
    assert.deepEqual(h.client.unanswered, [id], "the last retry is given its time");
    await h.advance(1);
    assert.deepEqual(h.client.unanswered, [], "given up");
    await h.advance(60_000);
    assert.equal(copies(), 4, "never sent again: 1 + maxRetries copies");

    // A reconnect (its replay ended) sends again what is still unanswered, but not the given-up message.
    const later = h.client.send({ type: "user_message", content: "still there?" } as never);
    socket.drop();
    await h.advance(30_000);
    assert.equal(h.sockets.length, 2);
    h.last().accept();
    h.last().endReplay();
    assert.deepEqual(
      h.last().of("user_message").map((f) => f.client_msg_id),
      [later],
      "only the message still waiting is sent after the reconnect",
    );
  } finally {
    h.client.close();
  }
});

test("connect() rejects when its socket closes before the connect-time status; reconnecting goes on", async (t) => {
  const h = harness(t, { heartbeatMs: 0, backoffInitialMs: 100, random: () => 0.5 });
  try {
    const refused = h.client.connect();
    await h.advance(0);
    h.last().drop(1008);
    await assert.rejects(refused, /closed before its connection_status/);
    assert.equal(h.client.state, "reconnecting");

    // A second connect() waits for the reconnect already scheduled (no extra socket) and resolves with it.
    const retried = h.client.connect();
    await h.advance(50);
    assert.equal(h.sockets.length, 2, "the scheduled reconnect, and only it");
    h.last().accept("s-2");
    const status = await retried;
    assert.equal(status.session_id, "s-2");
    assert.equal(h.client.state, "open");
  } finally {
    h.client.close();
  }
});
