#!/usr/bin/env bash
# moto (PyPI) in server mode: an S3-compatible server for the tests of file storage.
#
# Sourced by scripts/test.sh, which calls:
#   moto_ensure  -> sets MOTO_VENV to a venv under the tools cache with moto[server] (and boto3, which moto
#                   depends on), installing it there once when it is missing
#   moto_start   -> starts moto_server on a free loopback port (in-memory, its log in a temp dir), waits
#                   until it answers HTTP, exports CHATBOX_TEST_S3_ENDPOINT (http://127.0.0.1:<port>) and
#                   CHATBOX_TEST_S3_PYTHON (the venv's python: tests read raw objects with its boto3)
#   moto_stop    -> stops it and removes its temp dir (safe to call twice)
# Any access key, secret and region are accepted (test/test and us-east-1 will do); buckets live
# only as long as the process. Run directly (`scripts/moto.sh`) it starts one in the foreground and prints
# the endpoint, for manual work. Uses free_port and stop_service from scripts/ferretdb.sh, which it sources
# when they are not defined yet (so `source scripts/moto.sh; moto_start` works on its own).

if ! declare -F free_port >/dev/null || ! declare -F stop_service >/dev/null; then
  # shellcheck source=scripts/ferretdb.sh
  source "$(dirname "${BASH_SOURCE[0]}")/ferretdb.sh"
fi

MOTO_SPEC="moto[server]>=5,<6"
MOTO_PID=""
MOTO_DIR=""

moto_ensure() {
  MOTO_VENV="${CHATBOX_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatbox-tools}/moto-venv"
  if [[ -x "${MOTO_VENV}/bin/moto_server" ]] \
    && "${MOTO_VENV}/bin/python" -c 'import moto.server, boto3' >/dev/null 2>&1; then
    return 0
  fi
  echo "==> installing ${MOTO_SPEC} into ${MOTO_VENV}"
  python3 -m venv "${MOTO_VENV}" || { echo "cannot create a Python venv (python3 -m venv)" >&2; return 1; }
  "${MOTO_VENV}/bin/pip" install --quiet "${MOTO_SPEC}" || { echo "cannot install ${MOTO_SPEC}" >&2; return 1; }
}

# True when an HTTP server answers on 127.0.0.1:$1 (any status line).
moto_answers() {
  [[ "$(printf 'GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n' \
    | timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1; cat >&3; head -c 7 <&3" 2>/dev/null)" == "HTTP/1."* ]]
}

moto_start() {
  local port deadline
  moto_ensure
  MOTO_DIR="$(mktemp -d -t chatbox-moto.XXXXXX)"
  port="$(free_port)"
  "${MOTO_VENV}/bin/moto_server" -H 127.0.0.1 -p "${port}" >"${MOTO_DIR}/moto.log" 2>&1 &
  MOTO_PID=$!
  deadline=$(( SECONDS + 30 ))
  until moto_answers "${port}"; do
    if ! kill -0 "${MOTO_PID}" 2>/dev/null; then
      echo "moto_server exited during start-up; its log:" >&2
      cat "${MOTO_DIR}/moto.log" >&2
      MOTO_PID=""
      return 1
    fi
    if (( SECONDS >= deadline )); then
      echo "moto_server did not answer on 127.0.0.1:${port} within 30 s; its log:" >&2
      cat "${MOTO_DIR}/moto.log" >&2
      return 1
    fi
    sleep 0.1
  done
  export CHATBOX_TEST_S3_ENDPOINT="http://127.0.0.1:${port}"
  export CHATBOX_TEST_S3_PYTHON="${MOTO_VENV}/bin/python"
  echo "==> moto $("${CHATBOX_TEST_S3_PYTHON}" -c 'import importlib.metadata as m; print(m.version("moto"))') (pid ${MOTO_PID}) at ${CHATBOX_TEST_S3_ENDPOINT}"
}

moto_stop() {
  stop_service MOTO_PID MOTO_DIR
}

if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
  set -euo pipefail
  trap moto_stop EXIT
  trap 'exit 130' INT TERM
  moto_start
  echo "export CHATBOX_TEST_S3_ENDPOINT=${CHATBOX_TEST_S3_ENDPOINT}   (Ctrl-C stops it)"
  wait "${MOTO_PID}"
fi
