//! [`SqliteOptions`] and the `sqlite:` URL that parses into it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use stowage_core::{Durability, Error, Result, StoreEnv, Stores};
use url::Url;

use crate::options::StoreOptions;

/// The default `busy_timeout_ms`: how long a writer waits for another
/// process's write transaction before giving up with `Unavailable`.
pub const DEFAULT_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The default number of read connections (`readers`).
pub const DEFAULT_READERS: usize = 4;

/// The most read connections one store opens (`readers`).
pub const MAX_READERS: usize = 64;

/// The longest `busy_timeout_ms` accepted (one hour).
const MAX_BUSY_TIMEOUT_MS: u64 = 3_600_000;

/// The query options of a `sqlite:` URL and what each accepts (for error
/// messages). `require` is read by [`open`](crate::open) itself.
const OPTIONS: [(&str, &str); 3] = [
    ("durability", "durable (or sync) or buffered"),
    (
        "busy_timeout_ms",
        "a whole number of milliseconds up to 3600000 (0: do not wait)",
    ),
    ("readers", "a whole number from 1 to 64"),
];

/// How to open a SQLite store (URL: `sqlite:///abs/file.db` or
/// `sqlite:rel/file.db`, with the options below as query parameters of
/// the same names). See the [module docs](super) and `docs/sqlite.md`.
///
/// ```
/// use stowage_backends::options::{SqliteOptions, StoreOptions};
/// use stowage_core::Durability;
/// let mut opts = SqliteOptions::new("/srv/agents.db");
/// opts.durability = Durability::Buffered;
/// let parsed = StoreOptions::parse("sqlite:///srv/agents.db?durability=buffered").unwrap();
/// assert_eq!(parsed, StoreOptions::Sqlite(opts));
/// ```
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// The database file, created if missing with its parent directories
    /// (a relative one is resolved against the current directory at open).
    pub path: PathBuf,
    /// `durability`: `Sync` (`durable`, the default) runs SQLite with
    /// `synchronous=FULL`, so a commit is fsynced before it is
    /// acknowledged (survives power loss); `Buffered` runs
    /// `synchronous=NORMAL` (survives `kill -9`, not power loss).
    pub durability: Durability,
    /// `busy_timeout_ms`: how long a write waits for another process's
    /// write transaction before failing with `Unavailable`, up to 1 h
    /// (default 10 s). 0 (or anything under 1 ms: SQLite counts whole
    /// milliseconds) does not wait: a write that finds the database
    /// locked fails at once with `Unavailable`, nothing applied.
    pub busy_timeout: Duration,
    /// `readers`: read connections, 1 to 64 (default 4).
    pub readers: usize,
}

impl SqliteOptions {
    /// The defaults, for the database file `path`.
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            durability: Durability::Sync,
            busy_timeout: DEFAULT_BUSY_TIMEOUT,
            readers: DEFAULT_READERS,
        }
    }

    /// Parses a `sqlite:` URL.
    ///
    /// # Errors
    /// As [`StoreOptions::parse`], and `InvalidInput` for another scheme.
    pub fn from_url(url: &str) -> Result<SqliteOptions> {
        match StoreOptions::parse(url)? {
            StoreOptions::Sqlite(o) => Ok(o),
            #[allow(unreachable_patterns)]
            _ => Err(Error::invalid_input(format!(
                "store URL {url:?} is not a sqlite: URL (expected sqlite:///abs/file.db \
                 or sqlite:rel/file.db)"
            ))),
        }
    }

    /// Opens the store with the system clock and random ids.
    ///
    /// # Errors
    /// As [`SqliteEngine::open`](super::SqliteEngine::open).
    pub async fn open(self) -> Result<Stores> {
        self.open_with(StoreEnv::default()).await
    }

    /// Opens the store with an injected clock and id generator.
    ///
    /// # Errors
    /// As [`SqliteEngine::open`](super::SqliteEngine::open).
    pub async fn open_with(self, env: StoreEnv) -> Result<Stores> {
        let engine = super::SqliteEngine::open(self).await?;
        Ok(stowage_core::engine::stores(engine, env))
    }

    /// Checks the values a URL cannot express wrongly but a struct can.
    pub(super) fn validate(&self) -> Result<()> {
        if self.path.as_os_str().is_empty() {
            return Err(Error::invalid_input("the SQLite database path is empty"));
        }
        if !(1..=MAX_READERS).contains(&self.readers) {
            return Err(Error::invalid_input(format!(
                "SqliteOptions::readers is {}; allowed values: {}",
                self.readers, OPTIONS[2].1
            )));
        }
        if self.busy_timeout > Duration::from_millis(MAX_BUSY_TIMEOUT_MS) {
            return Err(Error::invalid_input(format!(
                "SqliteOptions::busy_timeout is {:?}; allowed values: {}",
                self.busy_timeout, OPTIONS[1].1
            )));
        }
        Ok(())
    }

    /// `path`, made absolute against the current directory.
    pub(super) fn absolute_path(&self) -> Result<PathBuf> {
        std::path::absolute(&self.path).map_err(|e| {
            Error::from(e).context(format!(
                "resolving the database path {}",
                self.path.display()
            ))
        })
    }
}

/// Parses `sqlite:///abs/file.db` or `sqlite:rel/file.db` (relative to the
/// current directory) with its query options.
///
/// # Errors
/// `InvalidInput` naming the URL for a host, port or credentials, an empty
/// path or one ending in `/`, or an unknown or malformed option (naming
/// the option and what it accepts).
pub(crate) fn parse(url: &Url) -> Result<SqliteOptions> {
    let mut opts = SqliteOptions::new(path_of(url)?);
    for (key, value) in crate::options::query_params(url)? {
        let bad = |allowed: &str| {
            Error::invalid_input(format!(
                "store URL {:?}: option {key}={value} is not valid; allowed values: {allowed}",
                url.as_str()
            ))
        };
        match &*key {
            "durability" => {
                opts.durability = match &*value {
                    "durable" | "sync" => Durability::Sync,
                    "buffered" => Durability::Buffered,
                    _ => return Err(bad(OPTIONS[0].1)),
                }
            }
            "busy_timeout_ms" => {
                let ms: u64 = value.parse().map_err(|_| bad(OPTIONS[1].1))?;
                if ms > MAX_BUSY_TIMEOUT_MS {
                    return Err(bad(OPTIONS[1].1));
                }
                opts.busy_timeout = Duration::from_millis(ms);
            }
            "readers" => {
                opts.readers = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_READERS).contains(n))
                    .ok_or_else(|| bad(OPTIONS[2].1))?;
            }
            _ => {
                let known: Vec<String> = OPTIONS
                    .iter()
                    .map(|(name, allowed)| format!("{name} ({allowed})"))
                    .collect();
                return Err(Error::invalid_input(format!(
                    "store URL {:?}: unknown option {key}={value}; known options: {}, \
                     require (a durability level)",
                    url.as_str(),
                    known.join(", ")
                )));
            }
        }
    }
    Ok(opts)
}

/// The database file a `sqlite:` URL names.
fn path_of(url: &Url) -> Result<PathBuf> {
    let bad = |why: &str| {
        Error::invalid_input(format!(
            "store URL {:?}: {why}; expected sqlite:///abs/file.db or sqlite:rel/file.db",
            url.as_str()
        ))
    };
    if url.host_str().is_some_and(|h| !h.is_empty()) {
        return Err(bad("a host is not allowed"));
    }
    if url.port().is_some() || !url.username().is_empty() || url.password().is_some() {
        return Err(bad("a port or user is not allowed"));
    }
    if url.fragment().is_some() {
        return Err(bad("a fragment is not allowed"));
    }
    let encoded = url.path();
    if encoded.is_empty() || encoded == "/" {
        return Err(bad("the database path is empty"));
    }
    if encoded.ends_with('/') {
        return Err(bad("the path names a directory, not a database file"));
    }
    if encoded.starts_with('/') {
        // Percent-decode through a file URL (the `url` crate decodes only those).
        let as_file = Url::parse(&format!("file:///{}", encoded.trim_start_matches('/')))
            .map_err(|_| bad("the path is not a usable file path"))?;
        return as_file
            .to_file_path()
            .map_err(|()| bad("the path is not a usable file path"));
    }
    // A relative path (`sqlite:rel/file.db`) is an opaque URL path, kept
    // verbatim by the `url` crate: decode it directly, `..` segments kept
    // (a `file:///` URL would resolve them away against its root), as
    // `file:rel/dir` is.
    let rel = crate::options::percent_decode(encoded)
        .ok_or_else(|| bad("the path is not valid percent-encoded UTF-8"))?;
    let cwd = std::env::current_dir().map_err(|e| {
        Error::from(e).context(format!(
            "resolving the relative store URL {:?}",
            url.as_str()
        ))
    })?;
    Ok(cwd.join(rel))
}

/// `path`'s parent directory, created if missing.
pub(super) fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => {
            std::fs::create_dir_all(parent).map_err(|e| {
                Error::from(e).context(format!(
                    "creating the directory {} of the SQLite database",
                    parent.display()
                ))
            })
        }
        _ => Ok(()),
    }
}
