/**
 * Taking over a session: a connection of its own (`ChatSocket`) that joins the session with `admin_join`
 * (the server replays the conversation, then sends it live), shows the user's messages and the AI's
 * streamed answers, relays typing both ways, sends as the administrator, leaves (the AI answers again),
 * takes the session over from another administrator, hands it to a named one, or ends the session. An ended session opens read-only
 * (`view`): its stored conversation, no connection.
 * @module
 */

import { ChatSocket, type RestClient, type ServerMessage } from "@chatbox/client";
import { wireComposer } from "../lib/composer.js";
import { Conversation } from "../lib/conversation.js";
import { byId, replace } from "../lib/dom.js";
import { refusal } from "../lib/signin.js";

/** A frame with the optional fields the view reads. */
type Frame = ServerMessage & { session_id?: string; content?: string; metadata?: Record<string, string>; error?: { code?: string; message?: string } };

/** How long after the last key press the administrator counts as no longer typing. */
const TYPING_IDLE_MS = 3000;

/** What the takeover view needs of the page. */
export interface TakeoverContext {
  rest: RestClient;
  socketUrl: string;
  token: () => string | null;
  adminId: string;
  /** Called with the session when the view's assistance of it changes (the lists show it). */
  changed: (sessionId: string) => void;
}

/** The takeover panel (`#takeover`); one session at a time. */
export class Takeover {
  private socket: ChatSocket | null = null;
  private session: { id: string; user: string } | null = null;
  private joined = false;
  /** `client_msg_id`s of the messages sent from this view (shown when sent). */
  private readonly sentIds = new Set<string>();
  private typingTimer: ReturnType<typeof setTimeout> | null = null;
  private readonly conversation: Conversation;
  private readonly input = byId<HTMLTextAreaElement>("admin-input");

  constructor(private readonly context: TakeoverContext) {
    this.conversation = new Conversation(byId("takeover-messages"), byId("takeover-typing"), {
      user: "User",
      ai: "AI",
      admin: (name) => (name ? `Admin ${name}` : "Admin"),
    });
    wireComposer(byId("admin-composer"), this.input, () => this.sendInput(), () => this.typed());
    byId("leave").addEventListener("click", () => this.leave());
    byId("transfer").addEventListener("click", () => void this.transfer());
    byId("end-session").addEventListener("click", () => void this.end());
    byId("hand-over").addEventListener("submit", (event) => {
      event.preventDefault();
      void this.handOver();
    });
    byId("close-takeover").addEventListener("click", () => this.close());
  }

  /** Opens the panel on `sessionId` (of `userId`) and joins it. */
  open(sessionId: string, userId: string, title: string): void {
    this.show(sessionId, userId, title, true);
    this.note("Joining…");
    const socket = new ChatSocket({ url: this.context.socketUrl, token: this.context.token, WebSocket });
    this.socket = socket;
    socket.onAnswer((answer) => {
      if (answer.session_id === sessionId) this.conversation.answer(answer);
    });
    socket.onAny((frame) => this.receive(frame as Frame));
    socket.onState((state) => {
      // Every (re)connection joins again, replaying from the last event seen: no gap, no repeat.
      if (state === "open") this.join();
      if (state === "reconnecting") this.note("Connection lost, reconnecting…");
    });
    socket.connect().catch(() => this.note("Cannot connect; retrying…"));
    this.input.focus();
  }

  /** Opens the panel read-only on the stored conversation of `sessionId` (an ended session). */
  async view(sessionId: string, userId: string, title: string): Promise<void> {
    this.show(sessionId, userId, title, false);
    this.note("Loading…");
    try {
      const detail = await this.context.rest.adminGetSession(sessionId);
      if (this.session?.id !== sessionId) return;
      this.conversation.history(detail.messages);
      this.note(detail.end_time ? `This session ended at ${new Date(detail.end_time).toLocaleString()}.` : "");
    } catch (error) {
      this.note(refusal(error));
    }
  }

  /** Shows the panel for one session, with the live controls or without them. */
  private show(sessionId: string, userId: string, title: string, live: boolean): void {
    this.close();
    this.session = { id: sessionId, user: userId };
    replace(byId("takeover-title"), `${title || "(unnamed)"} · user ${userId}`);
    for (const id of ["leave", "end-session", "hand-over", "admin-composer"]) byId(id).hidden = !live;
    byId("takeover").hidden = false;
    this.conversation.clear();
  }

  /** Leaves the panel (and the connection); a session still assisted stays assisted. */
  close(): void {
    this.stopTyping();
    this.socket?.close();
    this.socket = null;
    this.session = null;
    this.joined = false;
    byId("takeover").hidden = true;
  }

  private join(): void {
    if (!this.socket || !this.session) return;
    const id = this.session.id;
    this.socket.send({ type: "admin_join", sender: "admin", session_id: id, last_seq: this.socket.lastSeq(id) });
  }

  private leave(): void {
    if (!this.socket || !this.session) return;
    this.stopTyping();
    this.socket.send({ type: "admin_leave", sender: "admin", session_id: this.session.id });
  }

  private async transfer(): Promise<void> {
    if (!this.session) return;
    try {
      await this.context.rest.adminTransferTakeover(this.session.id);
      byId("transfer").hidden = true;
      this.join();
    } catch (error) {
      this.note(refusal(error));
    }
  }

  /** Hands the session to the administrator named in `#hand-to` (audited as a transfer). */
  private async handOver(): Promise<void> {
    const session = this.session;
    const to = byId<HTMLInputElement>("hand-to").value.trim();
    if (!session || to === "") return;
    this.stopTyping();
    try {
      await this.context.rest.adminTransferTakeover(session.id, { to_admin_id: to });
      byId<HTMLInputElement>("hand-to").value = "";
      this.note(`Handed to ${to}.`);
      this.context.changed(session.id);
    } catch (error) {
      this.note(refusal(error));
    }
  }

  /** Ends the session for its user (audited); every connection of the session is told. */
  private async end(): Promise<void> {
    const session = this.session;
    if (!session) return;
    this.stopTyping();
    try {
      await this.context.rest.adminEndSession(session.id);
      this.joined = false;
      this.note("The session has ended.");
      this.context.changed(session.id);
    } catch (error) {
      this.note(refusal(error));
    }
  }

  private sendInput(): void {
    const text = this.input.value.trim();
    if (!this.socket || !this.session || text === "") return;
    if (!this.joined) {
      this.note("Take the session over before writing.");
      return;
    }
    this.input.value = "";
    this.stopTyping();
    // The server sends the message to every other connection of the session, not back to this one.
    const id = this.socket.send({ type: "admin_message", sender: "admin", session_id: this.session.id, content: text });
    if (id !== undefined) this.sentIds.add(id);
    this.conversation.add("admin", text, "You (admin)", { id });
  }

  private typed(): void {
    if (!this.socket || !this.session || !this.joined) return;
    if (this.typingTimer === null) {
      this.socket.send({ type: "typing_indicator", session_id: this.session.id, metadata: { typing: "true" } });
    } else {
      clearTimeout(this.typingTimer);
    }
    this.typingTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  private stopTyping(): void {
    if (this.typingTimer === null) return;
    clearTimeout(this.typingTimer);
    this.typingTimer = null;
    if (this.socket && this.session) {
      this.socket.send({ type: "typing_indicator", session_id: this.session.id, metadata: { typing: "false" } });
    }
  }

  private note(text: string): void {
    replace(byId("takeover-note"), text);
  }

  private receive(frame: Frame): void {
    const session = this.session;
    if (!session || (frame.session_id !== undefined && frame.session_id !== session.id)) return;
    const meta = frame.metadata ?? {};
    const mine = meta.admin_id === this.context.adminId;
    switch (frame.type) {
      case "user_message":
        this.conversation.typing(null);
        this.conversation.add("user", frame.content ?? "");
        break;
      case "admin_message": {
        const id = (frame as Frame & { client_msg_id?: string }).client_msg_id;
        if (id !== undefined && this.sentIds.has(id)) break;
        this.conversation.add("admin", frame.content ?? "", mine ? "You (admin, another device)" : `Admin ${meta.admin_name ?? ""}`);
        break;
      }
      case "admin_join":
        this.conversation.add("system", frame.content ?? "");
        if (mine) {
          this.joined = true;
          byId("transfer").hidden = true;
          this.note("You are assisting this session: the AI waits while you are here.");
          this.context.changed(session.id);
        }
        break;
      case "admin_leave":
        this.conversation.add("system", frame.content ?? "");
        if (mine) {
          this.joined = false;
          // A hand-over by this admin has already said so.
          if (meta.reason !== "transfer") this.note("You left: the AI answers the user again.");
          else if (!(byId("takeover-note").textContent ?? "").startsWith("Handed to")) this.note("Another administrator took this session over from you.");
          this.context.changed(session.id);
        }
        break;
      case "typing_indicator":
        if (frame.sender === "user") this.conversation.typing(meta.typing === "true" ? `User ${session.user}` : null);
        break;
      case "notification":
        if (meta.event === "session_ended") this.note("The session has ended.");
        this.conversation.add("system", frame.content ?? "");
        break;
      case "connection_status":
        if (frame.content) this.conversation.add("system", frame.content);
        break;
      case "error":
        this.error(frame);
        break;
      default:
        break;
    }
  }

  private error(frame: Frame): void {
    const text = frame.error?.message ?? "Something went wrong";
    if (frame.error?.code === "SESSION_ALREADY_ASSISTED") {
      byId("transfer").hidden = false;
      this.note(`${text}. You can take it over from them.`);
      return;
    }
    this.conversation.add("error", text);
  }
}
