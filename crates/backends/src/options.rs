//! Typed configuration: every backend opens from an options struct as
//! well as from a URL, and the URL parses into that struct
//! ([`StoreOptions::parse`]), so both ways accept the same options with the
//! same defaults and [`open`](crate::open) is
//! `StoreOptions::parse(url)?.open()`.
//!
//! | backend | options | URL |
//! |---|---|---|
//! | memory | none | `memory://` |
//! | file | `FileOptions` | `file:///abs/dir?segment_size=…` |
//! | RocksDB | `RocksDbOptions` | `rocksdb:///abs/dir?durability=…` |
//! | sled | `SledOptions` | `sled:///abs/dir?max_blob_size=…` |
//! | Redis | `RedisOptions` | `redis://host:port/db?prefix=…` |
//! | SQLite | `SqliteOptions` | `sqlite:///abs/file.db?durability=…` |
//! | PostgreSQL | `PostgresOptions` | `postgres://user@host:port/db?schema=…` |
//!
//! The structs are `#[non_exhaustive]`: build one with `new` (the
//! defaults) and assign the fields you change.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! # #[cfg(feature = "file")] {
//! use stowage_backends::options::{FileOptions, StoreOptions};
//! use stowage_core::Durability;
//! let dir = tempfile::tempdir().unwrap();
//! let mut opts = FileOptions::new(dir.path().join("store"));
//! opts.durability = Durability::Buffered;
//! let url = format!("file://{}/store?durability=buffered", dir.path().display());
//! assert_eq!(StoreOptions::parse(&url).unwrap(), StoreOptions::File(opts.clone()));
//! let stores = opts.open().await.unwrap();
//! stores.close().await.unwrap();
//! # }
//! # });
//! ```

use std::borrow::Cow;
#[cfg(feature = "_kv")]
use std::path::{Path, PathBuf};

#[cfg(feature = "_kv")]
use stowage_core::Durability;
use stowage_core::{Error, Result, StoreEnv, Stores};
use url::Url;

#[cfg(feature = "postgres")]
pub use crate::postgres::PostgresOptions;
#[cfg(feature = "redis")]
pub use crate::redis::{RedisOptions, RedisWait};
#[cfg(feature = "sqlite")]
pub use crate::sqlite::SqliteOptions;

/// The options of any backend compiled in: what a store URL parses into.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOptions {
    /// `memory://`: nothing to configure.
    #[cfg(feature = "memory")]
    Memory,
    /// `file:…`.
    #[cfg(feature = "file")]
    File(FileOptions),
    /// `rocksdb:…`.
    #[cfg(feature = "rocksdb")]
    RocksDb(RocksDbOptions),
    /// `sled:…`.
    #[cfg(feature = "sled")]
    Sled(SledOptions),
    /// `redis://…`, `rediss://…`.
    #[cfg(feature = "redis")]
    Redis(RedisOptions),
    /// `sqlite:…`.
    #[cfg(feature = "sqlite")]
    Sqlite(SqliteOptions),
    /// `postgres://…`, `postgresql://…`.
    #[cfg(feature = "postgres")]
    Postgres(PostgresOptions),
}

impl StoreOptions {
    /// Parses a store URL into the options of its backend.
    ///
    /// # Errors
    /// `InvalidInput` naming the URL for a malformed URL, an unknown scheme
    /// (listing the schemes compiled in), or an unknown option or bad value
    /// (naming the option and what it accepts); `Unsupported` naming the
    /// feature when the backend was not compiled in.
    pub fn parse(url: &str) -> Result<StoreOptions> {
        crate::open::parse_options(url)
    }

    /// Opens the store with the system clock and random ids.
    ///
    /// # Errors
    /// The backend's errors when opening fails.
    pub async fn open(self) -> Result<Stores> {
        self.open_with(StoreEnv::default()).await
    }

    /// Opens the store with an injected clock and id generator.
    ///
    /// # Errors
    /// As [`StoreOptions::open`].
    pub async fn open_with(self, env: StoreEnv) -> Result<Stores> {
        let _ = &env;
        match self {
            #[cfg(feature = "memory")]
            StoreOptions::Memory => Ok(crate::memory::MemoryBackend::new(env).stores()),
            #[cfg(feature = "file")]
            StoreOptions::File(o) => o.open_with(env).await,
            #[cfg(feature = "rocksdb")]
            StoreOptions::RocksDb(o) => o.open_with(env).await,
            #[cfg(feature = "sled")]
            StoreOptions::Sled(o) => o.open_with(env).await,
            #[cfg(feature = "redis")]
            StoreOptions::Redis(o) => o.open_with(env).await,
            #[cfg(feature = "sqlite")]
            StoreOptions::Sqlite(o) => o.open_with(env).await,
            #[cfg(feature = "postgres")]
            StoreOptions::Postgres(o) => o.open_with(env).await,
        }
    }
}

/// The error for a URL of another backend given to `XOptions::from_url`.
#[cfg(feature = "_kv")]
fn other_backend(url: &str, want: &str) -> Error {
    Error::invalid_input(format!(
        "store URL {url:?} is not a {want}: URL (expected {want}:///abs/dir)"
    ))
}

/// `dir`, made absolute against the current directory.
#[cfg(feature = "_kv")]
fn absolute(dir: &Path) -> Result<PathBuf> {
    if dir.as_os_str().is_empty() {
        return Err(Error::invalid_input("the store directory is empty"));
    }
    std::path::absolute(dir).map_err(|e| {
        Error::from(e).context(format!("resolving the store directory {}", dir.display()))
    })
}

/// How to open a file store (URL: `file:///abs/dir` or `file:rel/dir`,
/// with the options below as query parameters of the same names). See
/// `docs/file-engine.md`.
#[cfg(feature = "file")]
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileOptions {
    /// The store's directory, created if missing (a relative one is
    /// resolved against the current directory at open).
    pub dir: PathBuf,
    /// `durability`: `Sync` (default) fsyncs before acknowledging;
    /// `Buffered` acknowledges once the write reached the OS (survives
    /// `kill -9`, not power loss).
    pub durability: Durability,
    /// `max_blob_size`: the largest blob `cas.put` accepts (default 1 GiB).
    pub max_blob_size: u64,
    /// `segment_size`: bytes per log segment, at least 4096 (default 64 MiB).
    pub segment_size: u64,
    /// `max_record_size`: the largest batch a write may carry, 1 KiB to 4 GiB
    /// (default 64 MiB). Records already stored above it (written with a
    /// larger one) are still read.
    pub max_record_size: usize,
    /// `checkpoint_interval`: bytes of log between automatic checkpoints
    /// (default 256 MiB; 0: only on close).
    pub checkpoint_interval: u64,
    /// `salvage`: open a damaged store anyway, keeping what is intact
    /// (default `false`).
    pub salvage: bool,
    /// `mode=read_only`: open without writing anything — no lock, no
    /// recovery truncation, every write refused — for a store on a
    /// read-only mount, a snapshot or a backup (default `false`).
    pub read_only: bool,
}

#[cfg(feature = "file")]
impl FileOptions {
    /// The defaults, for the store in `dir`.
    pub fn new(dir: impl Into<PathBuf>) -> FileOptions {
        FileOptions::from_parts(
            dir.into(),
            crate::kv::file::FileOptions::default(),
            crate::kv::options::DEFAULT_MAX_BLOB_SIZE,
        )
    }

    /// The public form of what `url_options::parse` read from a URL.
    pub(crate) fn from_parts(
        dir: PathBuf,
        engine: crate::kv::file::FileOptions,
        max_blob_size: u64,
    ) -> FileOptions {
        FileOptions {
            dir,
            durability: engine.durability,
            max_blob_size,
            segment_size: engine.segment_size,
            max_record_size: engine.max_record_size,
            checkpoint_interval: engine.checkpoint_interval,
            salvage: engine.salvage,
            read_only: engine.read_only,
        }
    }

    /// Parses a `file:` URL.
    ///
    /// # Errors
    /// As [`StoreOptions::parse`], and `InvalidInput` for another scheme.
    pub fn from_url(url: &str) -> Result<FileOptions> {
        match StoreOptions::parse(url)? {
            StoreOptions::File(o) => Ok(o),
            #[allow(unreachable_patterns)]
            _ => Err(other_backend(url, "file")),
        }
    }

    /// Opens the store with the system clock and random ids.
    ///
    /// # Errors
    /// `InvalidInput` naming the option for a value out of range;
    /// `Unavailable` naming the holder when the store is open elsewhere;
    /// `Corrupted` for damage other than a torn tail (unless `salvage`).
    pub async fn open(self) -> Result<Stores> {
        self.open_with(StoreEnv::default()).await
    }

    /// Opens the store with an injected clock and id generator.
    ///
    /// # Errors
    /// As [`FileOptions::open`].
    pub async fn open_with(self, env: StoreEnv) -> Result<Stores> {
        let dir = absolute(&self.dir)?;
        let engine = crate::kv::file::FileOptions {
            segment_size: self.segment_size,
            durability: self.durability,
            max_record_size: self.max_record_size,
            checkpoint_interval: self.checkpoint_interval,
            salvage: self.salvage,
            read_only: self.read_only,
            ..crate::kv::file::FileOptions::default()
        };
        crate::kv::file::open_parts(dir, engine, self.max_blob_size, env).await
    }
}

/// Declares the options struct of an embedded backend over the shared
/// `KvUrl` parse: `dir`, `durability`, `max_blob_size`.
#[cfg(any(feature = "sled", feature = "rocksdb"))]
macro_rules! kv_options {
    ($(#[$doc:meta])* $name:ident, $variant:ident, $scheme:literal, $module:ident) => {
        $(#[$doc])*
        #[non_exhaustive]
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub struct $name {
            /// The store's directory, created if missing (a relative one is
            /// resolved against the current directory at open).
            pub dir: PathBuf,
            /// `durability`: `Sync` (default) or `Buffered`.
            pub durability: Durability,
            /// `max_blob_size`: the largest blob `cas.put` accepts
            /// (default 1 GiB).
            pub max_blob_size: u64,
            /// `mode=read_only`: refused with `Unsupported` by this
            /// backend (only `file` opens read-only); default `false`.
            pub read_only: bool,
        }

        impl $name {
            /// The defaults, for the store in `dir`.
            pub fn new(dir: impl Into<PathBuf>) -> $name {
                $name {
                    dir: dir.into(),
                    durability: Durability::Sync,
                    max_blob_size: crate::kv::options::DEFAULT_MAX_BLOB_SIZE,
                    read_only: false,
                }
            }

            #[doc = concat!("Parses a `", $scheme, ":` URL.")]
            ///
            /// # Errors
            /// As [`StoreOptions::parse`], and `InvalidInput` for another
            /// scheme.
            pub fn from_url(url: &str) -> Result<$name> {
                match StoreOptions::parse(url)? {
                    StoreOptions::$variant(o) => Ok(o),
                    #[allow(unreachable_patterns)]
                    _ => Err(other_backend(url, $scheme)),
                }
            }

            /// Opens the store with the system clock and random ids.
            ///
            /// # Errors
            /// `Unavailable` when the store is open elsewhere; the
            /// engine's errors mapped by kind.
            pub async fn open(self) -> Result<Stores> {
                self.open_with(StoreEnv::default()).await
            }

            /// Opens the store with an injected clock and id generator.
            ///
            /// # Errors
            #[doc = concat!("As [`", stringify!($name), "::open`].")]
            pub async fn open_with(self, env: StoreEnv) -> Result<Stores> {
                let parsed = crate::kv::options::KvUrl {
                    dir: absolute(&self.dir)?,
                    durability: self.durability,
                    max_blob_size: self.max_blob_size,
                    read_only: self.read_only,
                };
                crate::kv::$module::open_parsed(parsed, env).await
            }
        }

        impl $name {
            pub(crate) fn from_parsed(parsed: crate::kv::options::KvUrl) -> $name {
                $name {
                    dir: parsed.dir,
                    durability: parsed.durability,
                    max_blob_size: parsed.max_blob_size,
                    read_only: parsed.read_only,
                }
            }
        }
    };
}

#[cfg(feature = "sled")]
kv_options!(
    /// How to open a sled store (URL: `sled:///abs/dir`, options as query
    /// parameters of the same names). Only `Durability::Sync` opens: see
    /// `docs/kv.md`.
    SledOptions,
    Sled,
    "sled",
    sled
);

#[cfg(feature = "rocksdb")]
kv_options!(
    /// How to open a RocksDB store (URL: `rocksdb:///abs/dir`, options as
    /// query parameters of the same names).
    RocksDbOptions,
    RocksDb,
    "rocksdb",
    rocksdb
);

/// The query parameters of a store URL, in URL order, each name once.
///
/// Every backend's URL parser reads its parameters through this, however it
/// was reached ([`open`](crate::open), [`StoreOptions::parse`],
/// `RedisOptions::from_url`, …): with `prefix=a&prefix=b` which value was
/// meant is a guess, and the last one silently winning opened another
/// tenant's store.
///
/// # Errors
/// `InvalidInput` naming the parameter given twice and the URL (its
/// password hidden).
pub(crate) fn query_params(url: &Url) -> Result<Vec<(Cow<'_, str>, Cow<'_, str>)>> {
    let mut seen = std::collections::BTreeSet::new();
    let mut params = Vec::new();
    for (key, value) in url.query_pairs() {
        if !seen.insert(key.clone()) {
            return Err(Error::invalid_input(format!(
                "store URL {:?}: parameter `{key}` is given twice; give each parameter once",
                crate::open::shown_url(url.as_str())
            )));
        }
        params.push((key, value));
    }
    Ok(params)
}

/// Percent-decodes a URL component.
pub(crate) fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}
