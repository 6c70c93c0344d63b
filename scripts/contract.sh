#!/usr/bin/env bash
# Contract gates: the specs are valid and lint-clean, and neither breaks its previous release.
#   1. spec/asyncapi.yaml through the official AsyncAPI parser (@asyncapi/parser): 0 errors, 0 warnings;
#   2. spec/openapi.yaml through Redocly CLI lint (recommended ruleset, .redocly.yaml): 0 errors, 0 warnings;
#   3. breaking changes against the previous release, the commit named in spec/RELEASED (a clone of
#      any branch has it; tags are not needed): oasdiff for OpenAPI, `chatbox-codegen compat` for
#      AsyncAPI (a break needs a new major info.version). A shallow clone needs `git fetch --unshallow`.
# The frame and response validation against generated/schemas/ runs inside the cargo tests (tests/api).
#
# Sourced by scripts/test.sh (which calls contract_gates), or run alone: `bash scripts/contract.sh`.
# npm tools come from tools/contract/package-lock.json (`npm ci`, into tools/contract/node_modules);
# oasdiff is built once with `go install` into the tools cache.

CONTRACT_OASDIFF_VERSION="v1.39.0"

contract_tools_dir() {
  echo "${CHATBOX_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/chatbox-tools}"
}

contract_fail() {
  echo "contract gate failed: $*" >&2
  return 1
}

# npm ci, again only when package-lock.json changed since the last install.
contract_npm_ensure() {
  local dir=tools/contract
  if cmp -s "${dir}/package-lock.json" "${dir}/node_modules/.installed-lock.json"; then
    return 0
  fi
  echo "==> npm ci (tools/contract)"
  (cd "${dir}" && npm ci --no-audit --no-fund --loglevel=error) ||
    contract_fail "npm ci in tools/contract (Node 20 and the npm registry are needed)" || return 1
  cp "${dir}/package-lock.json" "${dir}/node_modules/.installed-lock.json"
}

contract_asyncapi_lint() {
  echo "==> AsyncAPI parser: spec/asyncapi.yaml"
  node tools/contract/asyncapi-lint.mjs spec/asyncapi.yaml ||
    contract_fail "spec/asyncapi.yaml has parser errors or warnings (listed above)"
}

contract_openapi_lint() {
  echo "==> Redocly lint: spec/openapi.yaml"
  REDOCLY_TELEMETRY=off REDOCLY_SUPPRESS_UPDATE_NOTICE=true \
    tools/contract/node_modules/.bin/redocly lint spec/openapi.yaml --config .redocly.yaml \
    --format=stylish --max-problems=200 >"${CONTRACT_TMP}/redocly.txt" 2>&1
  local status=$?
  grep -v -e '^ *[║╔╚]' -e '^ *$' "${CONTRACT_TMP}/redocly.txt"
  [[ ${status} -eq 0 ]] || { contract_fail "spec/openapi.yaml has Redocly lint errors (listed above)"; return 1; }
  if grep -q -E '[0-9]+ warnings?\.' "${CONTRACT_TMP}/redocly.txt"; then
    contract_fail "spec/openapi.yaml has Redocly lint warnings (listed above); fix them or relax the rule in .redocly.yaml with a reason"
    return 1
  fi
}

contract_oasdiff_ensure() {
  local bin
  bin="$(contract_tools_dir)/oasdiff-${CONTRACT_OASDIFF_VERSION}"
  if [[ ! -x "${bin}/oasdiff" ]]; then
    echo "==> go install github.com/oasdiff/oasdiff@${CONTRACT_OASDIFF_VERSION}"
    mkdir -p "${bin}"
    GOBIN="${bin}" go install "github.com/oasdiff/oasdiff@${CONTRACT_OASDIFF_VERSION}" ||
      contract_fail "cannot install oasdiff (Go and the Go module proxy are needed)" || return 1
  fi
  CONTRACT_OASDIFF="${bin}/oasdiff"
}

# The commit the specs are compared with: the second field of spec/RELEASED ("<version> <commit>"), which
# each release updates. Read from the file rather than from tags, because a branch pushed or cloned alone
# carries no tags.
contract_baseline() {
  local version commit
  read -r version commit <spec/RELEASED || true
  if [[ -z "${commit}" ]] || ! git cat-file -e "${commit}:spec/openapi.yaml" 2>/dev/null ||
    ! git cat-file -e "${commit}:spec/asyncapi.yaml" 2>/dev/null; then
    return 1
  fi
  echo "${commit}"
}

contract_breaking() {
  local base
  base="$(contract_baseline)" ||
    { contract_fail "spec/RELEASED does not name a commit of this history with both specs (shallow clone? run git fetch --unshallow)"; return 1; }
  echo "==> breaking changes against ${base}"
  git show "${base}:spec/openapi.yaml" >"${CONTRACT_TMP}/openapi.yaml" &&
    git show "${base}:spec/asyncapi.yaml" >"${CONTRACT_TMP}/asyncapi.yaml" ||
    { contract_fail "cannot read the specs of ${base}"; return 1; }
  # --flatten-allof: a described reference (`allOf: [{$ref}]` beside a description) is the schema it wraps.
  # spec/accepted-changes.txt: changes since the release accepted one by one (docs/contract.md says which).
  "${CONTRACT_OASDIFF}" breaking --fail-on ERR --flatten-allof --err-ignore spec/accepted-changes.txt \
    "${CONTRACT_TMP}/openapi.yaml" spec/openapi.yaml ||
    { contract_fail "spec/openapi.yaml breaks the HTTP API of ${base} (oasdiff above)"; return 1; }
  cargo run --quiet -p chatbox-codegen -- compat --old "${CONTRACT_TMP}/asyncapi.yaml" --new spec/asyncapi.yaml ||
    { contract_fail "spec/asyncapi.yaml breaks the WebSocket protocol of ${base} (list above)"; return 1; }
}

# Runs every gate; returns non-zero at the first that fails.
contract_gates() {
  CONTRACT_TMP="$(mktemp -d)"
  local status=0
  {
    contract_npm_ensure &&
      contract_asyncapi_lint &&
      contract_openapi_lint &&
      contract_oasdiff_ensure &&
      contract_breaking
  } || status=1
  rm -rf "${CONTRACT_TMP}"
  [[ ${status} -eq 0 ]] && echo "==> contract gates passed"
  return ${status}
}

if [[ "${BASH_SOURCE[0]}" == "${0}" ]]; then
  set -uo pipefail
  cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 1
  contract_gates
fi
