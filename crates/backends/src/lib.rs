//! # stowage-backends
//!
//! Every stowage backend, each behind a Cargo feature, and [`open`], which
//! picks one by URL:
//!
//! | feature | URL | durable | shared between processes | docs |
//! |---|---|---|---|---|
//! | `memory` (default) | `memory://` | no | no | `memory` module |
//! | `file` (default; the embedded default) | `file:///abs/dir`, `file:rel/dir` | yes: fsync before acknowledging | no (a lock file refuses a second opener) | `docs/file-engine.md` |
//! | `rocksdb` | `rocksdb:///abs/dir` | yes: synced WAL before acknowledging | no | `docs/kv.md` |
//! | `sled` | `sled:///abs/dir` | survives `kill -9`, not power loss: sled 0.34 flushes to the OS but never calls `fsync`; sled is beta | no | `docs/kv.md` |
//! | `redis` | `redis://host:port/db?prefix=NAME`, `rediss://…` (TLS) | as the server is configured (`appendfsync`), opt-in `WAIT`/`WAITAOF` | yes | `docs/redis.md` |
//! | `sqlite` | `sqlite:///abs/file.db`, `sqlite:rel/file.db` | yes: `synchronous=FULL` (WAL) before acknowledging; `durability=buffered`: survives `kill -9` only | yes (processes on one host) | `sqlite` module, `docs/sqlite.md` |
//! | `postgres` | `postgres://user@host:port/db?schema=NAME`, `postgresql://…` | as the server is configured (`synchronous_commit`): acknowledged = committed | yes (processes on any host) | `postgres` module, `docs/postgres.md` |
//!
//! Other features: `testcontainers` (test tooling only: the Redis test
//! harness starts Redis in Docker when no `STOWAGE_TEST_REDIS_URL` is set
//! and a Docker engine is reachable). Features starting with `_` are
//! internal.
//!
//! The embedded backends (`file`, `rocksdb`, `sled`) share one store layer
//! written over an ordered key-value seam, so they cannot drift; each
//! engine supplies only get, ordered scan and an atomic write batch.
//! `file`, `rocksdb` and `sled` accept `?durability=buffered` (acknowledge
//! before fsync: survives `kill -9`, not power loss) and
//! `?max_blob_size=BYTES`.
//!
//! Every backend also opens from a typed options struct, into which its
//! URL parses ([`options`]: [`StoreOptions::parse`], `FileOptions::open`,
//! …); unknown options and bad values are errors naming the URL, the
//! option and what it accepts.
//!
//! Every URL accepts `require=none|process_crash|power_loss|as_configured`
//! (see [`open`]): a store whose
//! [`DurabilityLevel`](stowage_core::DurabilityLevel) does not satisfy it
//! is refused before anything is opened.
//!
//! A URL whose backend was not compiled in fails with
//! [`ErrorKind::Unsupported`](stowage_core::ErrorKind::Unsupported) naming
//! the feature to enable.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # #[cfg(feature = "memory")] {
//! let stores = stowage_backends::open("memory://").await.unwrap();
//! let digest = stores.cas.put(bytes::Bytes::from_static(b"hi")).await.unwrap();
//! assert!(stores.cas.contains(&digest).await.unwrap());
//! # }
//! # });
//! ```

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod group_commit;
#[cfg(feature = "_kv")]
mod kv;
#[cfg(feature = "memory")]
pub mod memory;
mod open;
pub mod options;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "redis")]
pub mod redis;
#[cfg(feature = "sqlite")]
pub mod sqlite;

pub use open::{open, open_with, shown_url};
pub use options::StoreOptions;
