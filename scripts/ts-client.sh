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
  # shellcheck disable=SC2317  # called by the trap
  cleanup() {
    local pid
    for pid in "${pids[@]}"; do
      kill "${pid}" 2>/dev/null || true
      wait "${pid}" 2>/dev/null || true
    done
    rm -rf "${work}"
  }
  trap cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM

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

  free_port() {
    node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
  }
  local secret
  secret="$(node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))')"
  # start_server NAME VAR=VALUE...: starts one server, waits for its /healthz, prints its base URL.
  start_server() {
    local name="$1" port dir
    shift
    port="$(free_port)"
    dir="${work}/${name}"
    mkdir -p "${dir}"
    env -u MONGO_URI -u MONGODB_URI -u CHATBOX_CONFIG -u RMBASE_FILE_CFG \
      CHATBOX_ENV=development CHATBOX_DATA_DIR="${dir}" SERVER_HOST=127.0.0.1 SERVER_PORT="${port}" \
      JWT_SECRET="${secret}" LOG_LEVEL=warn "$@" "${bin}" >"${dir}/stdout.log" 2>"${dir}/stderr.log" &
    pids+=("$!")
    local url="http://127.0.0.1:${port}/chatbox" deadline=$((SECONDS + 60))
    until node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "${url}/healthz"; do
      if ! kill -0 "${pids[-1]}" 2>/dev/null || ((SECONDS > deadline)); then
        echo "server ${name} did not start:" >&2
        cat "${dir}/stderr.log" >&2
        return 1
      fi
      sleep 0.2
    done
    SERVER_URL="${url}"
  }

  echo "==> starting the servers"
  start_server main LLM_DEMO_TOKEN_DELAY_MS=25 ADMIN_RATE_LIMIT=10000
  export CHATBOX_TEST_URL="${SERVER_URL}"
  start_server strict PUBLIC_RATE_LIMIT=2 METRICS_ALLOWED_NETWORKS=10.0.0.0/8
  export CHATBOX_TEST_STRICT_URL="${SERVER_URL}"
  export CHATBOX_TEST_JWT_SECRET="${secret}"

  echo "==> node --test (clients/typescript-tests)"
  (cd "${tests}" && node --test build/)
)

if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
  ts_client_run
fi
