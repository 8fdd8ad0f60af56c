//! A conformance [`Harness`] for the RocksDB and sled engines (in-crate, so
//! `tamper` can reach the engine), and tests of what only a real engine
//! shows: reopening, on-disk tampering, races through the real seam.

use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use stowage_conformance::{Harness, Tamper};
use stowage_core::{Error, ErrorKind, Result, StoreEnv, Stores};

#[cfg(any(feature = "sled", feature = "rocksdb"))]
use super::options::KvUrl;
use super::seam::OrderedKv;
use super::testing::tamper_kv;

/// Which engine a harness opens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Engine {
    #[cfg(feature = "sled")]
    Sled,
    #[cfg(feature = "rocksdb")]
    RocksDb,
    /// Only for the integrity checks, which need to reach the engine; the
    /// whole suite runs in `tests/file_conformance.rs`.
    #[cfg(feature = "file")]
    File,
}

/// One isolated store in a fresh temp dir.
pub(crate) struct EngineHarness {
    engine: Engine,
    dir: tempfile::TempDir,
    open: Mutex<Option<Weak<dyn OrderedKv>>>,
}

impl EngineHarness {
    pub(crate) fn new(engine: Engine) -> Self {
        EngineHarness {
            engine,
            dir: tempfile::tempdir().expect("a temp dir for the store"),
            open: Mutex::new(None),
        }
    }

    fn url(&self) -> String {
        self.url_of(self.dir.path())
    }

    fn url_of(&self, dir: &std::path::Path) -> String {
        let scheme = match self.engine {
            #[cfg(feature = "sled")]
            Engine::Sled => "sled",
            #[cfg(feature = "rocksdb")]
            Engine::RocksDb => "rocksdb",
            #[cfg(feature = "file")]
            Engine::File => "file",
        };
        format!("{scheme}://{}", dir.display())
    }

    async fn open_once(&self) -> Result<Stores> {
        let (engine, stores) = self.open_at(&self.url(), StoreEnv::default()).await?;
        *self.open.lock() = Some(Arc::downgrade(&engine));
        Ok(stores)
    }

    /// Opens the engine at `url` directly (so `tamper` can reach it) and
    /// the stores over it.
    async fn open_at(&self, url: &str, env: StoreEnv) -> Result<(Arc<dyn OrderedKv>, Stores)> {
        let url = url::Url::parse(url).map_err(|e| Error::internal(e.to_string()))?;
        #[cfg(feature = "file")]
        if self.engine == Engine::File {
            // The backend's own capabilities, from a store opened and closed
            // once; then the engine itself.
            let stores = crate::open(url.as_str()).await?;
            let caps = stores.capabilities.clone();
            stores.close().await?;
            let dir = url
                .to_file_path()
                .map_err(|()| Error::internal("a file URL without a path"))?;
            let engine = loop {
                let dir = dir.clone();
                let opened = tokio::task::spawn_blocking(move || {
                    super::file::FileKv::open(&dir, super::file::FileOptions::default())
                })
                .await
                .map_err(|e| Error::internal(e.to_string()))?;
                match opened {
                    Err(e) if e.kind() == ErrorKind::Unavailable => {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                    }
                    other => break other?,
                }
            };
            let engine: Arc<dyn OrderedKv> = Arc::new(engine);
            let stores = super::kv_stores(Arc::clone(&engine), env, caps)?;
            return Ok((engine, stores));
        }
        self.open_library_engine(&url, env).await
    }

    /// [`EngineHarness::open_at`] for the engines of other libraries.
    #[cfg(any(feature = "sled", feature = "rocksdb"))]
    async fn open_library_engine(
        &self,
        url: &url::Url,
        env: StoreEnv,
    ) -> Result<(Arc<dyn OrderedKv>, Stores)> {
        let parsed = KvUrl::parse(url)?;
        let (engine, caps): (Arc<dyn OrderedKv>, _) = match self.engine {
            #[cfg(feature = "sled")]
            Engine::Sled => (
                super::sled::open(&parsed).await?,
                super::sled::capabilities(&parsed),
            ),
            #[cfg(feature = "rocksdb")]
            Engine::RocksDb => (
                super::rocksdb::open(&parsed).await?,
                super::rocksdb::capabilities(&parsed),
            ),
            #[cfg(feature = "file")]
            Engine::File => unreachable!("opened by open_at"),
        };
        let stores = super::kv_stores(Arc::clone(&engine), env, caps)?;
        Ok((engine, stores))
    }

    /// Only the file engine is compiled in, and `open_at` opened it.
    #[cfg(not(any(feature = "sled", feature = "rocksdb")))]
    async fn open_library_engine(
        &self,
        url: &url::Url,
        _env: StoreEnv,
    ) -> Result<(Arc<dyn OrderedKv>, Stores)> {
        Err(Error::internal(format!(
            "no engine of this build opens {url}"
        )))
    }

    fn engine(&self) -> Result<Arc<dyn OrderedKv>> {
        self.open
            .lock()
            .as_ref()
            .and_then(Weak::upgrade)
            .ok_or_else(|| Error::internal("the harness's store is not open"))
    }
}

#[async_trait]
impl Harness for EngineHarness {
    async fn open(&self) -> Result<Stores> {
        self.open_once().await
    }

    async fn reopen(&self, stores: Stores) -> Result<Stores> {
        drop(stores);
        // Wait until the engine is really closed (a dropped upload's
        // cleanup task may hold it for a moment), then open the same dir.
        let weak = self.open.lock().take();
        for _ in 0..500 {
            if weak.as_ref().is_none_or(|w| w.strong_count() == 0) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        for _ in 0..100 {
            match self.open_once().await {
                Err(e) if e.kind() == ErrorKind::Unavailable => {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                other => return other,
            }
        }
        self.open_once().await
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        let dir = self.dir.path().join("with-env");
        let (_engine, stores) = self.open_at(&self.url_of(&dir), env).await?;
        Ok(stores)
    }

    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        let engine = self.engine()?;
        tamper_kv(engine, target).await
    }
}

/// Tests every engine must pass, instantiated per engine below.
#[cfg(any(feature = "sled", feature = "rocksdb"))]
macro_rules! engine_tests {
    ($module:ident, $engine:expr) => {
        mod $module {
            use super::*;
            use crate::kv::seam::{Batch, Table};
            use bytes::Bytes;
            use serde_json::json;
            use stowage_core::{
                Digest, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, RunMetadata, RunSummary,
            };

            async fn harness() -> EngineHarness {
                EngineHarness::new($engine)
            }

            stowage_conformance::conformance_tests!(harness);

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn acknowledged_data_survives_reopen() {
                let h = EngineHarness::new($engine);
                let s = h.open().await.unwrap();
                let blob = Bytes::from(vec![5u8; 1024 * 1024 + 10]);
                let digest = s.cas.put(blob.clone()).await.unwrap();
                let run = s.runs.create_run(Digest::of(b"s"), RunMetadata::new("a:b")).await.unwrap();
                for i in 0..10 {
                    s.runs.append_event(run, NewEvent::new("k", json!(i))).await.unwrap();
                }
                s.runs.complete_run(run, RunSummary::new("done")).await.unwrap();
                s.sessions.create_session("s/1", json!({"x": 1})).await.unwrap();
                let e = NewLogEntry::new(LogKind::Incoming, "u", "t", "hi");
                s.sessions.append_log("s/1", e).await.unwrap();
                let meta = ReleaseMetadata::new("v1", "ci");
                s.releases.promote("🚀", Digest::of(b"a"), meta, None).await.unwrap();
                let s = h.reopen(s).await.unwrap();
                assert_eq!(s.cas.get(&digest).await.unwrap(), blob);
                s.cas.verify(&digest).await.unwrap();
                assert_eq!(s.runs.verify_run(run).await.unwrap().len, 10);
                assert!(s.runs.get_run(run).await.unwrap().status.is_terminal());
                assert_eq!(s.sessions.verify_log("s/1").await.unwrap().len, 1);
                assert_eq!(s.releases.current("🚀").await.unwrap().seq, 0);
                // Appending after reopen continues the chain.
                s.sessions
                    .append_log("s/1", NewLogEntry::new(LogKind::Internal, "u", "t", "2"))
                    .await
                    .unwrap();
                assert_eq!(s.sessions.verify_log("s/1").await.unwrap().len, 2);
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
            async fn racing_appenders_get_gap_free_seqs() {
                let h = EngineHarness::new($engine);
                let s = h.open().await.unwrap();
                let run = s.runs.create_run(Digest::of(b"s"), RunMetadata::new("a")).await.unwrap();
                let tasks: Vec<_> = (0..32)
                    .map(|t| {
                        let runs = Arc::clone(&s.runs);
                        tokio::spawn(async move {
                            let mut seqs = Vec::new();
                            for i in 0..50 {
                                let e = NewEvent::new("k", json!([t, i]));
                                seqs.push(runs.append_event(run, e).await.unwrap().seq);
                            }
                            seqs
                        })
                    })
                    .collect();
                let mut all = Vec::new();
                for t in tasks {
                    all.extend(t.await.unwrap());
                }
                all.sort_unstable();
                assert_eq!(all, (0..1600).collect::<Vec<u64>>());
                let s = h.reopen(s).await.unwrap();
                assert_eq!(s.runs.verify_run(run).await.unwrap().len, 1600);
            }

            #[tokio::test]
            async fn tampering_on_disk_is_corrupted() {
                let h = EngineHarness::new($engine);
                let s = h.open().await.unwrap();
                let digest = s.cas.put(Bytes::from_static(b"hello")).await.unwrap();
                h.tamper(&s, Tamper::Blob(digest)).await.unwrap();
                let s = h.reopen(s).await.unwrap();
                assert_eq!(s.cas.get(&digest).await.unwrap_err().kind(), ErrorKind::Corrupted);
                assert_eq!(s.cas.verify(&digest).await.unwrap_err().kind(), ErrorKind::Corrupted);
            }

            /// A batch applies in the order it was staged: a range delete
            /// removes what the same batch put before it. (sled resolved
            /// range deletes from committed keys only; found by review.)
            #[tokio::test]
            async fn a_range_delete_removes_what_its_batch_put_before_it() {
                let h = EngineHarness::new($engine);
                let _s = h.open().await.unwrap();
                let kv = h.engine().unwrap();
                let mut first = Batch::default();
                first.put(Table::SessionLog, b"k0".to_vec(), b"old".to_vec());
                kv.write(first).unwrap();
                let mut batch = Batch::default();
                batch.put(Table::SessionLog, b"k1".to_vec(), b"v".to_vec());
                batch.put(Table::SessionLog, b"l".to_vec(), b"kept".to_vec());
                batch.delete_range(Table::SessionLog, b"k".to_vec(), b"l".to_vec());
                batch.put(Table::SessionLog, b"k2".to_vec(), b"after".to_vec());
                kv.write(batch).unwrap();
                let get = |key: &[u8]| kv.get(Table::SessionLog, key).unwrap();
                assert_eq!(get(b"k0"), None);
                assert_eq!(get(b"k1"), None, "the batch's own put survived its range delete");
                assert_eq!(get(b"l").as_deref(), Some(&b"kept"[..]));
                assert_eq!(get(b"k2").as_deref(), Some(&b"after"[..]));
            }

            #[tokio::test]
            async fn a_second_opener_is_refused_while_open() {
                let h = EngineHarness::new($engine);
                let s = h.open().await.unwrap();
                let err = crate::open(&h.url()).await.unwrap_err();
                assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
                drop(s);
                assert!(crate::open(&h.url()).await.is_ok());
            }
        }
    };
}

#[cfg(feature = "sled")]
engine_tests!(sled, Engine::Sled);
#[cfg(feature = "rocksdb")]
engine_tests!(rocksdb, Engine::RocksDb);

/// The integrity checks whose damage the file harness of
/// `tests/file_conformance.rs` cannot inflict by flipping bytes in a
/// segment (replaced logs, damaged chain heads): here they go through the
/// engine.
#[cfg(feature = "file")]
mod file_integrity {
    use super::*;

    async fn run<F, Fut>(check: F)
    where
        F: FnOnce(EngineHarness) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        check(EngineHarness::new(Engine::File)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn run_truncation_and_rewrites_corrupted() {
        run(|h| async move {
            stowage_conformance::integrity::run_truncation_and_rewrites_corrupted(&h).await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn log_truncation_and_rewrites_corrupted() {
        run(|h| async move {
            stowage_conformance::integrity::log_truncation_and_rewrites_corrupted(&h).await;
        })
        .await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn repeated_run_id_already_exists() {
        run(|h| async move {
            stowage_conformance::runs::repeated_run_id_already_exists(&h).await;
        })
        .await;
    }
}
