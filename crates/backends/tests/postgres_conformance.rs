//! The whole conformance suite against the PostgreSQL backend, each check
//! in its own schema (dropped afterwards): reopen (drop every handle,
//! open the schema again), a second independent engine on the same schema
//! (`open_another`, as another process would: its own pool), and
//! tampering through the engine seam (`stowage_conformance::tamper_engine`).
//! See `support/postgres_harness.rs`.
//!
//! Uses `STOWAGE_TEST_POSTGRES_URL` when set, else a private server (see
//! `support/postgres_server.rs`).
#![cfg(feature = "postgres")]

#[path = "support/postgres_harness.rs"]
mod postgres_harness;
#[path = "support/postgres_server.rs"]
mod postgres_server;

use postgres_harness::PgHarness;

async fn postgres_harness() -> PgHarness {
    PgHarness::new(|schema| postgres_server::url(schema, ""), true)
}

stowage_conformance::conformance_tests!(postgres_harness);
