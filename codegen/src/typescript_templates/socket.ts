
/**
 * `ChatSocket`: the WebSocket client of the chat protocol. Hand-written, copied unchanged by the spec
 * compiler; the frame types come from the generated `ws.ts`. It implements the client rules of
 * spec/asyncapi.yaml: session id adoption, `seq` de-duplication and `last_seq` resume, the `partial` replace
 * rule, `client_msg_id` and the safe retry of unanswered messages, heartbeat and reconnect with backoff.
 * @module
 */

import type {
  AiResponse,
  ClientMessage,
  ConnectionStatus,
  ServerMessage,
  ServerMessageMap,
  ServerMessageType,
} from "./ws.js";
import type { TokenProvider } from "./rest.js";

/** What the client needs of a WebSocket object (the browser's and the `ws` package's both fit). */
interface WebSocketLike {
  readonly readyState: number;
  onopen: ((event: unknown) => void) | null;
  onmessage: ((event: { data: unknown }) => void) | null;
  onclose: ((event: { code: number; reason: string }) => void) | null;
  onerror: ((event: unknown) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A WebSocket constructor: the browser's `WebSocket`, or `WebSocket` of the `ws` package in Node. */
export type WebSocketConstructor = new (url: string) => unknown;

/** Connection state, as reported to `onState` handlers. */
export type ConnectionState = "idle" | "connecting" | "open" | "reconnecting" | "closed";

/** Options of `ChatSocket`. */
export interface ChatSocketOptions {
  /** WebSocket URL including the path prefix, e.g. `ws://localhost:8080/chatbox/ws`. */
  url: string;
  /** The JWT (a string or a provider called before each connection attempt); sent as `?token=`. */
  token: string | TokenProvider;
  /** The WebSocket constructor (`globalThis.WebSocket` in browsers, `ws` in Node). */
  WebSocket: WebSocketConstructor;
  /** Application `ping` interval in ms (default 25000; 0 disables the heartbeat). */
  heartbeatMs?: number;
  /** A connection that received nothing for this long (ms) is closed and reconnected (default 60000). */
  heartbeatTimeoutMs?: number;
  /** First reconnect delay cap in ms (default 500); doubles per attempt. */
  backoffInitialMs?: number;
  /** Largest reconnect delay cap in ms (default 30000). */
  backoffMaxMs?: number;
  /** An accepted message with no frame naming its `client_msg_id` after this long (ms) is sent again (default 15000). */
  retryAfterMs?: number;
  /** How often an unanswered message is sent again before it is given up (default 5). */
  maxRetries?: number;
  /** The session to start with (the server's announced session is adopted anyway). */
  sessionId?: string;
  /** Highest `seq` seen per session, e.g. restored from storage, to resume after a page reload. */
  lastSeq?: Record<string, number>;
  /** Random source in [0, 1) for the backoff jitter (default `Math.random`). */
  random?: () => number;
  /** Generator of `client_msg_id`s (default `crypto.randomUUID`). */
  newId?: () => string;
}

/** The text of the answer being streamed in a session, after applying the `partial` replace rule. */
export interface Answer {
  /** The session. */
  session_id: string;
  /** The `client_msg_id` of the user message being answered, if it had one. */
  client_msg_id?: string;
  /** The whole text so far. */
  text: string;
  /** Whether this is the final state (`metadata.done="true"`). */
  done: boolean;
  /** `metadata.finish_reason` of the final chunk. */
  finish_reason?: string;
  /** The model that answers. */
  model_id?: string;
}

/** Client message types that carry a `client_msg_id`, and so are retried until a frame names it. */
const IDEMPOTENT = new Set<string>(["user_message", "file_upload", "voice_message", "admin_message"]);
/** Client message types whose `sender` must be `admin`. */
const ADMIN_TYPES = new Set<string>(["admin_join", "admin_leave", "admin_message"]);
/** Server frames about other sessions than the one shown (never adopted). */
const NOT_ADOPTED = new Set<string>(["help_request", "notification"]);
const OPEN = 1;

interface Pending {
  frame: Record<string, unknown>;
  sentAt: number;
  attempts: number;
}

type Handler = (message: ServerMessage) => void;

function defaultId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) {
    return c.randomUUID();
  }
  return `${Date.now().toString(16)}-${Math.random().toString(16).slice(2)}-${Math.random().toString(16).slice(2)}`;
}

/**
 * One chat connection that survives network cuts: it reconnects with backoff and jitter, resumes the session
 * with `last_seq` (no gap, no duplicate), and sends again the messages whose answer never came.
 */
export class ChatSocket {
  private readonly options: Required<Omit<ChatSocketOptions, "sessionId" | "lastSeq">>;
  private readonly token: TokenProvider;
  private socket: WebSocketLike | null = null;
  private handlers = new Map<string, Set<Handler>>();
  private stateHandlers = new Set<(state: ConnectionState) => void>();
  private answerHandlers = new Set<(answer: Answer) => void>();
  private seqs = new Map<string, number>();
  private answers = new Map<string, Answer>();
  private pending = new Map<string, Pending>();
  private outbox: Record<string, unknown>[] = [];
  private attempt = 0;
  private lastReceived = 0;
  private heartbeat: ReturnType<typeof setInterval> | null = null;
  private reconnectTimer: ReturnType<typeof setTimeout> | null = null;
  private stopped = false;
  private resuming = false;
  private sawStatus = false;
  private connectWaiters: { resolve: (s: ConnectionStatus) => void; reject: (e: Error) => void }[] = [];
  private currentState: ConnectionState = "idle";
  private currentSession: string | null;
  private dropped = 0;

  /** The connected user's id (from the connect-time `connection_status`). */
  userId: string | null = null;
  /** The configured models (from the connect-time `connection_status`). */
  models: ConnectionStatus["models"] = [];

  /** A client with `options`; nothing happens until `connect()`. */
  constructor(options: ChatSocketOptions) {
    this.options = {
      url: options.url,
      token: options.token,
      WebSocket: options.WebSocket,
      heartbeatMs: options.heartbeatMs ?? 25000,
      heartbeatTimeoutMs: options.heartbeatTimeoutMs ?? 60000,
      backoffInitialMs: options.backoffInitialMs ?? 500,
      backoffMaxMs: options.backoffMaxMs ?? 30000,
      retryAfterMs: options.retryAfterMs ?? 15000,
      maxRetries: options.maxRetries ?? 5,
      random: options.random ?? Math.random,
      newId: options.newId ?? defaultId,
    };
    const token = options.token;
    this.token = typeof token === "function" ? token : () => token;
    this.currentSession = options.sessionId ?? null;
    for (const [session, seq] of Object.entries(options.lastSeq ?? {})) {
      this.seqs.set(session, seq);
    }
  }

  /** The current connection state. */
  get state(): ConnectionState {
    return this.currentState;
  }

  /** The session messages go to by default (adopted from the server's frames). */
  get sessionId(): string | null {
    return this.currentSession;
  }

  /** The highest `seq` seen in `session` (default: the current one), 0 when none. */
  lastSeq(session: string | null = this.currentSession): number {
    return session === null ? 0 : (this.seqs.get(session) ?? 0);
  }

  /** Every session's highest `seq` seen, e.g. to store for a resume after a page reload. */
  lastSeqs(): Record<string, number> {
    return Object.fromEntries(this.seqs);
  }

  /** How many frames were dropped as repeats of a `seq` already seen. */
  get duplicatesDropped(): number {
    return this.dropped;
  }

  /** `client_msg_id`s sent and not yet named by any server frame. */
  get unanswered(): string[] {
    return [...this.pending.keys()];
  }

  /**
   * Opens the connection; resolves with the connect-time `connection_status` (rejects if the socket closes
   * before it, or after `close()`). Later cuts, and a first attempt that failed, reconnect on their own; a
   * `connect()` while reconnecting resolves with the next connect-time status.
   */
  connect(): Promise<ConnectionStatus> {
    this.stopped = false;
    const waiter = new Promise<ConnectionStatus>((resolve, reject) => {
      this.connectWaiters.push({ resolve, reject });
    });
    if (this.socket === null && this.reconnectTimer === null) {
      void this.open();
    }
    return waiter;
  }

  /** Closes the connection for good (no reconnect); unanswered messages stay in `unanswered`. */
  close(): void {
    this.stopped = true;
    this.clearTimers();
    const socket = this.socket;
    this.socket = null;
    if (socket) {
      socket.onclose = null;
      socket.onmessage = null;
      socket.close(1000, "client closed");
    }
    this.rejectWaiters(new Error("closed"));
    this.setState("closed");
  }

  /** Cuts the network connection as a failure would (for tests and "reconnect now" buttons): it reconnects and resumes. */
  drop(): void {
    this.socket?.close(4000, "dropped by client");
  }

  /** Calls `handler` for every server frame of `type` (after de-duplication); returns the unsubscribe function. */
  on<K extends ServerMessageType>(type: K, handler: (message: ServerMessageMap[K]) => void): () => void {
    return this.subscribe(type, handler as Handler);
  }

  /** Calls `handler` for every server frame (after de-duplication); returns the unsubscribe function. */
  onAny(handler: (message: ServerMessage) => void): () => void {
    return this.subscribe("*", handler);
  }

  /** Calls `handler` on every state change; returns the unsubscribe function. */
  onState(handler: (state: ConnectionState) => void): () => void {
    this.stateHandlers.add(handler);
    return () => this.stateHandlers.delete(handler);
  }

  /** Calls `handler` with the whole answer text after every `ai_response` (the `partial` rule applied). */
  onAnswer(handler: (answer: Answer) => void): () => void {
    this.answerHandlers.add(handler);
    return () => this.answerHandlers.delete(handler);
  }

  /**
   * Sends `message`. Fills in `session_id` (the current session) when absent, `sender: "admin"` for
   * `admin_*`, and a fresh `client_msg_id` for `user_message`, `file_upload`, `voice_message` and
   * `admin_message`; returns that id. Such a message is kept until a server frame names its id and is sent
   * again (same id, so the server answers it at most once) after a reconnect or `retryAfterMs`. Other
   * messages sent while disconnected wait for the connection.
   */
  send(message: ClientMessage): string | undefined {
    const frame: Record<string, unknown> = { ...message };
    if (frame.type !== "ping" && frame.session_id === undefined && this.currentSession !== null) {
      frame.session_id = this.currentSession;
    }
    if (ADMIN_TYPES.has(String(frame.type)) && frame.sender === undefined) {
      frame.sender = "admin";
    }
    let id: string | undefined;
    if (IDEMPOTENT.has(String(frame.type))) {
      if (typeof frame.client_msg_id !== "string" || frame.client_msg_id === "") {
        frame.client_msg_id = this.options.newId();
      }
      id = frame.client_msg_id as string;
      this.pending.set(id, { frame, sentAt: Date.now(), attempts: 0 });
      if (this.isOpen()) {
        this.write(frame);
      }
      return id;
    }
    if (this.isOpen()) {
      this.write(frame);
    } else if (frame.type !== "ping") {
      this.outbox.push(frame);
    }
    return id;
  }

  /** Sends `resume` for `session` (default: the current one) with the highest `seq` seen there. */
  resume(session: string | null = this.currentSession): void {
    if (session === null) {
      return;
    }
    this.send({ type: "resume", session_id: session, last_seq: this.lastSeq(session) } as ClientMessage);
  }

  /**
   * Starts a new conversation: the next messages name a session id the server does not know, so it creates
   * one (after the previous session ended) and announces its id, which is adopted.
   */
  startNewSession(): string {
    this.currentSession = this.options.newId();
    return this.currentSession;
  }

  private subscribe(type: string, handler: Handler): () => void {
    let set = this.handlers.get(type);
    if (!set) {
      set = new Set();
      this.handlers.set(type, set);
    }
    set.add(handler);
    return () => set.delete(handler);
  }

  private setState(state: ConnectionState): void {
    if (state === this.currentState) {
      return;
    }
    this.currentState = state;
    for (const h of [...this.stateHandlers]) {
      h(state);
    }
  }

  private isOpen(): boolean {
    return this.socket !== null && this.socket.readyState === OPEN && this.sawStatus;
  }

  private write(frame: Record<string, unknown>): void {
    this.socket?.send(JSON.stringify(frame));
  }

  private rejectWaiters(error: Error): void {
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    for (const w of waiters) {
      w.reject(error);
    }
  }

  private clearTimers(): void {
    if (this.heartbeat !== null) {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
    }
    if (this.reconnectTimer !== null) {
      clearTimeout(this.reconnectTimer);
      this.reconnectTimer = null;
    }
  }

  private async open(): Promise<void> {
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    let token: string | null | undefined;
    try {
      token = await this.token();
    } catch {
      token = null;
    }
    if (this.stopped) {
      return;
    }
    const params = [`token=${encodeURIComponent(token ?? "")}`];
    this.resuming = this.currentSession !== null && this.seqs.has(this.currentSession);
    if (this.resuming) {
      params.push(`last_seq=${this.lastSeq()}`);
    }
    const separator = this.options.url.includes("?") ? "&" : "?";
    const socket = new this.options.WebSocket(`${this.options.url}${separator}${params.join("&")}`) as WebSocketLike;
    this.socket = socket;
    this.sawStatus = false;
    this.lastReceived = Date.now();
    socket.onmessage = (event) => {
      if (this.socket === socket) {
        this.receive(event.data);
      }
    };
    socket.onclose = () => {
      if (this.socket === socket) {
        this.closed();
      }
    };
    socket.onerror = () => {
      // A close event follows every error; reconnecting happens there.
    };
    const tick = Math.max(50, Math.min(this.options.heartbeatMs || 1000, this.options.retryAfterMs / 2));
    if (this.heartbeat !== null) {
      clearInterval(this.heartbeat);
    }
    let lastPing = Date.now();
    this.heartbeat = setInterval(() => {
      const now = Date.now();
      if (this.options.heartbeatMs > 0 && now - this.lastReceived > this.options.heartbeatTimeoutMs) {
        // A peer that stopped answering does not complete the close handshake either (the close event may
        // come much later, or never): give the socket up now and reconnect; its late events are ignored.
        socket.close(4001, "heartbeat timeout");
        if (this.socket === socket) {
          this.closed();
        }
        return;
      }
      if (this.options.heartbeatMs > 0 && this.isOpen() && now - lastPing >= this.options.heartbeatMs) {
        lastPing = now;
        this.write({ type: "ping" });
      }
      this.retryUnanswered(now);
    }, tick);
  }

  private closed(): void {
    this.socket = null;
    this.sawStatus = false;
    if (this.heartbeat !== null) {
      clearInterval(this.heartbeat);
      this.heartbeat = null;
    }
    if (this.stopped) {
      return;
    }
    // `connect()` promised the connect-time status of this attempt; the reconnects go on without a caller.
    this.rejectWaiters(new Error("the connection closed before its connection_status"));
    const cap = Math.min(this.options.backoffMaxMs, this.options.backoffInitialMs * 2 ** this.attempt);
    const delay = Math.floor(this.options.random() * cap);
    this.attempt += 1;
    this.setState("reconnecting");
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      void this.open();
    }, delay);
  }

  /** Sends again every accepted message no frame has named for `retryAfterMs`; gives up after `maxRetries`. */
  private retryUnanswered(now: number): void {
    if (!this.isOpen() || this.resuming) {
      return;
    }
    for (const [id, p] of this.pending) {
      if (now - p.sentAt < this.options.retryAfterMs) {
        continue;
      }
      if (p.attempts >= this.options.maxRetries) {
        this.pending.delete(id);
        continue;
      }
      p.attempts += 1;
      p.sentAt = now;
      this.write(p.frame);
    }
  }

  /** After the connection is usable: sends what waited, and every message still unanswered, again. */
  private flush(): void {
    const now = Date.now();
    for (const p of this.pending.values()) {
      p.sentAt = now;
      this.write(p.frame);
    }
    const outbox = this.outbox;
    this.outbox = [];
    for (const frame of outbox) {
      if (frame.session_id === undefined && frame.type !== "ping" && this.currentSession !== null) {
        frame.session_id = this.currentSession;
      }
      this.write(frame);
    }
  }

  private receive(data: unknown): void {
    this.lastReceived = Date.now();
    let frame: ServerMessage;
    try {
      const text = typeof data === "string" ? data : String(data);
      frame = JSON.parse(text) as ServerMessage;
    } catch {
      return;
    }
    if (typeof frame !== "object" || frame === null || typeof frame.type !== "string") {
      return;
    }
    const f = frame as ServerMessage & { session_id?: string; seq?: number; client_msg_id?: string; metadata?: Record<string, string> };
    // Any frame naming a client_msg_id answers that message (an error frame refuses it): no retry.
    if (typeof f.client_msg_id === "string") {
      this.pending.delete(f.client_msg_id);
    }
    // Session id adoption: clients adopt the session_id of any server frame that names a different one.
    if (typeof f.session_id === "string" && f.session_id !== this.currentSession && !NOT_ADOPTED.has(f.type)) {
      this.currentSession = f.session_id;
    }
    const partial = f.metadata?.partial === "true";
    if (typeof f.seq === "number" && typeof f.session_id === "string") {
      const seen = this.seqs.get(f.session_id) ?? 0;
      if (f.seq <= seen && !partial) {
        this.dropped += 1;
        return;
      }
      if (f.seq > seen) {
        this.seqs.set(f.session_id, f.seq);
      }
    }
    if (f.type === "connection_status") {
      this.status(f as ConnectionStatus);
    }
    if (f.type === "ai_response") {
      this.answer(f as AiResponse);
    }
    for (const h of [...(this.handlers.get(f.type) ?? [])]) {
      h(frame);
    }
    for (const h of [...(this.handlers.get("*") ?? [])]) {
      h(frame);
    }
  }

  private status(status: ConnectionStatus): void {
    const session = status.session_id;
    const resumed = status.metadata?.resumed === "true";
    if (resumed) {
      // End of a replay: keep resuming from the session's latest seq (or what was seen, if higher).
      if (session !== undefined && typeof status.last_seq === "number" && status.last_seq > this.lastSeq(session)) {
        this.seqs.set(session, status.last_seq);
      }
      if (this.resuming) {
        this.resuming = false;
        this.flush();
      }
      return;
    }
    if (status.sender !== "system" || this.sawStatus) {
      return;
    }
    // The connect-time status.
    this.sawStatus = true;
    this.attempt = 0;
    if (status.user_id !== undefined) {
      this.userId = status.user_id;
    }
    if (status.models !== undefined) {
      this.models = status.models;
    }
    if (!this.resuming && session !== undefined) {
      // A fresh start: earlier events are history (GET /sessions/{id}), not frames to wait for. From here on
      // the session is known, so a reconnect resumes it (also from 0).
      this.seqs.set(session, Math.max(this.lastSeq(session), status.last_seq ?? 0));
    }
    this.setState("open");
    const waiters = this.connectWaiters;
    this.connectWaiters = [];
    for (const w of waiters) {
      w.resolve(status);
    }
    if (!this.resuming) {
      this.flush();
    }
  }

  private answer(frame: AiResponse): void {
    const done = frame.metadata?.done === "true";
    const partial = frame.metadata?.partial === "true";
    const previous = this.answers.get(frame.session_id);
    const answer: Answer = {
      session_id: frame.session_id,
      client_msg_id: frame.client_msg_id ?? previous?.client_msg_id,
      text: partial ? (frame.content ?? "") : (previous?.text ?? "") + (frame.content ?? ""),
      done,
      finish_reason: frame.metadata?.finish_reason,
      model_id: frame.model_id ?? previous?.model_id,
    };
    if (done) {
      this.answers.delete(frame.session_id);
    } else {
      this.answers.set(frame.session_id, answer);
    }
    for (const h of [...this.answerHandlers]) {
      h(answer);
    }
  }
}
