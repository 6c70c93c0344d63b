#!/usr/bin/env bash
# Upload and download throughput and the server's memory for large files, through the release binary.
#
#   scripts/bench-uploads.sh local|s3 [SIZES_MIB...]     (default sizes: 10 100)
#
# Starts `target/release/chatbox` on 127.0.0.1:8099 with the embedded store and uploads in the data
# directory (local) or in a fresh bucket of an S3-compatible server (s3: CHATBOX_TEST_S3_ENDPOINT, e.g. the
# moto server scripts/moto.sh starts). For each size: a PNG-shaped file of random bytes is uploaded with
# curl (multipart), downloaded whole, then the server's resident memory now and at its peak (VmRSS,
# VmHWM) is read. The floor is the same bytes copied on the same disk (`cp`, then `cat` to /dev/null).
# Needs `cargo build --release --bin chatbox`, curl and python3. Method and results: docs/benchmarks.md.
set -euo pipefail
mode=${1:-local}
shift || true
sizes=("$@")
[[ $# -eq 0 ]] && sizes=(10 100)
root=$(cd "$(dirname "$0")/.." && pwd)
bin="${root}/target/release/chatbox"
secret="Zk3q9Vb7Lm2Xw8Rt5Yp1Hs4Nd6Gf0Jc-bench"
work=$(mktemp -d)
server=""
cleanup() {
  [[ -n "${server}" ]] && kill "${server}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "${work}"
}
trap cleanup EXIT

token=$(python3 - "${secret}" <<'EOF'
import base64, hashlib, hmac, json, sys
enc = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
head = enc(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
body = enc(json.dumps({"user_id": "bench", "roles": ["user"]}).encode())
sig = enc(hmac.new(sys.argv[1].encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
print(f"{head}.{body}.{sig}")
EOF
)

extra=()
if [[ "${mode}" == s3 ]]; then
  endpoint="${CHATBOX_TEST_S3_ENDPOINT:?set CHATBOX_TEST_S3_ENDPOINT (scripts/moto.sh starts one)}"
  bucket="bench-$(date +%s)"
  curl -sf -X PUT "${endpoint}/${bucket}" >/dev/null
  extra=(UPLOADS_S3_BUCKET="${bucket}" UPLOADS_S3_ENDPOINT="${endpoint}" AWS_ACCESS_KEY_ID=test
    AWS_SECRET_ACCESS_KEY=test UPLOADS_S3_REGION=us-east-1)
fi
env -u REDIS_URL -u MONGO_URI CHATBOX_DATA_DIR="${work}/data" SERVER_PORT=8099 SERVER_HOST=127.0.0.1 JWT_SECRET="${secret}" \
  LOG_LEVEL=warn UPLOADS_MAX_SIZE=$((1024 * 1024 * 1024)) UPLOADS_QUOTA=$((8 * 1024 * 1024 * 1024)) \
  RATE_LIMIT=1000 "${extra[@]}" "${bin}" >/dev/null 2>"${work}/server.err" &
server=$!
for _ in $(seq 150); do curl -sf http://127.0.0.1:8099/chatbox/readyz >/dev/null && break; sleep 0.2; done
kill -0 "${server}" 2>/dev/null || { echo "the server did not start:" >&2; cat "${work}/server.err" >&2; exit 1; }
mem() { awk -v k="$1:" '$1 == k {print $2}' "/proc/${server}/status"; }
echo "mode=${mode} idle_rss_kib=$(mem VmRSS)"

for mib in "${sizes[@]}"; do
  file="${work}/f${mib}.png"
  { printf '\x89PNG\r\n\x1a\n'; head -c $((mib * 1024 * 1024 - 8)) /dev/urandom; } >"${file}"
  bytes=$(stat -c %s "${file}")
  start=$(date +%s.%N)
  cp "${file}" "${work}/copy"
  sync "${work}/copy"
  mid=$(date +%s.%N)
  cat "${work}/copy" >/dev/null
  end=$(date +%s.%N)
  rm -f "${work}/copy"
  floor_write=$(echo "${bytes} / (${mid} - ${start}) / 1048576" | bc -l)
  floor_read=$(echo "${bytes} / (${end} - ${mid}) / 1048576" | bc -l)
  answer=$(curl -s -w '\n%{http_code} %{time_total}' -H "Authorization: Bearer ${token}" \
    -F "file=@${file};filename=big.png" http://127.0.0.1:8099/chatbox/uploads)
  status_time=$(tail -n1 <<<"${answer}")
  id=$(head -n1 <<<"${answer}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["file_id"])')
  up_time=${status_time#* }
  up_rss=$(mem VmRSS) up_peak=$(mem VmHWM)
  down=$(curl -s -o "${work}/back" -w '%{http_code} %{time_total}' -H "Authorization: Bearer ${token}" \
    "http://127.0.0.1:8099/chatbox/uploads/${id}")
  down_time=${down#* }
  cmp -s "${file}" "${work}/back" || { echo "downloaded bytes differ" >&2; exit 1; }
  rm -f "${work}/back"
  printf 'size_mib=%s upload_mib_s=%.1f download_mib_s=%.1f floor_write_mib_s=%.1f floor_read_mib_s=%.1f rss_after_upload_kib=%s peak_rss_kib=%s peak_rss_after_download_kib=%s\n' \
    "${mib}" "$(echo "${bytes} / ${up_time} / 1048576" | bc -l)" \
    "$(echo "${bytes} / ${down_time} / 1048576" | bc -l)" "${floor_write}" "${floor_read}" \
    "${up_rss}" "${up_peak}" "$(mem VmHWM)"
  rm -f "${file}"
done
