/**
 * The admin console (`{P}/admin/`): sessions of every user (filters, sort, cursor pages, refreshed live),
 * help requests arriving live with a count, the takeover panel, the audit log and the metrics summary.
 * @module
 */

import { ChatSocket, RestClient, type http } from "@chatbox/client";
import { byId, h, replace, time } from "../lib/dom.js";
import { apiBase, consoleBase, socketUrl } from "../lib/endpoints.js";
import { isAdmin, TokenStore } from "../lib/session-token.js";
import { refusal, showSignedIn, signIn, type SignedIn } from "../lib/signin.js";
import { showStatus } from "../lib/status.js";
import { Takeover } from "./takeover.js";

const base = consoleBase(import.meta.url);
const store = new TokenStore("chatbox.admin.token");

/** How often the shown page of sessions is read again (live figures). */
const REFRESH_MS = 10000;

/** One help request, live or found among the active sessions. */
interface Help {
  session_id: string;
  user_id: string;
  user_name?: string;
  session_name?: string;
  note?: string;
  timestamp: string;
}

/**
 * Whether a session asked for help and no administrator has assisted it yet. The stored flag stays set after
 * an assistance, so a session an administrator already helped does not count (a new request from it still
 * arrives live).
 */
function waitingForHelp(s: http.SessionMetadata): boolean {
  return s.is_active && s.help_requested === true && !s.admin_assisted;
}

class AdminPage {
  private readonly rest = new RestClient({ baseUrl: apiBase(base), token: () => store.get() });
  private readonly socket = new ChatSocket({ url: socketUrl(base), token: () => store.get(), WebSocket });
  private readonly takeover: Takeover;
  private query: http.AdminListSessionsQuery = {};
  private cursor: string | undefined;
  private nextCursor: string | undefined;
  private auditCursor: string | undefined;
  private auditNext: string | undefined;
  private help = new Map<string, Help>();

  constructor(private readonly me: SignedIn) {
    this.takeover = new Takeover({
      rest: this.rest,
      socketUrl: socketUrl(base),
      token: () => store.get(),
      adminId: me.claims.user_id ?? "",
      changed: (sessionId) => {
        // A session taken over (or left) is no longer waiting for help.
        this.help.delete(sessionId);
        this.renderHelp();
        void this.loadSessions();
      },
    });
  }

  start(): void {
    showSignedIn(this.me, store, () => {
      this.takeover.close();
      this.socket.close();
    });
    showStatus(this.socket);
    this.socket.on("help_request", (frame) => {
      this.addHelp({
        session_id: frame.session_id,
        user_id: frame.user_id,
        user_name: frame.metadata?.user_name,
        session_name: frame.metadata?.session_name,
        note: frame.content,
        timestamp: frame.timestamp,
      });
      void this.loadSessions();
    });
    this.socket.connect().catch(() => undefined);
    this.wireTabs();
    byId("filters").addEventListener("submit", (event) => {
      event.preventDefault();
      const form = new FormData(event.target as HTMLFormElement);
      this.query = {};
      for (const [key, value] of form.entries()) {
        if (typeof value === "string" && value !== "") (this.query as Record<string, string>)[key] = value;
      }
      this.cursor = undefined;
      void this.loadSessions();
    });
    byId("first-page").addEventListener("click", () => {
      this.cursor = undefined;
      void this.loadSessions();
    });
    byId("next-page").addEventListener("click", () => {
      this.cursor = this.nextCursor;
      void this.loadSessions();
    });
    byId("audit-first").addEventListener("click", () => {
      this.auditCursor = undefined;
      void this.loadAudit();
    });
    byId("audit-next").addEventListener("click", () => {
      this.auditCursor = this.auditNext;
      void this.loadAudit();
    });
    void this.loadSessions();
    void this.loadPendingHelp();
    setInterval(() => {
      if (!document.hidden) void this.loadSessions();
    }, REFRESH_MS);
  }

  /** The tabs: a click (or Enter/Space) shows a panel; Left/Right/Home/End move between tabs (ARIA tabs). */
  private wireTabs(): void {
    const tabs = ["sessions", "help", "audit", "metrics"];
    const select = (name: string) => {
      for (const other of tabs) {
        const tab = byId(`tab-${other}`);
        tab.setAttribute("aria-selected", String(other === name));
        tab.tabIndex = other === name ? 0 : -1;
        byId(`panel-${other}`).hidden = other !== name;
      }
      byId(`tab-${name}`).focus();
      if (name === "audit") void this.loadAudit();
      if (name === "metrics") void this.loadMetrics();
    };
    tabs.forEach((name, i) => {
      const tab = byId(`tab-${name}`);
      tab.tabIndex = i === 0 ? 0 : -1;
      tab.addEventListener("click", () => select(name));
      tab.addEventListener("keydown", (event) => {
        const step: Record<string, number> = { ArrowRight: 1, ArrowLeft: -1, Home: -i, End: tabs.length - 1 - i };
        if (!(event.key in step)) return;
        event.preventDefault();
        select(tabs[(i + step[event.key] + tabs.length) % tabs.length]);
      });
    });
  }

  private async loadSessions(): Promise<void> {
    const problem = byId("sessions-error");
    try {
      const page = await this.rest.adminListSessions({ ...this.query, limit: "25", cursor: this.cursor });
      problem.hidden = true;
      this.nextCursor = page.next_cursor;
      byId<HTMLButtonElement>("next-page").disabled = page.next_cursor === undefined;
      replace(byId("page-note"), `${page.count} sessions on this page${this.cursor ? "" : " (first page)"}`);
      replace(byId("sessions-table").querySelector("tbody") as HTMLElement, ...page.sessions.map((s) => this.sessionRow(s)));
    } catch (error) {
      replace(problem, refusal(error));
      problem.hidden = false;
    }
  }

  private sessionRow(s: http.SessionMetadata): HTMLElement {
    const action = h(
      "button",
      { type: "button", "data-session": s.id },
      !s.is_active ? "View" : s.assisting_admin_id === this.me.claims.user_id ? "Open" : "Take over",
    );
    action.addEventListener("click", () =>
      s.is_active ? this.takeover.open(s.id, s.user_id, s.name) : void this.takeover.view(s.id, s.user_id, s.name),
    );
    return h(
      "tr",
      { "data-session": s.id, class: waitingForHelp(s) ? "needs-help" : undefined },
      h("td", {}, s.user_id),
      h("td", {}, s.name || "(unnamed)", s.help_requested ? h("span", { class: "badge" }, "help") : null),
      h("td", {}, time(s.start_time)),
      h("td", {}, time(s.last_activity)),
      h("td", { class: "num" }, String(s.message_count)),
      h("td", { class: "num" }, String(s.total_tokens)),
      h("td", {}, s.is_active ? "active" : "ended"),
      h("td", {}, s.assisting_admin_name ?? s.assisting_admin_id ?? ""),
      h("td", {}, action),
    );
  }

  /** Help requests made before the page opened: active sessions waiting for help (`waitingForHelp`). */
  private async loadPendingHelp(): Promise<void> {
    try {
      const page = await this.rest.adminListSessions({ status: "active", limit: "200" });
      for (const s of page.sessions) {
        if (waitingForHelp(s)) {
          this.addHelp({ session_id: s.id, user_id: s.user_id, session_name: s.name, timestamp: s.last_activity });
        }
      }
    } catch {
      // The sessions panel shows the error.
    }
    byId("help-count").dataset.loaded = "true";
  }

  private addHelp(help: Help): void {
    this.help.set(help.session_id, help);
    this.renderHelp();
  }

  private renderHelp(): void {
    replace(byId("help-count"), String(this.help.size));
    replace(
      byId("help-list"),
      ...[...this.help.values()].reverse().map((help) => {
        const take = h("button", { type: "button" }, "Take over");
        take.addEventListener("click", () => {
          this.help.delete(help.session_id);
          this.renderHelp();
          this.takeover.open(help.session_id, help.user_id, help.session_name ?? "");
        });
        return h(
          "li",
          { "data-session": help.session_id },
          h("strong", {}, help.user_name ?? help.user_id),
          ` asked for help in “${help.session_name || "(unnamed)"}” at ${time(help.timestamp)}`,
          help.note ? h("blockquote", {}, help.note) : null,
          take,
        );
      }),
    );
  }

  private async loadAudit(): Promise<void> {
    const body = byId("audit-table").querySelector("tbody") as HTMLElement;
    try {
      const page = await this.rest.adminListAudit({ limit: 50, cursor: this.auditCursor });
      this.auditNext = page.next_cursor;
      byId<HTMLButtonElement>("audit-next").disabled = page.next_cursor === undefined;
      replace(
        body,
        ...page.entries.map((e) =>
          h(
            "tr",
            {},
            h("td", {}, time(e.timestamp)),
            h("td", {}, e.admin_name ?? e.admin_id),
            h("td", {}, e.action),
            h("td", {}, e.session_id ?? ""),
            h("td", {}, e.user_id ?? ""),
            h("td", {}, Object.entries(e.details ?? {}).map(([k, v]) => `${k}=${v}`).join(", ")),
          ),
        ),
      );
    } catch (error) {
      replace(body, h("tr", {}, h("td", { colspan: 6, class: "problem" }, refusal(error))));
    }
  }

  private async loadMetrics(): Promise<void> {
    const list = byId("metrics");
    try {
      const m = await this.rest.adminGetMetrics();
      const figures: [string, string][] = [
        ["Sessions (last 24 h)", String(m.total_sessions)],
        ["Active", String(m.active_sessions)],
        ["Tokens", String(m.total_tokens)],
        ["Average answer time", `${m.avg_response_time} ms`],
        ["Slowest answer", `${m.max_response_time} ms`],
        ["Assisted by an admin", String(m.admin_assisted_count)],
        ["Average concurrent sessions", m.avg_concurrent.toFixed(2)],
      ];
      replace(list, ...figures.flatMap(([name, value]) => [h("dt", {}, name), h("dd", {}, value)]));
    } catch (error) {
      replace(list, h("dt", {}, "Error"), h("dd", { class: "problem" }, refusal(error)));
    }
  }
}

async function main(): Promise<void> {
  replace(byId("status"), "Signed out");
  const me = await signIn(store, async (token, claims) => {
    if (!isAdmin(claims)) throw new Error("This token has no admin role (admin or chat_admin). Sign in with an administrator's token.");
    await new RestClient({ baseUrl: apiBase(base), token }).adminGetMetrics();
  });
  new AdminPage(me).start();
}

void main();
