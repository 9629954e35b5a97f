#!/usr/bin/env bash
# The demo under a one-client flood on /items/1 (nearly every request a
# 429), on the in-memory backend, on Redis with the deny cache (the default)
# and on Redis without it (`?deny_cache=0`): wrk with 1 thread and 64
# connections, three alternating 10-second rounds each, medians and p99s.
# Starts its own redis-server. Needs wrk (apt-get install -y wrk).
# Usage: benches/wrk_demo.sh
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p traffik-examples --example server
work=$(mktemp -d)
redis_port=$((40000 + RANDOM % 10000))
redis-server --port "$redis_port" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
redis=$!
server=""
trap 'kill $redis ${server:-} 2>/dev/null || true; rm -rf "$work"' EXIT
for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && break; sleep 0.1; done
rules() { sed "s|^local = \"memory://\"|local = \"$1\"|" examples/rules.toml > "$work/$2.toml"; }
rules "memory://" memory
rules "redis://127.0.0.1:$redis_port/0" redis
rules "redis://127.0.0.1:$redis_port/0?deny_cache=0" redis-uncached
run() {
  local port=$((50000 + RANDOM % 10000))
  PORT=$port TRAFFIK_RULES="$work/$1.toml" target/release/examples/server >/dev/null 2>&1 &
  server=$!
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/" >/dev/null && break; sleep 0.05; done
  wrk -t1 -c64 -d2s "http://127.0.0.1:$port/items/1" >/dev/null
  wrk -t1 -c64 -d10s --latency "http://127.0.0.1:$port/items/1" > "$work/out"
  kill "$server"; wait "$server" 2>/dev/null || true; server=""
  local rps p99
  rps=$(awk '/Requests\/sec/ {print $2}' "$work/out")
  p99=$(awk '$1 == "99%" {print $2}' "$work/out")
  echo "$rps $p99"
}
declare -A rps p99
for round in 1 2 3; do
  for backend in memory redis redis-uncached; do
    read -r r p < <(run "$backend")
    rps[$backend]+="$r "; p99[$backend]+="$p "
    echo "round $round: $backend $r req/s, p99 $p"
  done
done
median() { printf '%s\n' $1 | sort -g | sed -n 2p; }
m=$(median "${rps[memory]}")
for backend in memory redis redis-uncached; do
  r=$(median "${rps[$backend]}")
  echo "median: $backend $r req/s (p99s: ${p99[$backend]}), $(awk -v r="$r" -v m="$m" 'BEGIN {printf "%.2f", r / m}')x memory"
done
