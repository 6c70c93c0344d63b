#!/usr/bin/env bash
# Runs every check of the project: starts the services the tests need on loopback ports, then
# fmt, clippy and all tests, and stops what it started on every exit path.
#
# Services: FerretDB (MONGODB_URI), Redis (REDIS_URL), moto, an S3-compatible server (CHATBOX_TEST_S3_ENDPOINT,
# and CHATBOX_TEST_S3_PYTHON, a Python with boto3). To add one (Redis, SMTP, ...), write scripts/<name>.sh with
# <name>_start (exporting its URL variable) and <name>_stop, source it below, and add its
# start/stop calls to start_services/stop_services.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

# shellcheck source=scripts/ferretdb.sh
source scripts/ferretdb.sh
# shellcheck source=scripts/redis.sh
source scripts/redis.sh
# shellcheck source=scripts/moto.sh
source scripts/moto.sh
# shellcheck source=scripts/ts-client.sh
source scripts/ts-client.sh
# shellcheck source=scripts/contract.sh
source scripts/contract.sh
# shellcheck source=scripts/console.sh
source scripts/console.sh

# aiosmtpd (PyPI), the real SMTP server of the notification tests: installed once into a venv under the
# tools cache; the tests start it themselves and find its interpreter through CHATBOX_TEST_PYTHON.
AIOSMTPD_SPEC="aiosmtpd>=1.4,<2"
aiosmtpd_ensure() {
  local venv
  venv="${CHATBOX_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatbox-tools}/aiosmtpd-venv"
  if ! "${venv}/bin/python" -c 'import aiosmtpd' >/dev/null 2>&1; then
    echo "==> installing ${AIOSMTPD_SPEC} into ${venv}"
    python3 -m venv "${venv}" || { echo "cannot create a Python venv (python3 -m venv)" >&2; return 1; }
    "${venv}/bin/pip" install --quiet "${AIOSMTPD_SPEC}" || { echo "cannot install ${AIOSMTPD_SPEC}" >&2; return 1; }
  fi
  export CHATBOX_TEST_PYTHON="${venv}/bin/python"
}

start_services() {
  aiosmtpd_ensure
  ferretdb_start
  redis_start
  moto_start
  # smtp_start    # later: exports SMTP_URL
}

stop_services() {
  # smtp_stop
  moto_stop
  redis_stop
  ferretdb_stop
}

trap stop_services EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

start_services

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets -- -D warnings
echo "==> cargo build -p chatbox-tools (the load-tool tests of tests/api run its chatbox-load)"
cargo build -p chatbox-tools
contract_gates
echo "==> cargo test"
cargo test --workspace --all-targets
echo "==> cargo test --doc"
cargo test --workspace --doc
echo "==> TypeScript client against the live server (scripts/ts-client.sh)"
ts_client_run
echo "==> the web console in Chromium against the live server (scripts/console.sh)"
console_run
echo "==> all checks passed"
