/**
 * Where the server is: the pages are served under the path prefix (`{P}/` and `{P}/admin/`) and their
 * scripts from `{P}/assets/`, so the script's own address gives the prefix whatever it is configured to.
 * @module
 */

/** `{origin}{P}/`, from the address of the running script (`{P}/assets/<page>.js`). */
export function consoleBase(scriptUrl: string): URL {
  return new URL("../", scriptUrl);
}

/** The HTTP API base (`{origin}{P}`, no trailing slash), as `RestClient` wants it. */
export function apiBase(base: URL): string {
  return base.href.replace(/\/+$/, "");
}

/** The WebSocket endpoint (`ws:`/`wss:` `{host}{P}/ws`), as `ChatSocket` wants it. */
export function socketUrl(base: URL): string {
  const url = new URL("ws", base);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}
