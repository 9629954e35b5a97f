#!/usr/bin/env bash
# The whole test suite: installs redis-server and memcached where missing, then
# runs every test of every crate with every feature. The tests that need a
# server start their own on free loopback ports and stop them at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-features --locked
