#!/usr/bin/env bash
# FerretDB (a MongoDB-compatible server on SQLite) for the tests.
#
# Sourced by scripts/test.sh, which calls:
#   ferretdb_ensure        -> sets FERRETDB_BIN to a working ferretdb v1.24.2 binary (installs/builds it if needed)
#   ferretdb_start         -> starts it on a free loopback port in a temp dir, waits until it accepts
#                             connections, exports MONGODB_URI (and FERRETDB_BIN)
#   ferretdb_stop          -> stops it and removes its temp dir (safe to call twice)
# Run directly (`scripts/ferretdb.sh`) it starts one in the foreground and prints the URI, for manual work.

FERRETDB_VERSION="v1.24.2"
FERRETDB_MODULE="github.com/FerretDB/FerretDB"
FERRETDB_PID=""
FERRETDB_DIR=""

# Prints a free TCP port on 127.0.0.1.
free_port() {
  if command -v python3 >/dev/null 2>&1; then
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
    return
  fi
  local port
  for _ in $(seq 1 100); do
    port=$(( (RANDOM % 20000) + 30000 ))
    if ! (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; then
      echo "${port}"
      return
    fi
  done
  echo "no free port found" >&2
  return 1
}

# True when the binary runs (the `go install` build of v1.24.2 panics at start-up because the
# module zip lacks build/version/version.txt).
ferretdb_works() {
  [[ -x "$1" ]] && "$1" --version >/dev/null 2>&1
}

ferretdb_ensure() {
  local gobin cache src
  gobin="$(go env GOPATH)/bin/ferretdb"
  cache="${CHATBOX_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatbox-tools}/ferretdb-${FERRETDB_VERSION}"

  if [[ -n "${FERRETDB_BIN:-}" ]] && ferretdb_works "${FERRETDB_BIN}"; then return 0; fi
  if ferretdb_works "${cache}/ferretdb"; then FERRETDB_BIN="${cache}/ferretdb"; return 0; fi
  if [[ ! -x "${gobin}" ]]; then
    echo "==> installing FerretDB ${FERRETDB_VERSION} (go install)"
    go install "${FERRETDB_MODULE}/cmd/ferretdb@${FERRETDB_VERSION}" || true
  fi
  if ferretdb_works "${gobin}"; then FERRETDB_BIN="${gobin}"; return 0; fi

  # Fallback: build from a writable copy of the module with the version file it needs.
  echo "==> building FerretDB ${FERRETDB_VERSION} from its module source into ${cache}"
  src="$(go mod download -json "${FERRETDB_MODULE}@${FERRETDB_VERSION}" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  if [[ -z "${src}" || ! -d "${src}" ]]; then
    echo "cannot download ${FERRETDB_MODULE}@${FERRETDB_VERSION}" >&2
    return 1
  fi
  mkdir -p "${cache}"
  rm -rf "${cache}/src"
  cp -r "${src}" "${cache}/src"
  chmod -R u+w "${cache}/src"
  echo "${FERRETDB_VERSION}" > "${cache}/src/build/version/version.txt"
  (cd "${cache}/src" && go build -o "${cache}/ferretdb" ./cmd/ferretdb)
  rm -rf "${cache}/src"
  if ! ferretdb_works "${cache}/ferretdb"; then
    echo "the FerretDB build at ${cache}/ferretdb does not run" >&2
    return 1
  fi
  FERRETDB_BIN="${cache}/ferretdb"
}

ferretdb_start() {
  local port deadline
  ferretdb_ensure
  FERRETDB_DIR="$(mktemp -d -t chatbox-ferretdb.XXXXXX)"
  port="$(free_port)"
  "${FERRETDB_BIN}" \
    --handler=sqlite \
    --sqlite-url="file:${FERRETDB_DIR}/" \
    --state-dir="${FERRETDB_DIR}" \
    --listen-addr="127.0.0.1:${port}" \
    --debug-addr=- \
    --telemetry=disable \
    --log-level=WARN \
    >"${FERRETDB_DIR}/ferretdb.log" 2>&1 &
  FERRETDB_PID=$!

  deadline=$(( SECONDS + 30 ))
  until (exec 3<>"/dev/tcp/127.0.0.1/${port}") 2>/dev/null; do
    if ! kill -0 "${FERRETDB_PID}" 2>/dev/null; then
      echo "FerretDB exited during start-up; its log:" >&2
      cat "${FERRETDB_DIR}/ferretdb.log" >&2
      FERRETDB_PID=""
      return 1
    fi
    if (( SECONDS >= deadline )); then
      echo "FerretDB did not accept connections on 127.0.0.1:${port} within 30 s" >&2
      return 1
    fi
    sleep 0.1
  done
  export MONGODB_URI="mongodb://127.0.0.1:${port}/"
  # Tests that take a database down start FerretDB processes of their own from this binary.
  export FERRETDB_BIN
  echo "==> FerretDB ${FERRETDB_VERSION} (pid ${FERRETDB_PID}) at ${MONGODB_URI}"
}

# Stops the process whose pid is in the variable named $1 and removes the directory named in the variable
# $2, then empties both variables (safe to call twice).
stop_service() {
  local pid_var=$1 dir_var=$2
  if [[ -n "${!pid_var}" ]]; then
    kill "${!pid_var}" 2>/dev/null || true
    wait "${!pid_var}" 2>/dev/null || true
    printf -v "${pid_var}" '%s' ""
  fi
  if [[ -n "${!dir_var}" ]]; then
    rm -rf "${!dir_var}"
    printf -v "${dir_var}" '%s' ""
  fi
}

ferretdb_stop() {
  stop_service FERRETDB_PID FERRETDB_DIR
}

if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
  set -euo pipefail
  trap ferretdb_stop EXIT
  trap 'exit 130' INT TERM
  ferretdb_start
  echo "export MONGODB_URI=${MONGODB_URI}   (Ctrl-C stops it)"
  wait "${FERRETDB_PID}"
fi
