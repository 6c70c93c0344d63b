#!/usr/bin/env bash
# Tests the web console (web/) in a real browser against the real server: installs Debian's chromium when
# it is missing, installs the pinned npm tools (web/package-lock.json: esbuild, TypeScript, @playwright/test;
# no browser download), type-checks the sources, rebuilds web/dist into a temp dir and fails when the
# committed web/dist differs, starts chatbox on a free loopback port (embedded store in a temp dir, demo
# model, a JWT secret the tests mint HS256 tokens with) and runs the Playwright tests with /usr/bin/chromium.
# Stops what it started on every exit path.
#
# Run alone (`bash scripts/console.sh`) or sourced by scripts/test.sh, which calls console_run.
# CONSOLE_SCREENSHOTS_DIR=docs bash scripts/console.sh refreshes the screenshots shown in the README.

console_run() (
  set -euo pipefail
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  local root web work pids=()
  root="$(pwd)"
  web="${root}/web"
  work="$(mktemp -d)"
  # shellcheck source=scripts/test-server.sh
  source "${root}/scripts/test-server.sh"
  test_server_traps "${work}"

  command -v node >/dev/null || { echo "node (20 or later) is required" >&2; return 1; }
  if ! command -v chromium >/dev/null; then
    echo "==> installing chromium (Debian package)"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
  echo "==> npm ci (web)"
  (cd "${web}" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --loglevel=error)

  echo "==> tsc --noEmit (web)"
  (cd "${web}" && npx tsc -p tsconfig.json)
  echo "==> web/dist is what web/build.mjs builds from the committed sources"
  (cd "${web}" && node build.mjs --out "${work}/dist")
  if ! diff -r "${work}/dist" "${web}/dist" >"${work}/dist.diff"; then
    head -40 "${work}/dist.diff" >&2
    echo "web/dist is stale: run 'node web/build.mjs' and commit web/dist" >&2
    return 1
  fi

  echo "==> cargo build --bin chatbox"
  cargo build --bin chatbox
  local bin secret
  bin="${CARGO_TARGET_DIR:-${root}/target}/debug/chatbox"
  secret="$(test_server_secret)"
  echo "==> starting the server"
  test_server_start "${bin}" "${work}/server" "${secret}" LLM_DEMO_TOKEN_DELAY_MS=30 ADMIN_RATE_LIMIT=10000
  local url="${SERVER_URL}"

  echo "==> playwright test (web/tests, /usr/bin/chromium)"
  local shots="${CONSOLE_SCREENSHOTS_DIR:-}"
  [[ -z "${shots}" || "${shots}" == /* ]] || shots="${root}/${shots}"
  (cd "${web}" && CHATBOX_TEST_URL="${url}" CHATBOX_TEST_JWT_SECRET="${secret}" CONSOLE_SCREENSHOTS_DIR="${shots}" npx playwright test)
)

if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
  console_run
fi
