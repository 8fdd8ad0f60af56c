//! Picking a backend by URL.

use stowage_core::{Error, Result, StoreEnv, Stores};
use url::Url;

/// Opens the backend named by `url` with the system clock and random ids.
///
/// # Errors
/// `InvalidInput` for a malformed URL or unknown scheme; `Unsupported`
/// naming the feature when the backend was not compiled in; the backend's
/// own errors when opening fails.
pub async fn open(url: &str) -> Result<Stores> {
    open_with(url, StoreEnv::default()).await
}

/// Opens the backend named by `url` with an injected clock and id generator.
///
/// # Errors
/// As [`open`].
pub async fn open_with(url: &str, env: StoreEnv) -> Result<Stores> {
    let parsed = Url::parse(url)
        .map_err(|e| Error::invalid_input(format!("store URL {url:?} is malformed: {e}")))?;
    let _ = &env;
    match parsed.scheme() {
        #[cfg(feature = "memory")]
        "memory" => crate::memory::open_url(&parsed, env).await,
        #[cfg(feature = "file")]
        "file" => crate::kv::file::open_url(&parsed, env).await,
        #[cfg(feature = "rocksdb")]
        "rocksdb" => crate::kv::rocksdb::open_url(&parsed, env).await,
        #[cfg(feature = "sled")]
        "sled" => crate::kv::sled::open_url(&parsed, env).await,
        #[cfg(feature = "redis")]
        "redis" | "rediss" => crate::redis::open_url(&parsed, env).await,
        scheme => Err(not_compiled_in(scheme)),
    }
}

fn not_compiled_in(scheme: &str) -> Error {
    let feature = match scheme {
        "memory" => "memory",
        "file" => "file",
        "rocksdb" => "rocksdb",
        "sled" => "sled",
        "redis" | "rediss" => "redis",
        other => {
            return Error::invalid_input(format!(
                "unknown store URL scheme {other:?}; expected memory, file, rocksdb, sled, redis or rediss"
            ))
        }
    };
    Error::unsupported(format!(
        "the {scheme}:// backend is not compiled in; enable the `{feature}` feature of stowage-backends"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::ErrorKind;

    #[tokio::test]
    async fn unknown_schemes_and_bad_urls_are_invalid_input() {
        assert_eq!(
            open("ftp://x").await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
        assert_eq!(
            open("not a url").await.unwrap_err().kind(),
            ErrorKind::InvalidInput
        );
    }

    #[test]
    fn missing_features_are_named() {
        let err = not_compiled_in("rediss");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("`redis` feature"), "{err}");
    }
}
