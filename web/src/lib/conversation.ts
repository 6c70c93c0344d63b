/**
 * A conversation on screen, shared by the chat page and the admin takeover: one list item per message
 * (user, AI, administrator, system notice, error), the answer being streamed updated in place as chunks
 * arrive, and a typing line. Message text goes through the safe Markdown renderer.
 * @module
 */

import type { Answer, http } from "@chatbox/client";
import { h, replace } from "./dom.js";
import { renderMarkdown } from "./markdown.js";

/** Who wrote a message, as shown (each has its own style). */
export type Role = "user" | "ai" | "admin" | "system" | "error";

/** Optional parts of a shown message. */
export interface MessageOptions {
  /** A retry button calling this (errors). */
  retry?: () => void;
  /** The message's `client_msg_id` or another id, kept as `data-id`. */
  id?: string;
  /** Render the text as Markdown (default true, except for system notices and errors). */
  markdown?: boolean;
}

/** The label of each role; `admin` gets the administrator's name. */
export interface Labels {
  user: string;
  ai: string;
  admin: (name: string | undefined) => string;
}

/** The messages of one session, in `list` (an `<ol>`), and who is typing, in `typingLine`. */
export class Conversation {
  private streaming: { item: HTMLElement; body: HTMLElement; text: string; frame: number | null } | null = null;

  constructor(
    private readonly list: HTMLElement,
    private readonly typingLine: HTMLElement,
    private readonly labels: Labels,
  ) {}

  /** Removes every message. */
  clear(): void {
    this.streaming = null;
    replace(this.list);
    this.typing(null);
  }

  /** Shows a message; returns its list item. */
  add(role: Role, text: string, label?: string, options: MessageOptions = {}): HTMLElement {
    const markdown = options.markdown ?? (role !== "system" && role !== "error");
    const body = h("div", { class: "body" });
    this.fill(body, text, markdown);
    const item = h(
      "li",
      { class: `msg msg-${role}`, "data-role": role, "data-id": options.id },
      h("div", { class: "who" }, label ?? this.label(role)),
      body,
    );
    if (options.retry) {
      const retry = options.retry;
      const button = h("button", { type: "button", class: "retry" }, "Retry");
      button.addEventListener("click", () => {
        button.disabled = true;
        retry();
      });
      item.appendChild(button);
    }
    this.insert(item);
    return item;
  }

  /** Shows the stored messages of a session (its history). */
  history(messages: http.SessionMessage[]): void {
    for (const m of messages) {
      const role: Role = m.sender === "ai" ? "ai" : m.sender === "admin" ? "admin" : m.sender === "system" ? "system" : "user";
      const label = role === "admin" ? this.labels.admin(m.metadata?.admin_name) : undefined;
      const item = this.add(role, m.content, label);
      if (m.metadata?.partial === "true") item.appendChild(h("div", { class: "note" }, "(answer cut short)"));
    }
  }

  /** Shows the answer being streamed (`ChatSocket.onAnswer`): updated in place, finished when `done`. */
  answer(answer: Answer): void {
    if (this.streaming === null) {
      const body = h("div", { class: "body" });
      const label = answer.model_id ? `${this.labels.ai} · ${answer.model_id}` : this.labels.ai;
      const item = h("li", { class: "msg msg-ai streaming", "data-role": "ai", "aria-busy": "true" }, h("div", { class: "who" }, label), body);
      this.insert(item);
      this.streaming = { item, body, text: "", frame: null };
    }
    const current = this.streaming;
    current.text = answer.text;
    if (answer.done) {
      if (current.frame !== null) cancelAnimationFrame(current.frame);
      this.fill(current.body, current.text, true);
      current.item.classList.remove("streaming");
      current.item.removeAttribute("aria-busy");
      current.item.dataset.done = "true";
      if (answer.finish_reason === "cancelled") current.item.appendChild(h("div", { class: "note" }, "(stopped)"));
      this.streaming = null;
      this.scroll();
    } else if (current.frame === null) {
      // Re-render at most once per animation frame, however fast the chunks come.
      current.frame = requestAnimationFrame(() => {
        current.frame = null;
        this.fill(current.body, current.text, true);
        this.scroll();
      });
    }
  }

  /** Whether an answer is being streamed. */
  get answering(): boolean {
    return this.streaming !== null;
  }

  /** Shows who is typing (`null`: nobody). */
  typing(who: string | null): void {
    replace(this.typingLine, who ? `${who} is typing…` : "");
    this.typingLine.hidden = who === null;
  }

  private label(role: Role): string {
    switch (role) {
      case "user":
        return this.labels.user;
      case "ai":
        return this.labels.ai;
      case "admin":
        return this.labels.admin(undefined);
      case "system":
        return "Notice";
      case "error":
        return "Error";
    }
  }

  private fill(body: HTMLElement, text: string, markdown: boolean): void {
    if (markdown) replace(body, renderMarkdown(text));
    else replace(body, h("p", {}, text));
  }

  private insert(item: HTMLElement): void {
    this.list.appendChild(item);
    this.scroll();
  }

  private scroll(): void {
    const scroller = this.list.parentElement;
    if (scroller) scroller.scrollTop = scroller.scrollHeight;
  }
}
