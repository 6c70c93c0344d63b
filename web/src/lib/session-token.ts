/**
 * Sign-in without leaking the token: a JWT handed over in the URL fragment (`#token=...`, which browsers
 * never send to the server) is moved into `sessionStorage` and removed from the address bar at once; a
 * pasted one goes to the same place. The claims are read (not verified: the server does that) to greet the
 * user and to say in plain words when the token has expired.
 * @module
 */

/** The claims the console reads. */
export interface Claims {
  user_id?: string;
  name?: string;
  roles?: string[];
  exp?: number;
}

/** A token that looks usable, with its claims, or the reason it is not. */
export type Inspected = { ok: true; token: string; claims: Claims } | { ok: false; problem: string };

/** Takes `#token=...` out of the address (history.replaceState, no reload); returns it, if there was one. */
export function takeFragmentToken(): string | null {
  const params = new URLSearchParams(location.hash.slice(1));
  const token = params.get("token");
  if (token === null) return null;
  params.delete("token");
  const rest = params.toString();
  history.replaceState(history.state, "", location.pathname + location.search + (rest ? `#${rest}` : ""));
  return token.trim();
}

/** Where a page keeps its token (one key per page, so a user and an admin can sign in side by side). */
export class TokenStore {
  constructor(private readonly key: string) {}

  /** The stored token, if any. */
  get(): string | null {
    return sessionStorage.getItem(this.key);
  }

  /** Keeps `token` for this tab. */
  set(token: string): void {
    sessionStorage.setItem(this.key, token);
  }

  /** Forgets the token (sign out). */
  clear(): void {
    sessionStorage.removeItem(this.key);
  }

  /** Forgets the token and keeps `problem` for the sign-in form shown after the page reloads. */
  reject(problem: string): void {
    this.clear();
    sessionStorage.setItem(`${this.key}.problem`, problem);
  }

  /** The problem kept by `reject`, once. */
  takeProblem(): string | null {
    const problem = sessionStorage.getItem(`${this.key}.problem`);
    sessionStorage.removeItem(`${this.key}.problem`);
    return problem;
  }
}

/** Decodes a base64url JSON segment. */
function decodeSegment(segment: string): unknown {
  const base64 = segment.replace(/-/g, "+").replace(/_/g, "/").padEnd(Math.ceil(segment.length / 4) * 4, "=");
  const bytes = Uint8Array.from(atob(base64), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

/** Reads `token` as a JWT: its claims, or why it cannot be used (malformed, expired). */
export function inspect(raw: string, now: number = Date.now()): Inspected {
  const token = raw.trim();
  const parts = token.split(".");
  if (parts.length !== 3) return { ok: false, problem: "This is not a token: a JWT has three parts separated by dots." };
  let claims: Claims;
  try {
    claims = decodeSegment(parts[1]) as Claims;
  } catch {
    return { ok: false, problem: "This token cannot be read: its claims are not valid JSON." };
  }
  if (typeof claims !== "object" || claims === null) {
    return { ok: false, problem: "This token cannot be read: it carries no claims." };
  }
  if (typeof claims.exp === "number" && claims.exp * 1000 <= now) {
    const when = new Date(claims.exp * 1000).toLocaleString();
    return { ok: false, problem: `This token expired on ${when}. Ask for a new one and sign in again.` };
  }
  return { ok: true, token, claims };
}

/** Whether the claims grant administrator rights (roles `admin` or `chat_admin`). */
export function isAdmin(claims: Claims): boolean {
  return (claims.roles ?? []).some((r) => r === "admin" || r === "chat_admin");
}
