/**
 * The chat page (`{P}/`): sign-in, the live conversation over `ChatSocket` (streamed answers, the user's
 * other devices, administrators, resume after a cut), the session list with history, model choice, help,
 * share links, cancel and end. A `#share=<token>` address shows a shared conversation read-only, signed out.
 * @module
 */

import { ApiError, ChatSocket, RestClient, type ServerMessage, type http } from "@chatbox/client";
import { wireComposer } from "../lib/composer.js";
import { Conversation } from "../lib/conversation.js";
import { byId, h, replace, time } from "../lib/dom.js";
import { apiBase, consoleBase, socketUrl } from "../lib/endpoints.js";
import { refusal, showSignedIn, signIn, type SignedIn } from "../lib/signin.js";
import { TokenStore } from "../lib/session-token.js";
import { showStatus } from "../lib/status.js";

const base = consoleBase(import.meta.url);
const store = new TokenStore("chatbox.chat.token");

/** A frame with the optional fields the page reads. */
type Frame = ServerMessage & { session_id?: string; content?: string; client_msg_id?: string; metadata?: Record<string, string> };

/** How long after the last key press the user counts as no longer typing. */
const TYPING_IDLE_MS = 3000;

/** The signed-in chat. */
class ChatPage {
  private readonly rest: RestClient;
  private readonly socket: ChatSocket;
  private readonly conversation: Conversation;
  private readonly input = byId<HTMLTextAreaElement>("input");
  private readonly models = byId<HTMLSelectElement>("model");
  /** The session shown when it is not the live one (a past session's history). */
  private viewing: string | null = null;
  private loadedSession: string | null = null;
  private sessions: http.SessionMetadata[] = [];
  private ended = false;
  private assistedBy: string | null = null;
  /** Texts of the messages sent from this page, by `client_msg_id` (for retry after an error). */
  private sent = new Map<string, string>();
  private typingSince: number | null = null;
  /** Counts share links created or revoked here (see `refreshSessions`). */
  private shareChanges = 0;
  private typingTimer: ReturnType<typeof setTimeout> | null = null;

  constructor(private readonly me: SignedIn) {
    this.rest = new RestClient({ baseUrl: apiBase(base), token: () => store.get() });
    this.socket = new ChatSocket({ url: socketUrl(base), token: () => store.get(), WebSocket });
    this.conversation = new Conversation(byId("messages"), byId("typing"), {
      user: "You",
      ai: "AI",
      admin: (name) => `Admin ${name ?? ""}`.trim(),
    });
  }

  start(): void {
    showSignedIn(this.me, store, () => this.socket.close());
    showStatus(this.socket);
    this.socket.onAnswer((answer) => {
      if (this.viewing !== null || answer.session_id !== this.socket.sessionId) return;
      this.conversation.answer(answer);
      this.busy(!answer.done);
      // The list shows the session's name and figures once its first turn is stored.
      if (answer.done) void this.refreshSessions();
    });
    this.socket.onAny((frame) => this.receive(frame as Frame));
    this.socket.onState((state) => {
      if (state === "open" && this.loadedSession !== this.socket.sessionId) void this.loadLive();
    });
    this.socket.connect().catch(() => void this.checkToken());
    this.wire();
  }

  /** After a refused connection: a token the server refuses sends the user back to sign-in, saying why. */
  private async checkToken(): Promise<void> {
    try {
      await this.rest.listSessions();
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) {
        this.socket.close();
        store.reject(refusal(error));
        location.reload();
      }
    }
  }

  private wire(): void {
    wireComposer(byId("composer"), this.input, () => this.sendInput(), () => this.typed());
    byId("cancel").addEventListener("click", () => this.socket.send({ type: "cancel" }));
    this.models.addEventListener("change", () => this.socket.send({ type: "model_select", model_id: this.models.value }));
    byId("help").addEventListener("click", () => this.socket.send({ type: "help_request" }));
    byId("end").addEventListener("click", () => void this.endSession());
    byId("new-chat").addEventListener("click", () => this.newChat());
    byId("share").addEventListener("click", () => void this.share());
    byId("share-copy").addEventListener("click", () => void this.copyShare());
    byId("share-revoke").addEventListener("click", () => void this.revokeShare());
  }

  /** Shows the live session: its stored history, then the live frames. */
  private async loadLive(): Promise<void> {
    const session = this.socket.sessionId;
    if (session === null) return;
    this.loadedSession = session;
    this.viewing = null;
    byId("viewing").hidden = true;
    this.ended = false;
    this.fillModels();
    this.conversation.clear();
    await this.refreshSessions();
    // A session only reserved at connect is not stored yet: it has no history to ask for.
    if (this.sessions.some((s) => s.id === session)) {
      try {
        const detail = await this.rest.getSession(session);
        if (this.socket.sessionId !== session || this.viewing !== null) return;
        this.conversation.history(detail.messages);
        if (detail.model_id) this.models.value = detail.model_id;
        this.ended = detail.end_time !== undefined;
      } catch (error) {
        this.conversation.add("error", refusal(error));
      }
    }
    this.composerState();
  }

  private fillModels(): void {
    const current = this.models.value;
    replace(this.models, ...(this.socket.models ?? []).map((m) => h("option", { value: m.id }, m.name || m.id)));
    if (current) this.models.value = current;
  }

  private async refreshSessions(): Promise<void> {
    const shareChanges = this.shareChanges;
    try {
      this.sessions = (await this.rest.listSessions()).sessions;
    } catch {
      return;
    }
    const list = byId("sessions");
    replace(
      list,
      ...this.sessions.map((s) => {
        const live = s.id === this.socket.sessionId;
        const shown = this.viewing === null ? live : s.id === this.viewing;
        const button = h(
          "button",
          { type: "button", "aria-current": shown ? "true" : undefined, "data-session": s.id },
          h("span", { class: "session-name" }, s.name || "(unnamed)"),
          h("span", { class: "session-meta" }, `${s.is_active ? "active" : "ended"} · ${s.message_count} messages · ${time(s.last_activity)}`),
        );
        button.addEventListener("click", () => void (live ? this.loadLive() : this.view(s)));
        return h("li", {}, button);
      }),
    );
    const current = this.sessions.find((s) => s.id === this.socket.sessionId);
    if (current?.assisting_admin_name && this.assistedBy === null) this.assist(current.assisting_admin_name);
    // A list read before the share link was created or revoked here does not undo that.
    if (shareChanges === this.shareChanges) this.showShare(current?.share_token);
  }

  /** Shows a past session's history, read-only. */
  private async view(session: http.SessionMetadata): Promise<void> {
    this.viewing = session.id;
    this.conversation.clear();
    const banner = byId("viewing");
    replace(banner, `Viewing “${session.name || "(unnamed)"}” (${session.is_active ? "active" : "ended"}). `, h("button", { type: "button", id: "back-live" }, "Back to the live chat"));
    banner.querySelector("button")?.addEventListener("click", () => void this.loadLive());
    banner.hidden = false;
    try {
      this.conversation.history((await this.rest.getSession(session.id)).messages);
    } catch (error) {
      this.conversation.add("error", refusal(error));
    }
    this.composerState();
    await this.refreshSessions();
  }

  private sendInput(): void {
    const text = this.input.value.trim();
    if (text === "" || this.viewing !== null || this.ended) return;
    this.input.value = "";
    this.stopTyping();
    this.post(text);
  }

  private post(text: string, retryId?: string): void {
    const id = this.socket.send({ type: "user_message", content: text, client_msg_id: retryId });
    if (id !== undefined) this.sent.set(id, text);
    if (retryId === undefined) this.conversation.add("user", text, undefined, { id });
  }

  /** Typing is relayed only to an assisting administrator, so it is sent only then. */
  private typed(): void {
    if (this.assistedBy === null) return;
    const now = Date.now();
    if (this.typingSince === null) {
      this.typingSince = now;
      this.socket.send({ type: "typing_indicator", metadata: { typing: "true" } });
    }
    if (this.typingTimer !== null) clearTimeout(this.typingTimer);
    this.typingTimer = setTimeout(() => this.stopTyping(), TYPING_IDLE_MS);
  }

  private stopTyping(): void {
    if (this.typingTimer !== null) clearTimeout(this.typingTimer);
    this.typingTimer = null;
    if (this.typingSince !== null) {
      this.typingSince = null;
      this.socket.send({ type: "typing_indicator", metadata: { typing: "false" } });
    }
  }

  private receive(frame: Frame): void {
    if (frame.session_id !== undefined && frame.session_id !== this.socket.sessionId) return;
    const live = this.viewing === null;
    const meta = frame.metadata ?? {};
    switch (frame.type) {
      case "connection_status":
        if (meta.resync === "true") void this.loadLive();
        else if (frame.session_id !== this.loadedSession && meta.resumed !== "true" && frame.sender === "system") void this.loadLive();
        if (frame.model_id) this.models.value = frame.model_id;
        if (frame.content && live) this.conversation.add("system", frame.content);
        break;
      case "loading":
        if (live) this.busy(true);
        break;
      case "user_message":
        if (live && meta.duplicate !== "true") this.conversation.add("user", frame.content ?? "", "You (another device)");
        break;
      case "admin_join":
        this.assist(meta.admin_name ?? "");
        if (live) this.conversation.add("system", frame.content ?? "An administrator joined");
        break;
      case "admin_leave":
        this.assist(null);
        if (live) this.conversation.add("system", frame.content ?? "The administrator left");
        break;
      case "admin_message":
        this.conversation.typing(null);
        if (live) this.conversation.add("admin", frame.content ?? "", `Admin ${meta.admin_name ?? ""}`.trim());
        break;
      case "typing_indicator":
        if (frame.sender === "admin") {
          this.conversation.typing(meta.typing === "true" ? `Admin ${meta.admin_name ?? this.assistedBy ?? ""}`.trim() : null);
        }
        break;
      case "notification":
        if (meta.event === "session_ended") {
          this.ended = true;
          this.composerState();
        }
        if (live) this.conversation.add("system", frame.content ?? "");
        break;
      case "error":
        this.failed(frame);
        break;
      default:
        break;
    }
  }

  /** An error frame, inline; a refused message gets a Retry (same `client_msg_id`, answered at most once). */
  private failed(frame: Frame): void {
    const error = (frame as Frame & { error?: { message?: string; code?: string } }).error;
    const text = error?.message ?? frame.content ?? "Something went wrong";
    const id = frame.client_msg_id;
    const original = id !== undefined ? this.sent.get(id) : undefined;
    this.busy(false);
    this.conversation.add("error", text, undefined, {
      id,
      retry: original !== undefined && id !== undefined ? () => this.post(original, id) : undefined,
    });
  }

  private assist(name: string | null): void {
    this.assistedBy = name;
    const banner = byId("assist");
    replace(banner, name === null ? "" : `Admin ${name} is helping you in this chat. The AI waits until they leave.`);
    banner.hidden = name === null;
    if (name === null) this.conversation.typing(null);
  }

  private busy(answering: boolean): void {
    byId("cancel").hidden = !answering;
  }

  private composerState(): void {
    const locked = this.viewing !== null || this.ended;
    this.input.disabled = locked;
    byId<HTMLButtonElement>("send").disabled = locked;
    this.input.placeholder = this.ended
      ? "This session has ended. Start a new chat to continue."
      : this.viewing !== null
        ? "Go back to the live chat to write."
        : "Write a message (Enter sends, Shift+Enter adds a line)";
  }

  private async endSession(): Promise<void> {
    const session = this.socket.sessionId;
    if (session === null) return;
    try {
      await this.rest.endSession(session);
      this.ended = true;
      this.composerState();
      await this.refreshSessions();
    } catch (error) {
      this.conversation.add("error", refusal(error));
    }
  }

  /** A new conversation: the current one ends first (a user has one active session). */
  private newChat(): void {
    // Nothing can be sent until the new conversation is ready.
    this.input.disabled = true;
    byId<HTMLButtonElement>("send").disabled = true;
    void (async () => {
      await this.refreshSessions();
      if (!this.ended && this.sessions.some((s) => s.id === this.socket.sessionId && s.is_active)) await this.endSession();
      const id = this.socket.startNewSession();
      this.loadedSession = id;
      this.viewing = null;
      this.ended = false;
      this.assist(null);
      byId("viewing").hidden = true;
      this.conversation.clear();
      this.showShare(undefined);
      this.composerState();
      this.input.focus();
    })();
  }

  private shareLink(token: string): string {
    return `${base.href}#share=${encodeURIComponent(token)}`;
  }

  private showShare(token: string | undefined, changed = false): void {
    if (changed) this.shareChanges += 1;
    const box = byId("share-box");
    box.hidden = token === undefined;
    byId<HTMLInputElement>("share-link").value = token === undefined ? "" : this.shareLink(token);
  }

  private async share(): Promise<void> {
    const session = this.socket.sessionId;
    if (session === null) return;
    try {
      this.showShare((await this.rest.shareSession(session)).share_token, true);
      replace(byId("share-note"), "Anyone with this link can read this conversation.");
    } catch (error) {
      const text = error instanceof ApiError && error.status === 404 ? "Send a first message before sharing." : refusal(error);
      this.conversation.add("error", text);
    }
  }

  private async copyShare(): Promise<void> {
    const field = byId<HTMLInputElement>("share-link");
    try {
      await navigator.clipboard.writeText(field.value);
      replace(byId("share-note"), "Copied.");
    } catch {
      field.select();
      replace(byId("share-note"), "Selected: press Ctrl+C to copy.");
    }
  }

  private async revokeShare(): Promise<void> {
    const session = this.socket.sessionId;
    if (session === null) return;
    try {
      await this.rest.revokeShare(session);
      this.showShare(undefined, true);
    } catch (error) {
      this.conversation.add("error", refusal(error));
    }
  }
}

/** `#share=<token>`: the shared conversation, read-only, without signing in. */
async function showShared(token: string): Promise<void> {
  const section = byId("shared");
  section.hidden = false;
  replace(byId("status"), "Read-only");
  const view = new Conversation(byId("shared-messages"), h("p"), { user: "User", ai: "AI", admin: (n) => `Admin ${n ?? ""}`.trim() });
  try {
    const shared = await new RestClient({ baseUrl: apiBase(base) }).getSharedSession(token);
    replace(byId("shared-title"), `Shared conversation: ${shared.name || "(unnamed)"}`);
    view.history(shared.messages);
  } catch (error) {
    const text = error instanceof ApiError && error.status === 404 ? "This share link does not exist or was revoked." : refusal(error);
    view.add("error", text);
  }
}

async function main(): Promise<void> {
  const share = new URLSearchParams(location.hash.slice(1)).get("share");
  if (share) return showShared(share);
  replace(byId("status"), "Signed out");
  const me = await signIn(store, async (token) => {
    await new RestClient({ baseUrl: apiBase(base), token }).listSessions();
  });
  new ChatPage(me).start();
}

void main();
