//! Picking a backend by URL.

use stowage_core::{Capabilities, DurabilityLevel, Error, Result, StoreEnv, Stores};
use url::Url;

/// Opens the backend named by `url` with the system clock and random ids.
///
/// Every URL accepts `require=none|process_crash|power_loss|as_configured`:
/// the store is opened only if its [`DurabilityLevel`] satisfies it
/// ([`DurabilityLevel::satisfies`]), so an application that needs
/// power-loss safety cannot be handed sled or a `durability=buffered` store
/// by a configuration change.
///
/// # Errors
/// `InvalidInput` for a malformed URL or unknown scheme, or an unknown
/// `require` level; `Unsupported` naming the feature when the backend was
/// not compiled in, or naming the level the backend offers when it does not
/// satisfy `require` (checked before anything is opened or created); the
/// backend's own errors when opening fails.
pub async fn open(url: &str) -> Result<Stores> {
    open_with(url, StoreEnv::default()).await
}

/// Opens the backend named by `url` with an injected clock and id generator.
///
/// # Errors
/// As [`open`].
pub async fn open_with(url: &str, env: StoreEnv) -> Result<Stores> {
    let (parsed, required) = take_requirement(parse_url(url)?, url)?;
    if let Some(required) = required {
        check_requirement(&parsed, required)?;
    }
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

/// Parses a store URL. `file:rel/dir` (no `//`) is a directory relative to
/// the current one: the `url` crate would read it as `/rel/dir`, so it is
/// resolved to an absolute `file:///…` URL first.
fn parse_url(url: &str) -> Result<Url> {
    let malformed = |why: &dyn std::fmt::Display| {
        Error::invalid_input(format!("store URL {url:?} is malformed: {why}"))
    };
    let Some(relative) = url
        .strip_prefix("file:")
        .filter(|rest| !rest.starts_with('/'))
    else {
        return Url::parse(url).map_err(|e| malformed(&e));
    };
    let (path, query) = relative
        .split_once('?')
        .map_or((relative, None), |(p, q)| (p, Some(q)));
    if path.is_empty() {
        return Err(malformed(&"the directory is empty"));
    }
    let cwd = std::env::current_dir()
        .map_err(|e| Error::from(e).context(format!("resolving the relative store URL {url:?}")))?;
    let mut parsed = Url::from_file_path(cwd.join(path))
        .map_err(|()| malformed(&"the path is not a usable directory"))?;
    parsed.set_query(query);
    Ok(parsed)
}

/// Removes `require=LEVEL` from the query (backends never see it) and
/// returns the level asked for.
fn take_requirement(mut parsed: Url, shown: &str) -> Result<(Url, Option<DurabilityLevel>)> {
    let mut required = None;
    let mut rest = Vec::new();
    for (key, value) in parsed.query_pairs() {
        if key != "require" {
            rest.push((key.into_owned(), value.into_owned()));
            continue;
        }
        let level = DurabilityLevel::from_name(&value).ok_or_else(|| {
            let known: Vec<_> = DurabilityLevel::ALL.iter().map(|l| l.name()).collect();
            Error::invalid_input(format!(
                "store URL {shown:?}: require={value} is not a durability level; expected one of {}",
                known.join(", ")
            ))
        })?;
        required = Some(level);
    }
    if required.is_some() {
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
    }
    Ok((parsed, required))
}

/// Refuses (`Unsupported`, naming what the backend offers) a store whose
/// durability level does not satisfy `required`, before opening it.
fn check_requirement(parsed: &Url, required: DurabilityLevel) -> Result<()> {
    let caps = capabilities_of(parsed)?;
    if caps.durability.satisfies(required) {
        return Ok(());
    }
    let why = match caps.durability {
        DurabilityLevel::None => "nothing survives the process",
        DurabilityLevel::ProcessCrash => {
            "acknowledged writes survive kill -9 of the process but not power loss \
             (sled never fsyncs; durability=buffered skips the fsync)"
        }
        DurabilityLevel::AsConfigured => {
            "acknowledged writes are as durable as the server is configured to make them, \
             which the client cannot verify"
        }
        _ => "it is a different level",
    };
    Err(Error::unsupported(format!(
        "store URL {}: require={required} refused: the {} backend offers durability {} ({why})",
        parsed.as_str(),
        caps.backend,
        caps.durability
    )))
}

/// The capabilities the store named by `parsed` would have, without
/// opening it.
fn capabilities_of(parsed: &Url) -> Result<Capabilities> {
    match parsed.scheme() {
        #[cfg(feature = "memory")]
        "memory" => Ok(crate::memory::MemoryBackend::capabilities()),
        #[cfg(feature = "file")]
        "file" => crate::kv::file::capabilities_for(parsed),
        #[cfg(feature = "rocksdb")]
        "rocksdb" => Ok(crate::kv::rocksdb::capabilities(
            &crate::kv::options::KvUrl::parse(parsed)?,
        )),
        #[cfg(feature = "sled")]
        "sled" => Ok(crate::kv::sled::capabilities(
            &crate::kv::options::KvUrl::parse(parsed)?,
        )),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => Ok(crate::redis::capabilities()),
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
    fn relative_file_urls_resolve_against_the_current_directory() {
        let cwd = std::env::current_dir().unwrap();
        let url = parse_url("file:data/store?durability=buffered").unwrap();
        assert_eq!(url.to_file_path().unwrap(), cwd.join("data/store"));
        assert_eq!(url.query(), Some("durability=buffered"));
        let abs = parse_url("file:///srv/store").unwrap();
        assert_eq!(
            abs.to_file_path().unwrap(),
            std::path::PathBuf::from("/srv/store")
        );
        assert_eq!(
            parse_url("file:").unwrap_err().kind(),
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
