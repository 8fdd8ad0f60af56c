#!/usr/bin/env bash
# Runs every test of stowage (all backends, the conformance suite against
# each, the fakes, crash and fault tests, doc tests), installing what a fresh
# machine lacks first. Extra arguments go to `cargo test`.
#
# Redis tests use STOWAGE_TEST_REDIS_URL when set; otherwise they start a
# private redis-server on a free loopback port and stop it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cargo test --workspace --all-features "$@"
