#!/usr/bin/env bash
# Redis for the tests of cluster mode.
#
# Sourced by scripts/test.sh, which calls:
#   redis_ensure  -> sets REDIS_SERVER_BIN to a working redis-server (installs Debian's `redis-server`
#                    package with apt-get when it is missing)
#   redis_start   -> starts one on a free loopback port in a temp dir (no persistence), waits until it
#                    answers, exports REDIS_URL (and REDIS_SERVER_BIN: tests that stop and restart Redis
#                    start processes of their own from it)
#   redis_stop    -> stops it and removes its temp dir (safe to call twice)
# Run directly (`scripts/redis.sh`) it starts one in the foreground and prints the URL, for manual work.
# Uses free_port and stop_service from scripts/ferretdb.sh.

REDIS_PID=""
REDIS_DIR=""

redis_ensure() {
  if [[ -n "${REDIS_SERVER_BIN:-}" && -x "${REDIS_SERVER_BIN}" ]]; then return 0; fi
  if ! command -v redis-server >/dev/null 2>&1; then
    echo "==> installing redis-server (apt-get)"
    local sudo=""
    if [[ "$(id -u)" != "0" ]]; then sudo="sudo"; fi
    ${sudo} apt-get update -qq >/dev/null || { echo "apt-get update failed" >&2; return 1; }
    DEBIAN_FRONTEND=noninteractive ${sudo} apt-get install -y -qq redis-server >/dev/null \
      || { echo "cannot install redis-server with apt-get" >&2; return 1; }
    # The package starts a system service on 6379; the tests use their own instances.
    (${sudo} service redis-server stop >/dev/null 2>&1 || true)
  fi
  REDIS_SERVER_BIN="$(command -v redis-server)"
}

redis_start() {
  local port deadline
  redis_ensure
  REDIS_DIR="$(mktemp -d -t chatbox-redis.XXXXXX)"
  port="$(free_port)"
  "${REDIS_SERVER_BIN}" --bind 127.0.0.1 --port "${port}" --dir "${REDIS_DIR}" \
    --save '' --appendonly no --protected-mode yes \
    >"${REDIS_DIR}/redis.log" 2>&1 &
  REDIS_PID=$!
  deadline=$(( SECONDS + 20 ))
  until [[ "$(printf 'PING\r\n' | timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/${port}; cat >&3; head -c 7 <&3" 2>/dev/null)" == "+PONG"* ]]; do
    if ! kill -0 "${REDIS_PID}" 2>/dev/null; then
      echo "redis-server exited during start-up; its log:" >&2
      cat "${REDIS_DIR}/redis.log" >&2
      REDIS_PID=""
      return 1
    fi
    if (( SECONDS >= deadline )); then
      echo "redis-server did not answer on 127.0.0.1:${port} within 20 s" >&2
      return 1
    fi
    sleep 0.1
  done
  export REDIS_URL="redis://127.0.0.1:${port}/"
  export REDIS_SERVER_BIN
  echo "==> $("${REDIS_SERVER_BIN}" --version | cut -d' ' -f1-3) (pid ${REDIS_PID}) at ${REDIS_URL}"
}

redis_stop() {
  stop_service REDIS_PID REDIS_DIR
}

if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
  set -euo pipefail
  # shellcheck source=scripts/ferretdb.sh
  source "$(dirname "${BASH_SOURCE[0]}")/ferretdb.sh"
  trap redis_stop EXIT
  trap 'exit 130' INT TERM
  redis_start
  echo "export REDIS_URL=${REDIS_URL}   (Ctrl-C stops it)"
  wait "${REDIS_PID}"
fi
