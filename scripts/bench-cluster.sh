#!/usr/bin/env bash
# One run of chatbox-load against N release nodes on a fresh FerretDB database (and, in cluster mode, a
# fresh Redis), then the nodes' summed CPU time, Redis's and FerretDB's CPU time and Redis's command counts.
#
#   scripts/bench-cluster.sh NODES cluster|single LOAD-ARGS...
#   e.g. scripts/bench-cluster.sh 3 cluster turns --connections 99 --rate 100 --duration 20
#
# Needs `cargo build --release --bin chatbox` and `cargo build --release -p chatbox-tools`, a ferretdb
# binary (FERRETDB_BIN, as scripts/ferretdb.sh installs it) and redis-server / redis-cli on the PATH.
# Nodes listen on 8091..; FerretDB on 27019, Redis on 26380 (all loopback). Method: docs/benchmarks.md.
set -euo pipefail
nodes=$1 mode=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
bin="${root}/target/release"
ferretdb="${FERRETDB_BIN:-${HOME}/.cache/chatbox-tools/ferretdb-v1.24.2/ferretdb}"
export JWT_SECRET="${JWT_SECRET:-Zk3q9Vb7Lm2Xw8Rt5Yp1Hs4Nd6Gf0Jc-bench}"
work=$(mktemp -d)
pids=()
cleanup() {
  kill "${pids[@]}" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "${work}"
}
trap cleanup EXIT

mkdir -p "${work}/fdb" "${work}/redis"
"${ferretdb}" --handler=sqlite --sqlite-url="file:${work}/fdb/" --state-dir="${work}/fdb" \
  --listen-addr=127.0.0.1:27019 --debug-addr=- --telemetry=disable --log-level=ERROR >/dev/null 2>&1 &
fdb_pid=$!
redis-server --bind 127.0.0.1 --port 26380 --save '' --appendonly no --dir "${work}/redis" >/dev/null 2>&1 &
redis_pid=$!
pids+=("${fdb_pid}" "${redis_pid}")
for _ in $(seq 100); do redis-cli -p 26380 PING >/dev/null 2>&1 && break; sleep 0.1; done

node_pids=()
urls=()
for i in $(seq "${nodes}"); do
  port=$((8090 + i))
  cluster=()
  [[ "${mode}" == cluster ]] && cluster=(REDIS_URL=redis://127.0.0.1:26380/)
  (ulimit -n 20000; exec env CHATBOX_DATA_DIR="${work}/node${i}" SERVER_PORT="${port}" MAX_CONNECTIONS=20000 \
    LLM_DEMO_TOKEN_DELAY_MS=0 LOG_LEVEL=warn MONGO_URI=mongodb://127.0.0.1:27019/ MONGO_DATABASE=bench \
    ENCRYPTION_KEY=7f3a9c21e4b85d06f1a2c3e4d5b6a7980fedcba9876543210a1b2c3d4e5f6a7b \
    "${cluster[@]}" "${bin}/chatbox" >/dev/null 2>"${work}/node${i}.err") &
  node_pids+=($!)
  pids+=($!)
  urls+=("ws://127.0.0.1:${port}/chatbox/ws")
done
for i in $(seq "${nodes}"); do
  for _ in $(seq 150); do
    curl -sf "http://127.0.0.1:$((8090 + i))/chatbox/readyz" >/dev/null && break
    sleep 0.2
  done
done

cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
node_cpu() { local sum=0; for p in "${node_pids[@]}"; do sum=$((sum + $(cpu "$p"))); done; echo "${sum}"; }
redis-cli -p 26380 CONFIG RESETSTAT >/dev/null
before=($(node_cpu) $(cpu "${redis_pid}") $(cpu "${fdb_pid}"))
extra=()
[[ "${nodes}" == 1 ]] && extra=(--server-pid "${node_pids[0]}")
"${bin}/chatbox-load" --url "$(IFS=,; echo "${urls[*]}")" "${extra[@]}" "$@"
after=($(node_cpu) $(cpu "${redis_pid}") $(cpu "${fdb_pid}"))
ticks=$(getconf CLK_TCK)
echo "== CPU seconds: nodes $(( (after[0] - before[0]) * 100 / ticks ))e-2, redis $(( (after[1] - before[1]) * 100 / ticks ))e-2, ferretdb $(( (after[2] - before[2]) * 100 / ticks ))e-2"
for p in "${node_pids[@]}"; do echo "node ${p} $(grep VmRSS "/proc/${p}/status")"; done
redis-cli -p 26380 INFO stats | grep -E 'total_commands_processed|pubsub_channels'
redis-cli -p 26380 INFO commandstats | grep -oE '^cmdstat_[a-z]+:calls=[0-9]+,usec=[0-9]+'
