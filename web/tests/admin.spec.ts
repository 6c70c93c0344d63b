// The admin console against the real server: a takeover while the user types (both sides live), leave and
// the AI answering again, a help request arriving live, the audit log and the metrics.
import { adminUrl, answers, chatUrl, demoAnswer, expect, newUser, send, test, token } from "./support.js";

const screenshots = process.env.CONSOLE_SCREENSHOTS_DIR;

test("an admin takes over while the user types, both see each other live, then leaves and the AI answers", async ({ page: user, newWatchedContext }) => {
  const userId = newUser("assisted");
  await user.goto(chatUrl(token(userId, ["user"], "Ada User")));
  await expect(user.locator("#status")).toHaveText("Connected");
  await send(user, "I need a person");
  await expect(answers(user)).toHaveCount(1);
  await user.getByRole("button", { name: "Ask for a human" }).click();
  await expect(user.locator("#messages li.msg-system").last()).toContainText("Help request sent");

  const admin = await (await newWatchedContext()).newPage();
  await admin.goto(adminUrl(token(newUser("admin"), ["admin"], "Grace Admin")));
  await expect(admin.locator("#status")).toHaveText("Connected");
  await expect(admin.locator("#help-count")).not.toHaveText("0");
  const row = admin.locator("#sessions-table tbody tr", { hasText: userId });
  await expect(row).toHaveCount(1);
  // The user is typing when the admin takes over.
  await user.getByLabel("Message", { exact: true }).fill("still typ");
  await row.getByRole("button", { name: "Take over" }).click();
  await expect(admin.locator("#takeover-messages li.msg-user .body").first()).toHaveText("I need a person");
  await expect(admin.locator("#takeover-messages li.msg-ai .body").first()).toHaveText(demoAnswer("I need a person"));
  await expect(user.locator("#assist")).toContainText("Admin Grace Admin is helping you");

  await user.getByLabel("Message", { exact: true }).pressSequentially("ing");
  await expect(admin.locator("#takeover-typing")).toHaveText(`User ${userId} is typing…`);
  await admin.getByLabel("Message to the user").pressSequentially("Hello Ada");
  await expect(user.locator("#typing")).toHaveText("Admin Grace Admin is typing…");
  await admin.getByRole("button", { name: "Send as admin" }).click();
  await expect(user.locator("#messages li.msg-admin")).toHaveText(["Admin Grace AdminHello Ada"]);
  await expect(user.locator("#typing")).toBeHidden();

  await send(user, "thanks, Grace");
  await expect(admin.locator("#takeover-messages li.msg-user .body").last()).toHaveText("thanks, Grace");
  if (screenshots) await admin.screenshot({ path: `${screenshots}/console-admin-takeover.png` });
  // While the admin assists, the AI stays silent.
  await expect(admin.locator("#takeover-messages li.msg-admin")).toHaveText(["You (admin)Hello Ada"]);
  await expect(answers(user)).toHaveCount(1);

  await admin.getByRole("button", { name: "Leave (AI answers again)" }).click();
  await expect(user.locator("#messages li.msg-system").last()).toContainText("has left the session");
  await expect(user.locator("#assist")).toBeHidden();
  await send(user, "back to the AI");
  await expect(answers(user)).toHaveCount(2);
  await expect(answers(user).last()).toHaveText(demoAnswer("back to the AI"));
});

test("an admin ends a user's session from the takeover: the user's chat closes, the audit log shows it, and it opens read-only", async ({ page: user, newWatchedContext }) => {
  const userId = newUser("ended-by-admin");
  await user.goto(chatUrl(token(userId, ["user"], "Eve User")));
  await expect(user.locator("#status")).toHaveText("Connected");
  await send(user, "please close my case");
  await expect(answers(user)).toHaveCount(1);

  const admin = await (await newWatchedContext()).newPage();
  await admin.goto(adminUrl(token(newUser("admin"), ["admin"], "Closing Admin")));
  await admin.getByLabel("User id").fill(userId);
  await admin.getByRole("button", { name: "Apply" }).click();
  const row = admin.locator("#sessions-table tbody tr", { hasText: userId });
  await expect(row).toHaveCount(1);
  await row.getByRole("button", { name: "Take over" }).click();
  await expect(admin.locator("#takeover-messages li.msg-user .body").first()).toHaveText("please close my case");

  await admin.getByRole("button", { name: "End session" }).click();
  await expect(admin.locator("#takeover-note")).toHaveText("The session has ended.");
  await expect(user.locator("#messages li.msg-system").last()).toContainText("This session has ended");
  await expect(user.getByLabel("Message", { exact: true })).toBeDisabled();
  await admin.getByRole("tab", { name: "Audit log" }).click();
  await expect(admin.locator("#audit-table tbody tr", { hasText: "session_end" }).first()).toContainText(userId);

  // The ended session opens read-only with its stored conversation.
  await admin.getByRole("button", { name: "Close" }).click();
  await admin.getByRole("tab", { name: "Sessions" }).click();
  await admin.getByRole("button", { name: "Apply" }).click();
  await row.getByRole("button", { name: "View" }).click();
  await expect(admin.locator("#takeover-messages li.msg-user .body")).toHaveText(["please close my case"]);
  await expect(admin.locator("#takeover-messages li.msg-ai .body")).toHaveText([demoAnswer("please close my case")]);
  await expect(admin.locator("#takeover-note")).toContainText("This session ended at");
  await expect(admin.getByLabel("Message to the user")).toBeHidden();
  await expect(admin.getByRole("button", { name: "End session" })).toBeHidden();
});

test("a second admin takes a session over from the first, then hands it to a named admin: the panels and the user see each change", async ({ page: user, newWatchedContext }) => {
  const userId = newUser("transferred");
  await user.goto(chatUrl(token(userId, ["user"], "Tom User")));
  await send(user, "who is there?");
  await expect(answers(user)).toHaveCount(1);

  const open = async (name: string) => {
    const page = await (await newWatchedContext()).newPage();
    await page.goto(adminUrl(token(newUser("admin"), ["admin"], name)));
    await page.getByLabel("User id").fill(userId);
    await page.getByRole("button", { name: "Apply" }).click();
    await page.locator("#sessions-table tbody tr", { hasText: userId }).getByRole("button", { name: "Take over" }).click();
    return page;
  };
  const first = await open("First Admin");
  await expect(first.locator("#takeover-note")).toHaveText("You are assisting this session: the AI waits while you are here.");
  await expect(user.locator("#assist")).toContainText("Admin First Admin is helping you");

  const second = await open("Second Admin");
  await expect(second.locator("#takeover-note")).toContainText("You can take it over from them.");
  await second.getByRole("button", { name: "Take over from the other admin" }).click();
  await expect(second.locator("#takeover-note")).toHaveText("You are assisting this session: the AI waits while you are here.");
  await expect(first.locator("#takeover-note")).toHaveText("Another administrator took this session over from you.");
  await expect(user.locator("#assist")).toContainText("Admin Second Admin is helping you");
  await second.getByLabel("Message to the user").fill("I have your case now");
  await second.getByRole("button", { name: "Send as admin" }).click();
  await expect(user.locator("#messages li.msg-admin").last()).toHaveText("Admin Second AdminI have your case now");

  // The second hands it on to a named admin who has no page open.
  await second.getByLabel("Hand over to (admin id)").fill("night-shift");
  await second.getByRole("button", { name: "Hand over" }).click();
  await expect(second.locator("#takeover-note")).toHaveText("Handed to night-shift.");
  await expect(user.locator("#assist")).toContainText("Admin night-shift is helping you");
});

test("a help request arrives live with a count, and the audit log and metrics show", async ({ page: admin, newWatchedContext }) => {
  await admin.goto(adminUrl(token(newUser("admin"), ["chat_admin"], "Live Admin")));
  await expect(admin.locator("#status")).toHaveText("Connected");
  // Requests made before the page opened are counted once the sessions are read; live ones add to that.
  await expect(admin.locator("#help-count")).toHaveAttribute("data-loaded", "true");
  const before = Number(await admin.locator("#help-count").textContent());
  const userId = newUser("helpme");
  const user = await (await newWatchedContext()).newPage();
  await user.goto(chatUrl(token(userId, ["user"], "Helpless User")));
  await send(user, "hello");
  await expect(answers(user)).toHaveCount(1);
  await user.getByRole("button", { name: "Ask for a human" }).click();
  await expect(admin.locator("#help-count")).toHaveText(String(before + 1));
  await admin.getByRole("tab", { name: /Help requests/ }).click();
  await expect(admin.locator("#help-list li", { hasText: "Helpless User" })).toHaveCount(1);

  // The tabs follow the ARIA pattern: arrow keys move between them.
  await admin.keyboard.press("ArrowRight");
  await expect(admin.getByRole("tab", { name: "Audit log" })).toHaveAttribute("aria-selected", "true");
  await admin.getByRole("tab", { name: "Audit log" }).click();
  await expect(admin.locator("#audit-table tbody tr").first()).toContainText("session_list");
  await admin.getByRole("tab", { name: "Metrics" }).click();
  await expect(admin.locator("#metrics")).toContainText("Sessions (last 24 h)");

  await admin.getByRole("tab", { name: "Sessions" }).click();
  await admin.getByLabel("User id").fill(userId);
  await admin.getByRole("button", { name: "Apply" }).click();
  await expect(admin.locator("#sessions-table tbody tr")).toHaveCount(1);
});

test("a user token is not let into the admin console", async ({ page }) => {
  await page.goto(adminUrl(token(newUser("plain"), ["user"])));
  await expect(page.getByRole("alert")).toContainText("no admin role");
});
