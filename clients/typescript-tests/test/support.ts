/**
 * Shared helpers of the client tests: the server under test (from the environment `scripts/ts-client.sh`
 * sets), HS256 tokens, client factories and awaiting frames with a deadline.
 */

import { createHmac, randomUUID } from "node:crypto";
import WebSocket from "ws";

import { ChatSocket, RestClient, type ChatSocketOptions, type ServerMessage } from "@chatbox/client";

function env(name: string): string {
  const value = process.env[name];
  if (!value) {
    throw new Error(`${name} is not set: run the tests through scripts/ts-client.sh`);
  }
  return value;
}

/** Base URL of the main server, prefix included (e.g. `http://127.0.0.1:40000/chatbox`). */
export const BASE_URL = env("CHATBOX_TEST_URL");
/** Base URL of the second server (public rate limit 2, metrics closed to loopback). */
export const STRICT_URL = env("CHATBOX_TEST_STRICT_URL");
const SECRET = env("CHATBOX_TEST_JWT_SECRET");

/** The WebSocket URL of the main server. */
export const WS_URL = `${BASE_URL.replace(/^http/, "ws")}/ws`;

function b64url(data: string | Buffer): string {
  return Buffer.from(data).toString("base64url");
}

/** An HS256 JWT with the server's claims (`user_id`, `roles`, `name`). */
export function mintToken(userId: string, roles: string[] = ["user"], name?: string): string {
  const header = b64url(JSON.stringify({ alg: "HS256", typ: "JWT" }));
  const claims = b64url(JSON.stringify({ user_id: userId, roles, ...(name ? { name } : {}) }));
  const signature = createHmac("sha256", SECRET).update(`${header}.${claims}`).digest("base64url");
  return `${header}.${claims}.${signature}`;
}

/** A fresh user id, so tests do not share sessions. */
export function newUser(prefix = "user"): string {
  return `${prefix}-${randomUUID().slice(0, 8)}`;
}

/** A REST client of the main server with `token`. */
export function rest(token?: string, baseUrl = BASE_URL): RestClient {
  return new RestClient({ baseUrl, token: () => token });
}

/** A chat socket of the main server with `token` (fast reconnects, the `ws` package's constructor). */
export function socket(token: string, options: Partial<ChatSocketOptions> = {}): ChatSocket {
  return new ChatSocket({
    url: WS_URL,
    token,
    WebSocket,
    backoffInitialMs: 50,
    backoffMaxMs: 500,
    heartbeatMs: 1000,
    ...options,
  });
}

/** Every frame a socket receives, in order, with a way to await one. */
export class Recorder {
  readonly frames: ServerMessage[] = [];
  private waiters: { match: (f: ServerMessage) => boolean; resolve: (f: ServerMessage) => void }[] = [];

  /** Starts recording `client`'s frames. */
  constructor(client: ChatSocket) {
    client.onAny((frame) => {
      this.frames.push(frame);
      this.waiters = this.waiters.filter((w) => {
        if (w.match(frame)) {
          w.resolve(frame);
          return false;
        }
        return true;
      });
    });
  }

  /** The first frame (recorded already or to come) matching `match`; rejects after `ms`. */
  next(match: (f: ServerMessage) => boolean, what: string, ms = 15000): Promise<ServerMessage> {
    const found = this.frames.find(match);
    if (found) {
      return Promise.resolve(found);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`no ${what} within ${ms} ms`)), ms);
      this.waiters.push({
        match,
        resolve: (f) => {
          clearTimeout(timer);
          resolve(f);
        },
      });
    });
  }

  /** Frames of `type`. */
  of<T extends ServerMessage["type"]>(type: T): Extract<ServerMessage, { type: T }>[] {
    return this.frames.filter((f) => f.type === type) as Extract<ServerMessage, { type: T }>[];
  }
}

/** Whether `f` is the final `ai_response` of a turn. */
export function isDone(f: ServerMessage): boolean {
  return f.type === "ai_response" && f.metadata?.done === "true";
}

/** Resolves once `check()` is true; polls every 20 ms and rejects after `ms`. */
export async function eventually(check: () => boolean, what: string, ms = 15000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`not true within ${ms} ms: ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}
