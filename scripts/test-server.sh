#!/usr/bin/env bash
# The real chatbox server for the Node and browser tests (scripts/ts-client.sh, scripts/console.sh): one
# server on a free loopback port, development mode, embedded store in its own directory, the demo model,
# and a JWT secret the tests mint HS256 tokens with. Sourced; needs node.

# test_server_traps WORK: on every exit path of the calling subshell, stops the servers in its array `pids`
# and removes the directory WORK.
test_server_traps() {
  TEST_SERVER_WORK="$1"
  trap test_server_cleanup EXIT
  trap 'exit 130' INT
  trap 'exit 143' TERM
}

# shellcheck disable=SC2317  # called by the trap
test_server_cleanup() {
  local pid
  for pid in "${pids[@]}"; do
    kill "${pid}" 2>/dev/null || true
    wait "${pid}" 2>/dev/null || true
  done
  rm -rf "${TEST_SERVER_WORK}"
}

# test_server_free_port: prints a free loopback port.
test_server_free_port() {
  node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# test_server_secret: prints a fresh random JWT secret (64 hex characters).
test_server_secret() {
  node -e 'console.log(require("crypto").randomBytes(32).toString("hex"))'
}

# test_server_start BIN DIR SECRET [VAR=VALUE...]: starts BIN with its data, stdout.log and stderr.log in DIR
# and the extra environment given, appends its pid to the caller's array `pids` (the caller stops it), waits
# for its /healthz and sets SERVER_URL (http://127.0.0.1:<port>/chatbox). Fails, showing its stderr, when it
# exits or does not answer within 60 s.
test_server_start() {
  local bin="$1" dir="$2" secret="$3" port
  shift 3
  port="$(test_server_free_port)"
  mkdir -p "${dir}"
  env -u MONGO_URI -u MONGODB_URI -u REDIS_URL -u CHATBOX_CONFIG -u RMBASE_FILE_CFG \
    CHATBOX_ENV=development CHATBOX_DATA_DIR="${dir}" SERVER_HOST=127.0.0.1 SERVER_PORT="${port}" \
    JWT_SECRET="${secret}" LOG_LEVEL=warn "$@" "${bin}" >"${dir}/stdout.log" 2>"${dir}/stderr.log" &
  pids+=("$!")
  local url="http://127.0.0.1:${port}/chatbox" deadline=$((SECONDS + 60))
  until node -e 'fetch(process.argv[1]).then(r=>process.exit(r.ok?0:1),()=>process.exit(1))' "${url}/healthz"; do
    if ! kill -0 "${pids[-1]}" 2>/dev/null || ((SECONDS > deadline)); then
      echo "the server in ${dir} did not start:" >&2
      cat "${dir}/stderr.log" >&2
      return 1
    fi
    sleep 0.2
  done
  SERVER_URL="${url}"
}
