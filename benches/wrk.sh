#!/usr/bin/env bash
# Loopback throughput of one axum server: /throttled (a GCRA throttle on the
# in-memory backend that never denies) against /plain (the same handler, no
# throttle), alternating three 10-second wrk runs each, in one run.
# Needs wrk (apt-get install -y wrk). Usage: benches/wrk.sh [threads] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
threads=${1:-1}
connections=${2:-64}
port=$((40000 + RANDOM % 20000))
cargo build -q --release -p traffik-benches --bin wrk-server
target/release/wrk-server "$port" &
server=$!
trap 'kill $server 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -s "http://127.0.0.1:$port/plain" >/dev/null && break
  sleep 0.1
done
rps() {
  wrk -t"$threads" -c"$connections" -d10s "http://127.0.0.1:$port/$1" | awk '/Requests\/sec/ {print $2}'
}
# Warm up both routes.
wrk -t1 -c8 -d2s "http://127.0.0.1:$port/plain" >/dev/null
wrk -t1 -c8 -d2s "http://127.0.0.1:$port/throttled" >/dev/null
plain=(); throttled=()
for round in 1 2 3; do
  plain+=("$(rps plain)")
  throttled+=("$(rps throttled)")
  echo "round $round: plain ${plain[-1]} req/s, throttled ${throttled[-1]} req/s"
done
median() { printf '%s\n' "$@" | sort -g | sed -n 2p; }
p=$(median "${plain[@]}"); t=$(median "${throttled[@]}")
echo "median: plain $p req/s, throttled $t req/s, ratio $(awk -v t="$t" -v p="$p" 'BEGIN {printf "%.3f", t / p}')"
