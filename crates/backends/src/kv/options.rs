//! URL parsing shared by the embedded KV backends: `scheme:///abs/dir`
//! with query options.

use std::path::PathBuf;

use stowage_core::{Durability, Error, Result};
use url::Url;

/// The default largest blob of the KV backends (blobs are chunked, so the
/// limit is about disk space, not memory).
pub(crate) const DEFAULT_MAX_BLOB_SIZE: u64 = 1024 * 1024 * 1024;

/// What a `rocksdb:` / `sled:` URL asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KvUrl {
    /// The store's directory (absolute).
    pub(crate) dir: PathBuf,
    /// `?durability=sync|buffered` (default `sync`).
    pub(crate) durability: Durability,
    /// `?max_blob_size=BYTES` (default [`DEFAULT_MAX_BLOB_SIZE`]).
    pub(crate) max_blob_size: u64,
    /// `?mode=read_only` (default `read_write`): open without writing
    /// anything (only the file engine supports it).
    pub(crate) read_only: bool,
}

/// One query option of a store URL: its name and what it accepts, for
/// error messages.
pub(crate) type OptionSpec = (&'static str, &'static str);

/// The options every embedded backend accepts.
pub(crate) const COMMON_OPTIONS: [OptionSpec; 3] = [
    ("durability", "sync or buffered"),
    ("max_blob_size", "a whole number of bytes"),
    ("mode", "read_write or read_only"),
];

/// `store URL "…": unknown option k=v; known options: …`.
pub(crate) fn unknown_option(url: &Url, key: &str, value: &str, known: &[OptionSpec]) -> Error {
    let names: Vec<String> = known
        .iter()
        .map(|(name, allowed)| format!("{name} ({allowed})"))
        .collect();
    Error::invalid_input(format!(
        "store URL {:?}: unknown option {key}={value}; known options: {}",
        crate::open::shown_url(url.as_str()),
        names.join(", ")
    ))
}

/// `store URL "…": option k=v is not valid; allowed values: …`.
pub(crate) fn bad_value(url: &Url, key: &str, value: &str, allowed: &str) -> Error {
    Error::invalid_input(format!(
        "store URL {:?}: option {key}={value} is not valid; allowed values: {allowed}",
        crate::open::shown_url(url.as_str())
    ))
}

impl KvUrl {
    /// Parses `scheme:///abs/dir[?durability=…&max_blob_size=…]`.
    ///
    /// # Errors
    /// `InvalidInput` for a host, a relative or empty path, or an unknown
    /// or malformed option.
    #[cfg_attr(not(any(feature = "sled", feature = "rocksdb")), allow(dead_code))]
    pub(crate) fn parse(url: &Url) -> Result<KvUrl> {
        Self::parse_with(url, &[]).map(|(parsed, _)| parsed)
    }

    /// Parses like [`KvUrl::parse`], also accepting the backend's own
    /// options `own`, which are returned unparsed (in URL order) for the
    /// backend to read; an unknown option's error lists them too.
    ///
    /// # Errors
    /// As [`KvUrl::parse`].
    pub(crate) fn parse_with(
        url: &Url,
        own: &[OptionSpec],
    ) -> Result<(KvUrl, Vec<(String, String)>)> {
        let scheme = url.scheme();
        let bad = |why: &str| {
            Error::invalid_input(format!(
                "store URL {:?}: {why}; expected {scheme}:///absolute/dir",
                url.as_str()
            ))
        };
        if url.cannot_be_a_base() {
            return Err(bad("the path must be absolute"));
        }
        if url.host_str().is_some_and(|h| !h.is_empty()) {
            return Err(bad("a host is not allowed"));
        }
        if url.port().is_some() || !url.username().is_empty() || url.password().is_some() {
            return Err(bad("a port or user is not allowed"));
        }
        if url.path().is_empty() || url.path() == "/" {
            return Err(bad("the directory is empty"));
        }
        let dir = url
            .to_file_path()
            .map_err(|()| bad("the path is not a usable directory"))?;
        if !dir.is_absolute() {
            return Err(bad("the path must be absolute"));
        }
        let mut parsed = KvUrl {
            dir,
            durability: Durability::Sync,
            max_blob_size: DEFAULT_MAX_BLOB_SIZE,
            read_only: false,
        };
        let mut rest = Vec::new();
        for (key, value) in crate::options::query_params(url)? {
            match &*key {
                "durability" => {
                    parsed.durability = match &*value {
                        "sync" => Durability::Sync,
                        "buffered" => Durability::Buffered,
                        _ => return Err(bad_value(url, &key, &value, COMMON_OPTIONS[0].1)),
                    }
                }
                "mode" => {
                    parsed.read_only = match &*value {
                        "read_only" => true,
                        "read_write" => false,
                        _ => return Err(bad_value(url, &key, &value, COMMON_OPTIONS[2].1)),
                    }
                }
                "max_blob_size" => {
                    parsed.max_blob_size = value
                        .parse()
                        .map_err(|_| bad_value(url, &key, &value, COMMON_OPTIONS[1].1))?;
                }
                k if own.iter().any(|(name, _)| *name == k) => {
                    rest.push((key.into_owned(), value.into_owned()));
                }
                _ => {
                    let known: Vec<OptionSpec> =
                        COMMON_OPTIONS.iter().chain(own).copied().collect();
                    return Err(unknown_option(url, &key, &value, &known));
                }
            }
        }
        Ok((parsed, rest))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::ErrorKind;

    fn parse(s: &str) -> Result<KvUrl> {
        KvUrl::parse(&Url::parse(s).unwrap())
    }

    #[test]
    fn absolute_dirs_and_options_parse() {
        let u = parse("rocksdb:///tmp/a%20b/c?durability=buffered&max_blob_size=10").unwrap();
        assert_eq!(u.dir, PathBuf::from("/tmp/a b/c"));
        assert_eq!(u.durability, Durability::Buffered);
        assert_eq!(u.max_blob_size, 10);
        let u = parse("sled:///x").unwrap();
        assert_eq!(u.durability, Durability::Sync);
        assert_eq!(u.max_blob_size, DEFAULT_MAX_BLOB_SIZE);
    }

    #[test]
    fn relative_empty_hosted_and_unknown_are_invalid_input() {
        for bad in [
            "rocksdb:rel/dir",
            "rocksdb://",
            "rocksdb:///",
            "sled://host/dir",
            "sled:///x?durability=fast",
            "sled:///x?colour=blue",
            "sled:///x?max_blob_size=big",
            "sled:///x?durability=sync&durability=buffered",
            "rocksdb:///x?mode=read_only&max_blob_size=1&mode=read_write",
        ] {
            let err = parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
        }
    }
}
