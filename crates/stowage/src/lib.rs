//! # stowage
//!
//! Durable state for agent systems — content-addressed blobs, run ledgers,
//! release registries, session logs and signed supersession records —
//! behind one set of async traits, over the backend a URL names.
//!
//! This is the one crate an application depends on: it re-exports the
//! contract of [`stowage-core`](stowage_core) (traits, records, the one
//! [`Error`]) and the backends of `stowage-backends` behind the same
//! feature names, as `sqlx` and OpenDAL do:
//!
//! ```toml
//! [dependencies]
//! stowage = { version = "0.1", features = ["redis"] }
//! ```
//!
//! | feature | URL | backend |
//! |---|---|---|
//! | `memory` (default) | `memory://` | in-process maps; not durable |
//! | `file` (default) | `file:///abs/dir`, `file:rel/dir` | our crash-safe embedded engine |
//! | `rocksdb` | `rocksdb:///abs/dir` | RocksDB (builds C++; needs libclang) |
//! | `sled` | `sled:///abs/dir` | sled 0.34 (survives `kill -9`, not power loss) |
//! | `redis` | `redis://host:port/db?prefix=NAME`, `rediss://…` | Redis ≥ 7, shared between processes |
//! | `sqlite` | `sqlite:///abs/file.db`, `sqlite:rel/file.db` | SQLite (bundled), shared between processes on one host |
//! | `postgres` | `postgres://user@host:port/db?schema=NAME` | PostgreSQL, shared between processes and hosts |
//!
//! A URL whose backend was not compiled in fails with
//! [`ErrorKind::Unsupported`] naming the feature to enable.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let stores = stowage::open("memory://").await?;
//! let digest = stores.cas.put(bytes::Bytes::from_static(b"hi")).await?;
//! assert_eq!(stores.cas.get(&digest).await?, &b"hi"[..]);
//! # Ok::<(), stowage::Error>(())
//! # }).unwrap();
//! ```
//!
//! Downstream tests use `stowage-fakes`; authors of a new backend prove it
//! with `stowage-conformance`.

#[doc(inline)]
pub use stowage_core::*;

#[doc(inline)]
pub use stowage_backends::{open, open_with, options, shown_url, StoreOptions};

/// The in-memory backend.
#[cfg(feature = "memory")]
#[doc(inline)]
pub use stowage_backends::memory;

/// The PostgreSQL backend.
#[cfg(feature = "postgres")]
#[doc(inline)]
pub use stowage_backends::postgres;

/// The SQLite backend.
#[cfg(feature = "sqlite")]
#[doc(inline)]
pub use stowage_backends::sqlite;
