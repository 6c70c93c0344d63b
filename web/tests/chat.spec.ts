// The chat page against the real server: sign-in, a streamed turn, two tabs of one user, a network cut
// mid-answer, share links.
import { answers, chatUrl, demoAnswer, expect, newUser, send, server, test, token } from "./support.js";

const screenshots = process.env.CONSOLE_SCREENSHOTS_DIR;

test("the token in the fragment signs in and leaves the address bar at once", async ({ page }) => {
  const jwt = token(newUser("signin"), ["user"], "Signin User");
  await page.goto(chatUrl(jwt));
  await expect(page.locator("#status")).toHaveText("Connected");
  expect(page.url()).toBe(`${server}/`);
  expect(await page.evaluate(() => sessionStorage.getItem("chatbox.chat.token"))).toBe(jwt);
  await expect(page.locator("#whoami")).toHaveText("Signin User");
});

test("an expired or refused token gets a clear message", async ({ page, problems }) => {
  await page.goto(chatUrl(token(newUser("old"), ["user"], undefined, -60)));
  await expect(page.getByRole("alert")).toContainText("This token expired on");
  await page.getByLabel("Paste your access token (JWT)").fill(token(newUser("forged"), ["user"], undefined, 3600, "another-secret-another-secret-00"));
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("The server refused this token");
  // The browser logs the refused sign-in request itself; that one is expected.
  const refused = problems.findIndex((p) => p.includes("status of 401"));
  expect(refused).toBeGreaterThanOrEqual(0);
  problems.splice(refused, 1);
  await page.getByLabel("Paste your access token (JWT)").fill(token(newUser("good"), ["user"]));
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.locator("#status")).toHaveText("Connected");
});

test("a streamed answer is shown as it arrives", async ({ page }) => {
  await page.goto(chatUrl(token(newUser("stream"), ["user"], "Stream User")));
  await expect(page.locator("#status")).toHaveText("Connected");
  const message = "Hello console, please **stream** this";
  const started = Date.now();
  await send(page, message);
  // Streaming: the answer is on screen (and growing) before it is done.
  const streaming = page.locator("#messages li.msg-ai.streaming .body");
  await expect(streaming).toContainText("You said");
  const firstToken = Date.now() - started;
  await expect(page.getByRole("button", { name: "Stop" })).toBeVisible();
  // The answer quotes the message, Markdown included, and renders it.
  await expect(answers(page)).toHaveText([demoAnswer(message).replace(/\*\*/g, "")]);
  await expect(page.getByRole("button", { name: "Stop" })).toBeHidden();
  console.log(`time to first token on screen: ${firstToken} ms`);
  // The user's own message is rendered as Markdown.
  await expect(page.locator("#messages li.msg-user strong")).toHaveText("stream");
  if (screenshots) await page.screenshot({ path: `${screenshots}/console-chat.png` });
});

test("two tabs of one user stay in sync", async ({ context }) => {
  const jwt = token(newUser("tabs"), ["user"], "Tab User");
  const first = await context.newPage();
  const second = await context.newPage();
  await first.goto(chatUrl(jwt));
  await second.goto(chatUrl(jwt));
  await expect(first.locator("#status")).toHaveText("Connected");
  await expect(second.locator("#status")).toHaveText("Connected");
  await send(first, "typed in the first tab");
  await expect(second.locator("#messages li.msg-user")).toHaveText(["You (another device)typed in the first tab"]);
  await expect(answers(second)).toHaveText([demoAnswer("typed in the first tab")]);
  await expect(answers(first)).toHaveText([demoAnswer("typed in the first tab")]);
  await send(second, "and now the second");
  await expect(first.locator("#messages li.msg-user").last()).toContainText("and now the second");
  await expect(answers(first)).toHaveCount(2);
});

test("a network cut mid-answer is resumed: the answer completes once, without a gap or a repeat", async ({ page }) => {
  let connections = 0;
  let cut = false;
  // Every WebSocket goes through this proxy; the first one is cut after a few chunks of the answer.
  await page.routeWebSocket(/\/ws\?/, (ws) => {
    connections += 1;
    const upstream = ws.connectToServer();
    let chunks = 0;
    upstream.onMessage((frame) => {
      if (cut && connections === 1) return;
      ws.send(frame);
      if (connections === 1 && typeof frame === "string" && frame.includes('"ai_response"') && ++chunks === 5) {
        cut = true;
        ws.close({ code: 4000, reason: "network cut" });
        upstream.close();
      }
    });
    ws.onMessage((frame) => upstream.send(frame));
  });
  await page.goto(chatUrl(token(newUser("cut"), ["user"])));
  await expect(page.locator("#status")).toHaveText("Connected");
  const message = "survive a cut in the middle of this answer";
  await send(page, message);
  await expect.poll(() => cut).toBe(true);
  await expect(page.locator("#status")).toHaveText("Connected");
  await expect(answers(page)).toHaveText([demoAnswer(message)]);
  expect(connections).toBeGreaterThanOrEqual(2);
  await expect(page.locator("#messages li.msg-ai")).toHaveCount(1);
});

test("a share link opens signed out, and stops working once revoked", async ({ page, newWatchedContext, problems }) => {
  await page.goto(chatUrl(token(newUser("share"), ["user"])));
  await expect(page.locator("#status")).toHaveText("Connected");
  await send(page, "something worth sharing");
  await expect(answers(page)).toHaveCount(1);
  await page.getByRole("button", { name: "Share" }).click();
  await expect(page.getByLabel("Share link")).toHaveValue(/#share=/);
  const link = await page.getByLabel("Share link").inputValue();
  const stranger = await (await newWatchedContext()).newPage();
  await stranger.goto(link);
  await expect(stranger.locator("#shared-messages li.msg-user")).toHaveText(["Usersomething worth sharing"]);
  await expect(stranger.locator("#shared-messages li.msg-ai .body")).toHaveText([demoAnswer("something worth sharing")]);
  await expect(stranger.locator("#signin")).toBeHidden();
  await page.getByRole("button", { name: "Revoke" }).click();
  await expect(page.getByLabel("Share link")).toBeHidden();
  await stranger.reload();
  await expect(stranger.locator("#shared-messages li.msg-error")).toContainText("does not exist or was revoked");
  // The browser logs the 404 of the revoked link itself; that one is expected.
  const gone = problems.findIndex((p) => p.includes("status of 404"));
  expect(gone).toBeGreaterThanOrEqual(0);
  problems.splice(gone, 1);
});

test("the session list shows past sessions with their history", async ({ page }) => {
  await page.goto(chatUrl(token(newUser("history"), ["user"])));
  await expect(page.locator("#status")).toHaveText("Connected");
  await send(page, "first conversation");
  await expect(answers(page)).toHaveCount(1);
  await page.getByRole("button", { name: "New chat" }).click();
  await send(page, "second conversation");
  await expect(answers(page)).toHaveText([demoAnswer("second conversation")]);
  await page.reload();
  await expect(page.locator("#sessions li")).toHaveCount(2);
  await page.locator("#sessions button", { hasText: "first conversation" }).click();
  await expect(page.locator("#messages li.msg-user .body")).toHaveText(["first conversation"]);
  await expect(page.getByLabel("Message", { exact: true })).toBeDisabled();
  await page.getByRole("button", { name: "Back to the live chat" }).click();
  await expect(page.locator("#messages li.msg-user .body")).toHaveText(["second conversation"]);
});

test("Stop cancels the running answer and keeps what was written", async ({ page }) => {
  await page.goto(chatUrl(token(newUser("cancel"), ["user"])));
  await expect(page.locator("#status")).toHaveText("Connected");
  const message = "a long answer that will be stopped early";
  await send(page, message);
  await expect(page.locator("#messages li.msg-ai.streaming .body")).toContainText("You said");
  await page.getByRole("button", { name: "Stop" }).click();
  const stopped = page.locator("#messages li.msg-ai[data-done='true']");
  await expect(stopped.locator(".note")).toHaveText("(stopped)");
  const text = (await stopped.locator(".body").textContent()) ?? "";
  expect(demoAnswer(message).startsWith(text.trim())).toBe(true);
  expect(text.trim().length).toBeLessThan(demoAnswer(message).length);
});

test("an error is shown inline where it happened", async ({ page }) => {
  await page.goto(chatUrl(token(newUser("early"), ["user"])));
  await expect(page.locator("#status")).toHaveText("Connected");
  // Help needs a stored session; before the first message there is none.
  await page.getByRole("button", { name: "Ask for a human" }).click();
  await expect(page.locator("#messages li.msg-error")).toHaveCount(1);
  await send(page, "now there is a session");
  await expect(answers(page)).toHaveCount(1);
  await page.getByRole("button", { name: "Ask for a human" }).click();
  await expect(page.locator("#messages li.msg-system").last()).toContainText("Help request sent");
});

test("a message refused with an error gets a Retry that sends it again and is answered once", async ({ page }) => {
  let refused = false;
  // The first user message is answered by the route with the error a failing model gives, as the server would.
  await page.routeWebSocket(/\/ws\?/, (ws) => {
    const upstream = ws.connectToServer();
    upstream.onMessage((frame) => ws.send(frame));
    ws.onMessage((frame) => {
      const parsed = typeof frame === "string" ? (JSON.parse(frame) as { type?: string; client_msg_id?: string; session_id?: string }) : {};
      if (!refused && parsed.type === "user_message") {
        refused = true;
        const error = { code: "LLM_UNAVAILABLE", message: "AI service temporarily unavailable", recoverable: true };
        ws.send(JSON.stringify({ type: "error", sender: "system", client_msg_id: parsed.client_msg_id, error, timestamp: new Date().toISOString() }));
        return;
      }
      upstream.send(frame);
    });
  });
  await page.goto(chatUrl(token(newUser("retry"), ["user"])));
  await expect(page.locator("#status")).toHaveText("Connected");
  await send(page, "please answer eventually");
  const error = page.locator("#messages li.msg-error");
  await expect(error).toContainText("AI service temporarily unavailable");
  await error.getByRole("button", { name: "Retry" }).click();
  await expect(answers(page)).toHaveText([demoAnswer("please answer eventually")]);
  await expect(page.locator("#messages li.msg-user")).toHaveCount(1);
});
