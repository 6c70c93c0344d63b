// What the console tests share: HS256 tokens minted with the server's secret, page addresses, and a fixture
// that fails a test on any console error, uncaught exception, CSP violation or dialog in any of its pages.
import { test as base, expect, type BrowserContext, type Page } from "@playwright/test";
import { createHmac, randomUUID } from "node:crypto";

/** `http://127.0.0.1:<port>/chatbox` of the server under test. */
export const server = process.env.CHATBOX_TEST_URL ?? "";
const secret = process.env.CHATBOX_TEST_JWT_SECRET ?? "";
if (!server || !secret) throw new Error("run through scripts/console.sh (CHATBOX_TEST_URL, CHATBOX_TEST_JWT_SECRET)");

const b64 = (value: object | Buffer) => (Buffer.isBuffer(value) ? value : Buffer.from(JSON.stringify(value))).toString("base64url");

/** A JWT for `userId` with `roles`, valid for an hour (or `expSeconds` from now), signed with `key`. */
export function token(userId: string, roles: string[], name?: string, expSeconds = 3600, key = secret): string {
  const head = b64({ alg: "HS256", typ: "JWT" });
  const body = b64({ user_id: userId, roles, name, exp: Math.floor(Date.now() / 1000) + expSeconds });
  const signature = createHmac("sha256", key).update(`${head}.${body}`).digest();
  return `${head}.${body}.${b64(signature)}`;
}

/** A fresh user id (each test has its own users, so their sessions never meet). */
export const newUser = (tag: string) => `${tag}-${randomUUID().slice(0, 8)}`;

/** The chat page, signed in through the URL fragment. */
export const chatUrl = (jwt: string) => `${server}/#token=${jwt}`;
/** The admin console, signed in through the URL fragment. */
export const adminUrl = (jwt: string) => `${server}/admin/#token=${jwt}`;

/** The demo model's answer to `message` (src/llm/demo.rs). */
export function demoAnswer(message: string): string {
  const words = message.trim().split(/\s+/).length;
  return `You said: "${message.trim()}" (${words} word${words === 1 ? "" : "s"}). This is the built-in demo model, so no real AI is answering. Configure an LLM provider in the [[llm.providers]] section to get real answers.`;
}

/** Sends `text` from the chat page's composer. */
export async function send(page: Page, text: string): Promise<void> {
  await page.getByLabel("Message", { exact: true }).fill(text);
  await page.getByRole("button", { name: "Send", exact: true }).click();
}

/** The finished AI answers on a page. */
export const answers = (page: Page) => page.locator("#messages li.msg-ai[data-done='true'] .body");

/** Problems seen in the pages of a test (console errors, page errors, CSP violations, dialogs). */
function watch(context: BrowserContext, problems: string[]): void {
  const attach = (page: Page) => {
    page.on("console", (m) => {
      if (m.type() === "error") problems.push(`console error on ${page.url()}: ${m.text()}`);
    });
    page.on("pageerror", (e) => problems.push(`uncaught exception on ${page.url()}: ${e.message}`));
    page.on("dialog", (d) => {
      problems.push(`dialog on ${page.url()}: ${d.message()}`);
      void d.dismiss();
    });
  };
  context.pages().forEach(attach);
  context.on("page", attach);
  // Violations also reach the console, but a listener names the directive.
  void context.addInitScript(() => {
    document.addEventListener("securitypolicyviolation", (e) => console.error(`CSP violation: ${e.violatedDirective} ${e.blockedURI}`));
  });
}

/** `test` with every page of every context watched; a test fails on any problem seen. */
export const test = base.extend<{ problems: string[]; newWatchedContext: () => Promise<BrowserContext> }>({
  problems: async ({}, use) => {
    const problems: string[] = [];
    await use(problems);
    expect(problems, "console errors, CSP violations or dialogs").toEqual([]);
  },
  context: async ({ context, problems }, use) => {
    watch(context, problems);
    await use(context);
  },
  newWatchedContext: async ({ browser, problems }, use) => {
    const made: BrowserContext[] = [];
    await use(async () => {
      const context = await browser.newContext();
      watch(context, problems);
      made.push(context);
      return context;
    });
    for (const c of made) await c.close();
  },
});

export { expect };
