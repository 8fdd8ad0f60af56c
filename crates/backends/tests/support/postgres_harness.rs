//! The conformance harness over PostgreSQL, for any server: each check in
//! its own schema, reopen (drop every handle, open the schema again), a
//! second independent engine on the same schema (`open_another`, as
//! another process would: its own pool), and tampering through the engine
//! seam (`stowage_conformance::tamper_engine`). Needs `postgres_server`
//! declared beside it.
#![allow(dead_code, unreachable_pub)]

use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use stowage_backends::postgres::{PostgresEngine, PostgresOptions};
use stowage_conformance::{Harness, Tamper};
use stowage_core::{Error, Result, StoreEnv, Stores};

use super::postgres_server;

/// One schema per check (and one for `open_with`); the engine last opened
/// is kept for `tamper`.
pub struct PgHarness {
    /// The store URL of a schema.
    url: fn(&str) -> String,
    /// Whether the schemas are dropped afterwards (on the binary's server:
    /// a private server of a test's own goes away whole).
    drop_schemas: bool,
    schema: String,
    env_schema: String,
    engine: Mutex<Option<Arc<PostgresEngine>>>,
}

impl PgHarness {
    /// A harness whose stores are at `url(schema)`.
    pub fn new(url: fn(&str) -> String, drop_schemas: bool) -> PgHarness {
        PgHarness {
            url,
            drop_schemas,
            schema: postgres_server::unique_schema("conf"),
            env_schema: postgres_server::unique_schema("env"),
            engine: Mutex::new(None),
        }
    }

    fn options(&self, schema: &str) -> Result<PostgresOptions> {
        let mut opts = PostgresOptions::from_url(&(self.url)(schema))?;
        opts.pool_size = 8;
        Ok(opts)
    }

    async fn open_at(&self, schema: &str, env: StoreEnv) -> Result<Stores> {
        let engine = PostgresEngine::open(self.options(schema)?).await?;
        *self.engine.lock() = Some(Arc::clone(&engine));
        Ok(stowage_core::engine::stores(engine, env))
    }
}

impl Drop for PgHarness {
    fn drop(&mut self) {
        if self.drop_schemas {
            postgres_server::drop_schema(&self.schema);
            postgres_server::drop_schema(&self.env_schema);
        }
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
        let engine = PostgresEngine::open(self.options(&self.schema)?).await?;
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
