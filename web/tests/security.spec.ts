// Raw HTML and script in messages stay text, `javascript:` links are inert, and the pages carry the CSP.
import { answers, chatUrl, expect, newUser, send, server, test, token } from "./support.js";

test("HTML, script and javascript: links in a message are rendered inert", async ({ page }) => {
  await page.goto(chatUrl(token(newUser("xss"), ["user"])));
  await expect(page.locator("#status")).toHaveText("Connected");
  const hostile = '<img src=x onerror=alert(1)> <script>window.pwned=1</script> [click me](javascript:alert(2)) [safe](https://example.com/x)';
  await send(page, hostile);
  await expect(answers(page)).toHaveCount(1);
  const messages = page.locator("#messages");
  await expect(messages.locator("li.msg-user .body")).toContainText("<img src=x onerror=alert(1)>");
  await expect(messages.locator("li.msg-user .body")).toContainText("<script>window.pwned=1</script>");
  await expect(messages.locator("li.msg-user .body")).toContainText("[click me](javascript:alert(2))");
  await expect(messages.locator("img, script, iframe")).toHaveCount(0);
  await expect(messages.locator("a[href^='javascript']")).toHaveCount(0);
  await expect(messages.locator("li.msg-user a")).toHaveAttribute("href", "https://example.com/x");
  expect(await page.evaluate(() => (window as { pwned?: number }).pwned)).toBeUndefined();
});

test("pages carry a strict CSP, ETags and 304s", async ({ request }) => {
  for (const path of ["/", "/admin/"]) {
    const response = await request.get(`${server}${path}`);
    expect(response.status()).toBe(200);
    expect(response.headers()["content-type"]).toBe("text/html; charset=utf-8");
    const csp = response.headers()["content-security-policy"];
    expect(csp).toContain("default-src 'self'");
    expect(csp).toContain("script-src 'self'");
    expect(csp).not.toContain("unsafe");
    const tag = response.headers()["etag"];
    const again = await request.get(`${server}${path}`, { headers: { "if-none-match": tag } });
    expect(again.status()).toBe(304);
  }
  const script = await request.get(`${server}/assets/chat.js`);
  expect(script.headers()["content-type"]).toBe("text/javascript; charset=utf-8");
  const style = await request.get(`${server}/assets/console.css`);
  expect(style.headers()["content-type"]).toBe("text/css; charset=utf-8");
  const bare = await request.get(server, { maxRedirects: 0 });
  expect(bare.status()).toBe(308);
  expect(bare.headers()["location"]).toBe(`${new URL(server).pathname}/`);
});
