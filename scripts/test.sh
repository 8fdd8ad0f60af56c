#!/usr/bin/env bash
# Runs every test of stowage (all backends, the conformance suite against
# each, the fakes, crash and fault tests, doc tests), installing what a fresh
# machine lacks first. Extra arguments go to `cargo test`.
#
# Redis tests use STOWAGE_TEST_REDIS_URL when set; otherwise they start a
# private redis-server on a free loopback port and stop it afterwards.
# PostgreSQL tests likewise use STOWAGE_TEST_POSTGRES_URL or start a private
# server (initdb + pg_ctl) in a temp dir; each test works in a schema of its
# own and drops only that schema.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
# Every backend feature (the `testcontainers` test-tooling feature is left
# out: it only matters where a Docker engine runs, and CI lints it).
# The command's tests that need a backend are gated on its own features.
cargo test --workspace \
  -F stowage-backends/file,stowage-backends/rocksdb,stowage-backends/sled,stowage-backends/redis,stowage-backends/sqlite,stowage-backends/postgres \
  -F stowage-cli/sled,stowage-cli/redis,stowage-cli/sqlite,stowage-cli/postgres "$@"
