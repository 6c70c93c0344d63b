/**
 * The connection status line: what the socket is doing (connecting, connected, reconnecting, closed), in a
 * polite live region so screen readers announce changes.
 * @module
 */

import type { ChatSocket, ConnectionState } from "@chatbox/client";
import { byId, replace } from "./dom.js";

const WORDS: Record<ConnectionState, string> = {
  idle: "Not connected",
  connecting: "Connecting…",
  open: "Connected",
  reconnecting: "Connection lost, reconnecting…",
  closed: "Disconnected",
};

/** Shows `socket`'s state in `#status` (with `data-state` for styling and tests). */
export function showStatus(socket: ChatSocket): void {
  const line = byId("status");
  const show = (state: ConnectionState) => {
    line.dataset.state = state;
    replace(line, WORDS[state]);
  };
  show(socket.state);
  socket.onState(show);
}
