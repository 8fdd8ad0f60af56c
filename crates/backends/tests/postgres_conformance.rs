//! The whole conformance suite against the PostgreSQL backend, each check
//! in its own schema (dropped afterwards): reopen (drop every handle,
//! open the schema again), a second independent engine on the same schema
//! (`open_another`, as another process would: its own pool), and
//! tampering through the engine seam (`stowage_conformance::tamper_engine`).
//!
//! Uses `STOWAGE_TEST_POSTGRES_URL` when set, else a private server (see
//! `support/postgres_server.rs`).
#![cfg(feature = "postgres")]

#[path = "support/postgres_server.rs"]
mod postgres_server;

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use stowage_backends::postgres::{PostgresEngine, PostgresOptions};
use stowage_conformance::{Harness, Tamper};
use stowage_core::{Error, Result, StoreEnv, Stores};

/// One schema per check (and one for `open_with`); the engine last opened
/// is kept for `tamper`.
struct PgHarness {
    schema: String,
    env_schema: String,
    engine: Mutex<Option<Arc<PostgresEngine>>>,
}

impl PgHarness {
    fn options(schema: &str) -> Result<PostgresOptions> {
        let mut opts = PostgresOptions::from_url(&postgres_server::url(schema, ""))?;
        opts.pool_size = 8;
        Ok(opts)
    }

    async fn open_at(&self, schema: &str, env: StoreEnv) -> Result<Stores> {
        let engine = PostgresEngine::open(Self::options(schema)?).await?;
        *self.engine.lock() = Some(Arc::clone(&engine));
        Ok(stowage_core::engine::stores(engine, env))
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        postgres_server::drop_schema(&self.schema);
        postgres_server::drop_schema(&self.env_schema);
    }
}

#[async_trait]
impl Harness for PgHarness {
    async fn open(&self) -> Result<Stores> {
        self.open_at(&self.schema, StoreEnv::default()).await
    }

    async fn reopen(&self, stores: Stores) -> Result<Stores> {
        drop(stores);
        self.engine.lock().take();
        self.open().await
    }

    async fn open_another(&self, _stores: &Stores) -> Result<Stores> {
        // An independent engine: its own pool of connections.
        let engine = PostgresEngine::open(Self::options(&self.schema)?).await?;
        Ok(stowage_core::engine::stores(engine, StoreEnv::default()))
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        self.open_at(&self.env_schema, env).await
    }

    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        let engine = self
            .engine
            .lock()
            .clone()
            .ok_or_else(|| Error::internal("the harness has no open engine"))?;
        stowage_conformance::tamper_engine(&*engine, target).await
    }
}

async fn postgres_harness() -> PgHarness {
    PgHarness {
        schema: postgres_server::unique_schema("conf"),
        env_schema: postgres_server::unique_schema("env"),
        engine: Mutex::new(None),
    }
}

stowage_conformance::conformance_tests!(postgres_harness);
