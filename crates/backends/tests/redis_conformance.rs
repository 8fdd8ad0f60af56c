//! The whole conformance suite against a real `redis-server`, each check
//! under its own key prefix (nothing is ever flushed). The server comes
//! from `STOWAGE_TEST_REDIS_URL`, or a private one is started on a free
//! loopback port (see `support/redis_server.rs`).
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

async fn redis_harness() -> redis_server::RedisHarness {
    redis_server::RedisHarness::standalone()
}

stowage_conformance::conformance_tests!(redis_harness);
