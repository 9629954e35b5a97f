#!/usr/bin/env bash
# The whole test suite: installs redis-server and memcached where missing, then
# runs every test of every crate with every feature. The tests that need a
# server start their own on free loopback ports and stop them at the end.
# Last, the in-memory store's concurrency protocol under loom, which runs
# every interleaving of its model threads (its own build, in target/loom).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
cargo test --workspace --all-features --locked
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom \
  cargo test --locked --release -p traffik-backends --no-default-features --features memory --lib loom
