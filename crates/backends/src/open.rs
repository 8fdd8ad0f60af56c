//! Picking a backend by URL.

use stowage_core::{Capabilities, DurabilityLevel, Error, Result, StoreEnv, Stores};
use url::Url;

use crate::options::StoreOptions;

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
    parse_options(url)?.open_with(env).await
}

/// Parses `url` into the typed options of its backend (see
/// [`StoreOptions::parse`]), after checking its `require=LEVEL`, which
/// backends never see.
pub(crate) fn parse_options(url: &str) -> Result<StoreOptions> {
    let shown = &shown_url(url);
    let parsed = parse_url(url)?;
    check_query(&parsed, shown)?;
    let (parsed, required) = take_requirement(parsed, shown)?;
    if let Some(required) = required {
        check_requirement(&parsed, required)?;
    }
    match parsed.scheme() {
        #[cfg(feature = "memory")]
        "memory" => crate::memory::check_url(&parsed).map(|()| StoreOptions::Memory),
        #[cfg(feature = "file")]
        "file" => {
            let (dir, engine, max_blob_size) = crate::kv::file::url_options::parse(&parsed)?;
            Ok(StoreOptions::File(crate::options::FileOptions::from_parts(
                dir,
                engine,
                max_blob_size,
            )))
        }
        #[cfg(feature = "rocksdb")]
        "rocksdb" => crate::kv::options::KvUrl::parse(&parsed)
            .map(|p| StoreOptions::RocksDb(crate::options::RocksDbOptions::from_parsed(p))),
        #[cfg(feature = "sled")]
        "sled" => crate::kv::options::KvUrl::parse(&parsed)
            .map(|p| StoreOptions::Sled(crate::options::SledOptions::from_parsed(p))),
        #[cfg(feature = "redis")]
        "redis" | "rediss" => crate::redis::config::parse(&parsed).map(StoreOptions::Redis),
        #[cfg(feature = "sqlite")]
        "sqlite" => crate::sqlite::parse_url(&parsed).map(StoreOptions::Sqlite),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            crate::postgres::parse_url(&parsed).map(StoreOptions::Postgres)
        }
        scheme => Err(not_compiled_in(shown, scheme)),
    }
}

/// `url` as messages and logs may show it: its password, if any, as
/// `***` (`postgres://app:***@db/agents`), also when the URL does not
/// parse (a bad port, say: the text between `user:` and the last `@` is
/// masked); any other URL as given.
pub fn shown_url(url: &str) -> String {
    match Url::parse(url.trim()) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        Ok(_) => url.to_owned(),
        Err(_) => mask_password_text(url),
    }
}

/// The password of a URL that does not parse, masked by its text: after
/// `scheme://`, the text from the first `:` to the last `@` (a password
/// may hold `/`, `?` or `#` unescaped, so the last `@` ends it).
fn mask_password_text(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_owned();
    };
    let rest = &url[start..];
    let Some(at) = rest.rfind('@') else {
        return url.to_owned();
    };
    match rest[..at].find(':') {
        Some(colon) => format!("{}{}:***{}", &url[..start], &rest[..colon], &rest[at..]),
        None => url.to_owned(),
    }
}

/// Refuses an option given twice (which of two values holds would be a
/// guess: `durability=sync&durability=buffered`) and a fragment, which no
/// backend reads.
///
/// Each backend's parser refuses a repeated option too (through the same
/// [`query_params`](crate::options::query_params)); checking here also
/// covers `require`, which they never see.
pub(crate) fn check_query(parsed: &Url, shown: &str) -> Result<()> {
    if parsed.fragment().is_some() {
        return Err(Error::invalid_input(format!(
            "store URL {shown:?}: a #fragment means nothing in a store URL; remove it"
        )));
    }
    crate::options::query_params(parsed).map(drop)
}

/// Every scheme stowage knows, with the feature that provides it and the
/// shape of its URLs (for error messages).
const SCHEMES: [(&str, &str, bool, &str); 9] = [
    ("memory", "memory", cfg!(feature = "memory"), "memory://"),
    (
        "file",
        "file",
        cfg!(feature = "file"),
        "file:///abs/dir or file:rel/dir",
    ),
    (
        "rocksdb",
        "rocksdb",
        cfg!(feature = "rocksdb"),
        "rocksdb:///abs/dir",
    ),
    ("sled", "sled", cfg!(feature = "sled"), "sled:///abs/dir"),
    (
        "redis",
        "redis",
        cfg!(feature = "redis"),
        "redis://host:6379/0?prefix=NAME",
    ),
    (
        "rediss",
        "redis",
        cfg!(feature = "redis"),
        "rediss://host:6379/0",
    ),
    (
        "sqlite",
        "sqlite",
        cfg!(feature = "sqlite"),
        "sqlite:///abs/file.db or sqlite:rel/file.db",
    ),
    (
        "postgres",
        "postgres",
        cfg!(feature = "postgres"),
        "postgres://user@host:5432/db?schema=NAME",
    ),
    (
        "postgresql",
        "postgres",
        cfg!(feature = "postgres"),
        "postgresql://user@host:5432/db",
    ),
];

/// "a store URL looks like …; compiled in: …", the tail of every message
/// about a URL that names no usable backend.
fn what_urls_look_like() -> String {
    let shapes: Vec<&str> = SCHEMES
        .iter()
        .filter(|(_, _, on, _)| *on)
        .map(|(_, _, _, shape)| *shape)
        .collect();
    let compiled: Vec<&str> = SCHEMES
        .iter()
        .filter(|(_, _, on, _)| *on)
        .map(|(scheme, ..)| *scheme)
        .collect();
    if compiled.is_empty() {
        return "no backend is compiled in; enable a feature of stowage-backends \
                (memory, file, rocksdb, sled, redis, sqlite, postgres)"
            .to_owned();
    }
    format!(
        "a store URL looks like {} (schemes compiled in: {})",
        shapes.join(", "),
        compiled.join(", ")
    )
}

/// Parses a store URL. `file:rel/dir` (no `//`; any case, percent-encoded
/// like any URL) is a directory relative to the current one: the `url`
/// crate would read it as `/rel/dir`, so it is resolved to an absolute
/// `file:///…` URL first.
fn parse_url(url: &str) -> Result<Url> {
    let shown = shown_url(url);
    let malformed = |why: &dyn std::fmt::Display| {
        Error::invalid_input(format!("store URL {shown:?} is malformed: {why}"))
    };
    let trimmed = url.trim();
    let relative = trimmed
        .get(..5)
        .filter(|scheme| scheme.eq_ignore_ascii_case("file:"))
        .and_then(|_| trimmed.get(5..))
        .filter(|rest| !rest.starts_with('/'));
    let Some(relative) = relative else {
        return Url::parse(url).map_err(|e| no_scheme(url).unwrap_or_else(|| malformed(&e)));
    };
    let (rest, fragment) = relative
        .split_once('#')
        .map_or((relative, None), |(r, f)| (r, Some(f)));
    let (path, query) = rest
        .split_once('?')
        .map_or((rest, None), |(p, q)| (p, Some(q)));
    if path.is_empty() {
        return Err(malformed(&"the directory is empty"));
    }
    // Percent-decoded as an absolute file URL's path is (`..` kept).
    let decoded = crate::options::percent_decode(path)
        .ok_or_else(|| malformed(&"the path is not valid percent-encoded UTF-8"))?;
    let cwd = std::env::current_dir().map_err(|e| {
        Error::from(e).context(format!("resolving the relative store URL {shown:?}"))
    })?;
    let mut parsed = Url::from_file_path(cwd.join(decoded))
        .map_err(|()| malformed(&"the path is not a usable directory"))?;
    parsed.set_query(query);
    parsed.set_fragment(fragment);
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
        shown_url(parsed.as_str()),
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
        #[cfg(feature = "sqlite")]
        "sqlite" => Ok(crate::sqlite::capabilities(&crate::sqlite::parse_url(
            parsed,
        )?)),
        #[cfg(feature = "postgres")]
        "postgres" | "postgresql" => {
            crate::postgres::parse_url(parsed)?;
            Ok(crate::postgres::capabilities())
        }
        scheme => Err(not_compiled_in(&shown_url(parsed.as_str()), scheme)),
    }
}

/// The error for a URL without a scheme (`""`, `"memory"`, `"not a url"`),
/// or `None` when `url` has one (then the parser's own reason is shown).
fn no_scheme(url: &str) -> Option<Error> {
    let has_scheme = url
        .split_once(':')
        .is_some_and(|(scheme, _)| Url::parse(&format!("{scheme}:x")).is_ok());
    if has_scheme {
        return None;
    }
    let hint = SCHEMES
        .iter()
        .find(|(scheme, ..)| url.trim().eq_ignore_ascii_case(scheme))
        .map(|(scheme, ..)| format!("; did you mean {scheme}://?"))
        .unwrap_or_default();
    let what = if url.trim().is_empty() {
        "is empty"
    } else {
        "has no scheme"
    };
    Some(Error::invalid_input(format!(
        "store URL {url:?} {what}{hint}; {}",
        what_urls_look_like()
    )))
}

/// The error for a URL whose scheme names no backend of this build.
fn not_compiled_in(url: &str, scheme: &str) -> Error {
    match SCHEMES.iter().find(|(known, ..)| *known == scheme) {
        Some((_, feature, ..)) => Error::unsupported(format!(
            "store URL {url:?}: the {scheme}:// backend is not compiled in; enable the \
             `{feature}` feature of stowage-backends; {}",
            what_urls_look_like()
        )),
        None => Error::invalid_input(format!(
            "store URL {url:?}: unknown scheme {scheme:?}; {}",
            what_urls_look_like()
        )),
    }
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
    fn relative_file_urls_are_any_case_and_percent_decoded() {
        let cwd = std::env::current_dir().unwrap();
        for url in ["FILE:data/store", " File:data/store"] {
            let parsed = parse_url(url).unwrap();
            assert_eq!(
                parsed.to_file_path().unwrap(),
                cwd.join("data/store"),
                "{url}"
            );
        }
        let spaced = parse_url("file:my%20store/%C3%BC").unwrap();
        assert_eq!(spaced.to_file_path().unwrap(), cwd.join("my store/ü"));
    }

    #[test]
    fn passwords_are_masked_even_in_urls_that_do_not_parse() {
        for (url, shown) in [
            (
                "redis://admin:hunter2@localhost:99999/0",
                "redis://admin:***@localhost:99999/0",
            ),
            ("postgres://u:pa/ss?#@h:1/db", "postgres://u:***@h:1/db"),
            (
                "postgres://u:s3cret@h:5432/db",
                "postgres://u:***@h:5432/db",
            ),
            ("sqlite:///tmp/a@b.db", "sqlite:///tmp/a@b.db"),
            ("redis://user@h:99999", "redis://user@h:99999"),
            ("not a url", "not a url"),
        ] {
            assert_eq!(shown_url(url), shown, "{url}");
        }
        for url in [
            "redis://admin:hunter2@localhost:99999/0",
            "memory://admin:hunter2@localhost",
            "file://admin:hunter2@localhost/tmp/x",
        ] {
            let err = parse_options(url).unwrap_err();
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn repeated_options_and_fragments_are_refused() {
        for url in [
            "memory://?x=1&x=2",
            "file:///tmp/s?durability=sync&durability=buffered",
            "file:///tmp/s#frag",
            "file:rel#frag",
        ] {
            let err = parse_options(url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}: {err}");
        }
        for (url, name) in [
            (
                "file:///tmp/s?durability=sync&durability=buffered",
                "`durability`",
            ),
            ("file:///tmp/s?require=none&require=power_loss", "`require`"),
        ] {
            let err = parse_options(url).unwrap_err();
            assert!(err.message().contains(name), "{url}: {err}");
        }
    }

    #[test]
    fn passwords_never_reach_messages() {
        for url in [
            "nosuch://app:s3cret@db/x",
            "nosuch://app:s3cret@db/x?a=1&a=2",
        ] {
            let err = parse_options(url).unwrap_err();
            assert!(!err.message().contains("s3cret"), "{err}");
            assert!(err.message().contains("***"), "{err}");
        }
        assert_eq!(shown_url("memory://"), "memory://");
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
        let err = not_compiled_in("rediss://h", "rediss");
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(err.message().contains("`redis` feature"), "{err}");
        assert!(err.message().contains("\"rediss://h\""), "{err}");
    }
}
