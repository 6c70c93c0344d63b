
/**
 * `@chatbox/client`: typed clients of the chatbox HTTP API (`RestClient`) and WebSocket protocol
 * (`ChatSocket`). Wire types live in the `ws` and `http` namespaces (both documents define `Sender` and
 * `Metadata`).
 * @module
 */

export * as ws from "./ws.js";
export * as http from "./http.js";
export { RestClient, OPERATION_IDS } from "./http.js";
export { ApiError, RestTransport, type BodyKind, type FetchLike, type RestClientOptions, type TokenProvider } from "./rest.js";
export {
  ChatSocket,
  type Answer,
  type ChatSocketOptions,
  type ConnectionState,
  type WebSocketConstructor,
} from "./socket.js";
export type {
  ClientMessage,
  ClientMessageMap,
  ClientMessageType,
  ServerMessage,
  ServerMessageMap,
  ServerMessageType,
  ErrorCode,
} from "./ws.js";
export type { HttpErrorCode } from "./http.js";
