#!/usr/bin/env bash
# Installs what the test suite needs and a fresh machine may lack: redis-server,
# redis-cli and memcached (the tests start their own processes on free
# loopback ports; nothing here starts a server), and cargo-hack, with which
# .ci/run checks every feature of every crate on its own.
set -euo pipefail

if ! cargo hack --version >/dev/null 2>&1; then
  echo "setup: installing cargo-hack" >&2
  cargo install cargo-hack --locked --quiet
fi

missing=()
for bin in redis-server redis-cli memcached; do
  command -v "$bin" >/dev/null 2>&1 || missing+=("$bin")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "setup: installing redis-server and memcached (missing: ${missing[*]})" >&2
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "setup: not root and no sudo; install them yourself: apt-get install -y redis-server memcached" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq redis-server memcached >/dev/null
# Debian's packages may start system-wide servers; the tests use their own.
for service in redis-server memcached; do
  $sudo service "$service" stop >/dev/null 2>&1 || true
done
