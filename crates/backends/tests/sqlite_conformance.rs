//! The whole conformance suite against the SQLite backend, each check on
//! its own database file in a fresh temp dir: reopen (drop every handle,
//! open the file again), a second independent engine on the same file
//! (`open_another`, as another process would), and tampering through the
//! engine seam (`stowage_conformance::tamper_engine`).
#![cfg(feature = "sqlite")]

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use stowage_backends::sqlite::{SqliteEngine, SqliteOptions};
use stowage_conformance::{Harness, Tamper};
use stowage_core::{Error, Result, StoreEnv, Stores};

/// One temp dir per check; the engine last opened is kept for `tamper`.
struct SqliteHarness {
    dir: tempfile::TempDir,
    engine: Mutex<Option<Arc<SqliteEngine>>>,
}

impl SqliteHarness {
    fn path(&self) -> PathBuf {
        self.dir.path().join("store.db")
    }

    async fn open_at(&self, path: PathBuf, env: StoreEnv) -> Result<Stores> {
        let engine = SqliteEngine::open(SqliteOptions::new(path)).await?;
        *self.engine.lock() = Some(Arc::clone(&engine));
        Ok(stowage_core::engine::stores(engine, env))
    }
}

#[async_trait]
impl Harness for SqliteHarness {
    async fn open(&self) -> Result<Stores> {
        self.open_at(self.path(), StoreEnv::default()).await
    }

    async fn reopen(&self, stores: Stores) -> Result<Stores> {
        drop(stores);
        self.engine.lock().take();
        self.open().await
    }

    async fn open_another(&self, _stores: &Stores) -> Result<Stores> {
        // An independent engine: its own writer thread and connections.
        let engine = SqliteEngine::open(SqliteOptions::new(self.path())).await?;
        Ok(stowage_core::engine::stores(engine, StoreEnv::default()))
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        self.open_at(self.dir.path().join("with-env.db"), env).await
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

async fn sqlite_harness() -> SqliteHarness {
    SqliteHarness {
        dir: tempfile::tempdir().expect("temp dir"),
        engine: Mutex::new(None),
    }
}

stowage_conformance::conformance_tests!(sqlite_harness);
