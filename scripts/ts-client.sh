#!/usr/bin/env bash
# Tests the generated TypeScript client (generated/typescript) against the real server: installs the test
# dependencies (npm ci, clients/typescript-tests/package-lock.json), packs the client with `npm pack` (its
# prepack compiles it with tsc --strict), installs the tarball into the tests, compiles them (tsc --strict),
# starts two chatbox servers on free loopback ports (embedded store in a temp dir, demo model, a JWT secret
# the tests mint HS256 tokens with) and runs `node --test`. Stops what it started on every exit path.
#
# Run alone (`bash scripts/ts-client.sh`) or sourced by scripts/test.sh, which calls ts_client_run.

ts_client_run() (
  set -euo pipefail
  cd "$(dirname "${BASH_SOURCE[0]}")/.."
  local root tests work pids=()
  root="$(pwd)"
  tests="${root}/clients/typescript-tests"
  work="$(mktemp -d)"
  # shellcheck source=scripts/test-server.sh
  source "${root}/scripts/test-server.sh"
  test_server_traps "${work}"

  command -v node >/dev/null || { echo "node (20 or later) is required" >&2; return 1; }
  echo "==> npm ci (clients/typescript-tests)"
  (cd "${tests}" && npm ci --no-audit --no-fund --loglevel=error)
  export PATH="${tests}/node_modules/.bin:${PATH}"

  echo "==> npm pack generated/typescript (prepack: tsc --strict)"
  cp -r "${root}/generated/typescript" "${work}/package"
  rm -rf "${work}/package/dist" "${work}/package/node_modules"
  (cd "${work}/package" && npm pack --silent --pack-destination "${work}" >/dev/null)
  local tarball
  tarball="$(ls "${work}"/chatbox-client-*.tgz)"
  rm -rf "${tests}/node_modules/@chatbox/client"
  mkdir -p "${tests}/node_modules/@chatbox/client"
  tar -xzf "${tarball}" -C "${tests}/node_modules/@chatbox/client" --strip-components=1
  test -f "${tests}/node_modules/@chatbox/client/dist/index.d.ts" || { echo "the tarball has no dist/index.d.ts" >&2; return 1; }

  echo "==> tsc --strict (tests)"
  rm -rf "${tests}/build"
  (cd "${tests}" && tsc -p tsconfig.json)

  echo "==> cargo build --bin chatbox"
  cargo build --bin chatbox
  local bin
  bin="${CARGO_TARGET_DIR:-${root}/target}/debug/chatbox"

  local secret
  secret="$(test_server_secret)"

  echo "==> starting the servers"
  test_server_start "${bin}" "${work}/main" "${secret}" LLM_DEMO_TOKEN_DELAY_MS=25 ADMIN_RATE_LIMIT=10000
  export CHATBOX_TEST_URL="${SERVER_URL}"
  test_server_start "${bin}" "${work}/strict" "${secret}" PUBLIC_RATE_LIMIT=2 METRICS_ALLOWED_NETWORKS=10.0.0.0/8
  export CHATBOX_TEST_STRICT_URL="${SERVER_URL}"
  export CHATBOX_TEST_JWT_SECRET="${secret}"

  echo "==> node --test (clients/typescript-tests)"
  (cd "${tests}" && node --test build/)
)

if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
  ts_client_run
fi
