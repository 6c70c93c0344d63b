// Browser tests of the console against the real chatbox binary, started by scripts/console.sh (which sets
// CHATBOX_TEST_URL and CHATBOX_TEST_JWT_SECRET). Debian's Chromium, no browser download.
import { defineConfig } from "@playwright/test";

export default defineConfig({
  testDir: "tests",
  workers: 1,
  timeout: 30_000,
  expect: { timeout: 10_000 },
  reporter: [["list"]],
  outputDir: "test-results",
  use: {
    browserName: "chromium",
    headless: true,
    launchOptions: { executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium" },
    viewport: { width: 1200, height: 800 },
    trace: "off",
  },
});
