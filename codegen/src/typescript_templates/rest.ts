
/**
 * The REST transport under `RestClient`: fetch, the token provider and `ApiError`. Hand-written, copied
 * unchanged by the spec compiler.
 * @module
 */

/** Supplies the JWT for a request or a connection; may refresh it (called before each use). */
export type TokenProvider = () => string | null | undefined | Promise<string | null | undefined>;

/** The subset of `fetch` the client needs (the global one in browsers and Node 20). */
export type FetchLike = (input: string, init: { method: string; headers: Record<string, string> }) => Promise<{
  status: number;
  statusText: string;
  headers: { get(name: string): string | null };
  text(): Promise<string>;
}>;

/** Options of `RestClient`. */
export interface RestClientOptions {
  /** Base URL including the path prefix, e.g. `http://localhost:8080/chatbox` (a trailing `/` is ignored). */
  baseUrl: string;
  /** The JWT (a string or a provider called before each protected request). */
  token?: string | TokenProvider;
  /** A `fetch` implementation; defaults to the global `fetch`. */
  fetch?: FetchLike;
  /** Extra headers sent with every request. */
  headers?: Record<string, string>;
}

/** How a response body is read. */
export type BodyKind = "json" | "text" | "empty";

/**
 * A failed request: an error status (`status` >= 400), or `status` 0 when no answer arrived (network failure).
 * `code` is the machine-readable code of the body (`ErrorBody.code`, e.g. `NOT_FOUND`; `rate_limit_exceeded`
 * for a 429 `RateLimitError`), or null when the body has none.
 */
export class ApiError extends Error {
  /** The HTTP status (0: no answer). */
  readonly status: number;
  /** The error code of the body, if any (see `HttpErrorCode`). */
  readonly code: string | null;
  /** The parsed body (JSON value or text), if any. */
  readonly body: unknown;
  /** Milliseconds to wait before retrying (429: `retry_after_ms`, else `Retry-After` seconds). */
  readonly retryAfterMs: number | null;
  /** `ErrorBody.request_id`, to quote to support. */
  readonly requestId: string | null;

  /** An error for `status` with `message`. */
  constructor(
    status: number,
    code: string | null,
    message: string,
    body: unknown,
    retryAfterMs: number | null = null,
    requestId: string | null = null,
  ) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.body = body;
    this.retryAfterMs = retryAfterMs;
    this.requestId = requestId;
  }
}

function field(body: unknown, name: string): unknown {
  return typeof body === "object" && body !== null ? (body as Record<string, unknown>)[name] : undefined;
}

function text(value: unknown): string | null {
  return typeof value === "string" ? value : null;
}

/** Sends requests for `RestClient`; usable directly for calls the spec does not describe. */
export class RestTransport {
  private readonly baseUrl: string;
  private readonly token: TokenProvider;
  private readonly fetchFn: FetchLike;
  private readonly headers: Record<string, string>;

  /** A transport with the options of `RestClient`. */
  constructor(options: RestClientOptions) {
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    const token = options.token;
    this.token = typeof token === "function" ? token : () => token;
    const globalFetch = (globalThis as { fetch?: FetchLike }).fetch;
    // The global fetch is called through a wrapper: browsers refuse `fetch` called as a method of another
    // object ("Illegal invocation").
    const fetchFn = options.fetch ?? (globalFetch ? (input: string, init: Parameters<FetchLike>[1]) => globalFetch(input, init) : undefined);
    if (!fetchFn) {
      throw new Error("no fetch: pass options.fetch");
    }
    this.fetchFn = fetchFn;
    this.headers = { ...(options.headers ?? {}) };
  }

  /**
   * Calls `method path` (relative to the base URL) with the query parameters that are set, the token when
   * `auth`, and reads the body as `kinds[status]` says (JSON by content type otherwise). Resolves with the body
   * of a 2xx answer, rejects with `ApiError` otherwise.
   */
  async request<T>(
    method: string,
    path: string,
    query: object | undefined,
    auth: boolean,
    kinds: Record<number, BodyKind>,
  ): Promise<T> {
    let url = this.baseUrl + path;
    const params: string[] = [];
    for (const [k, v] of Object.entries(query ?? {})) {
      if (v !== undefined && v !== null) {
        params.push(`${encodeURIComponent(k)}=${encodeURIComponent(String(v))}`);
      }
    }
    if (params.length > 0) {
      url += `?${params.join("&")}`;
    }
    const headers: Record<string, string> = { accept: "application/json, text/plain", ...this.headers };
    if (auth) {
      const token = await this.token();
      if (token) {
        headers.authorization = `Bearer ${token}`;
      }
    }
    let response: Awaited<ReturnType<FetchLike>>;
    try {
      response = await this.fetchFn(url, { method, headers });
    } catch (e) {
      throw new ApiError(0, null, `request failed: ${e instanceof Error ? e.message : String(e)}`, undefined);
    }
    const raw = await response.text();
    const contentType = response.headers.get("content-type") ?? "";
    const kind: BodyKind = kinds[response.status] ?? (contentType.includes("json") ? "json" : "text");
    let body: unknown = undefined;
    if (kind === "json" || (kind !== "empty" && contentType.includes("json"))) {
      try {
        body = raw.length > 0 ? JSON.parse(raw) : undefined;
      } catch {
        body = raw;
      }
    } else if (kind === "text") {
      body = raw;
    }
    if (response.status >= 200 && response.status < 300) {
      return body as T;
    }
    const code = text(field(body, "code")) ?? (field(body, "error") === "rate_limit_exceeded" ? "rate_limit_exceeded" : null);
    const message =
      (code === "rate_limit_exceeded" ? text(field(body, "message")) : text(field(body, "error"))) ??
      (typeof body === "string" && body.length > 0 ? body : null) ??
      `${response.status} ${response.statusText}`;
    const retryMs = field(body, "retry_after_ms");
    const retryHeader = Number(response.headers.get("retry-after"));
    const retryAfterMs =
      typeof retryMs === "number" ? retryMs : Number.isFinite(retryHeader) && retryHeader > 0 ? retryHeader * 1000 : null;
    throw new ApiError(response.status, code, message, body, retryAfterMs, text(field(body, "request_id")));
  }
}
