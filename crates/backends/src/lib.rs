//! # stowage-backends
//!
//! Every stowage backend, each behind a Cargo feature, and [`open`], which
//! picks one by URL:
//!
//! | feature | URL | durable | shared between processes |
//! |---|---|---|---|
//! | `memory` (default) | `memory://` | no | no |
//! | `file` | `file:///abs/dir`, `file:rel/dir` | yes | no (lock file) |
//! | `rocksdb` | `rocksdb:///abs/dir` | yes | no |
//! | `sled` | `sled:///abs/dir` | yes (best effort: sled is beta) | no |
//! | `redis` | `redis://host:port/db?prefix=NAME`, `rediss://…` | as the server is configured | yes |
//!
//! A URL whose backend was not compiled in fails with
//! [`ErrorKind::Unsupported`](stowage_core::ErrorKind::Unsupported) naming
//! the feature to enable.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let stores = stowage_backends::open("memory://").await.unwrap();
//! let digest = stores.cas.put(bytes::Bytes::from_static(b"hi")).await.unwrap();
//! assert!(stores.cas.contains(&digest).await.unwrap());
//! # });
//! ```

#[cfg(feature = "_kv")]
mod kv;
#[cfg(feature = "memory")]
pub mod memory;
mod open;

pub use open::{open, open_with};
