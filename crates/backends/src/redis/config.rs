//! [`RedisOptions`]: the typed configuration of a Redis store, and the
//! parsing of a `redis://…?param=value` URL into it.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use stowage_core::{validate, Error, Result, StoreEnv, Stores};
use url::Url;

use super::redacted;

/// An opt-in durability wait issued after every acknowledged mutation
/// (URL parameter `wait`).
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RedisWait {
    /// `none`: acknowledge as soon as the primary ran the script.
    #[default]
    None,
    /// `aof`: `WAITAOF 1 0 <timeout>`, the primary fsynced its AOF
    /// (Redis ≥ 7.2; refused at open otherwise).
    Aof,
    /// `replicas:N`: `WAIT N <timeout>`, `N` replicas received the write.
    Replicas(u32),
}

/// How to open a Redis store: what `redis://host:port/db?…` parses into
/// ([`RedisOptions::from_url`]), or built in code with
/// [`RedisOptions::new`] and field assignments. Each field documents its
/// URL parameter; the table is in `docs/redis.md`.
///
/// ```
/// # #[cfg(feature = "redis")] {
/// use stowage_backends::options::RedisOptions;
/// let mut opts = RedisOptions::new("redis://127.0.0.1:6379/0");
/// opts.prefix = "myapp".into();
/// let parsed = RedisOptions::from_url("redis://127.0.0.1:6379/0?prefix=myapp").unwrap();
/// assert_eq!(opts, parsed);
/// # }
/// ```
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq)]
pub struct RedisOptions {
    /// The server (a seed node with `cluster`):
    /// `redis://[user:password@]host:port/db` or `rediss://…` (TLS),
    /// without a query.
    pub server: String,
    /// `prefix`: the namespace of every key, an identifier (default
    /// `stowage`).
    pub prefix: String,
    /// `cluster`: use the Redis Cluster client (default `false`).
    pub cluster: bool,
    /// `response_timeout_ms`: how long to wait for a reply before
    /// `OutcomeUnknown`, at least 1 ms (default 10 s).
    pub response_timeout: Duration,
    /// `connect_timeout_ms`: how long one connection attempt may take, at
    /// least 1 ms (default 2 s).
    pub connect_timeout: Duration,
    /// `reconnect_retries`: connection attempts after the first before
    /// `Unavailable` (default 3; 0: one attempt, no retry).
    pub reconnect_retries: usize,
    /// `idempotent_retries`: how often a write whose reply was lost is
    /// sent again, when a resend cannot apply it twice (it writes a key
    /// it read; see `docs/redis.md`, failure semantics) (default 2).
    pub idempotent_retries: u32,
    /// `wait`: the durability wait after every write (default none).
    pub wait: RedisWait,
    /// `wait_timeout_ms`: the timeout of that wait, at least 1 ms (default
    /// 1 s; `WAIT` with 0 would block forever).
    pub wait_timeout: Duration,
    /// `tls_ca`: `rediss://` only, a PEM file of the CA(s) to trust
    /// instead of the system roots.
    pub tls_ca: Option<PathBuf>,
}

impl fmt::Debug for RedisOptions {
    /// As the derived form, with the password in `server` hidden.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let server =
            Url::parse(&self.server).map_or_else(|_| self.server.clone(), |u| redacted(&u));
        f.debug_struct("RedisOptions")
            .field("server", &server)
            .field("prefix", &self.prefix)
            .field("cluster", &self.cluster)
            .field("response_timeout", &self.response_timeout)
            .field("connect_timeout", &self.connect_timeout)
            .field("reconnect_retries", &self.reconnect_retries)
            .field("idempotent_retries", &self.idempotent_retries)
            .field("wait", &self.wait)
            .field("wait_timeout", &self.wait_timeout)
            .field("tls_ca", &self.tls_ca)
            .finish()
    }
}

impl RedisOptions {
    /// The defaults, for the server `server` (`redis://host:port/db`).
    pub fn new(server: impl Into<String>) -> RedisOptions {
        RedisOptions {
            server: server.into(),
            prefix: "stowage".to_owned(),
            cluster: false,
            response_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(2),
            reconnect_retries: 3,
            idempotent_retries: 2,
            wait: RedisWait::None,
            wait_timeout: Duration::from_secs(1),
            tls_ca: None,
        }
    }

    /// Parses `redis://…?param=value&…` (or `rediss://…`).
    ///
    /// # Errors
    /// `InvalidInput` naming the URL for a malformed URL, another scheme,
    /// or an unknown parameter (listing the known ones) or a bad value
    /// (naming what the parameter accepts).
    pub fn from_url(url: &str) -> Result<RedisOptions> {
        let parsed = Url::parse(url).map_err(|e| {
            let shown = crate::open::shown_url(url);
            Error::invalid_input(format!("store URL {shown:?} is malformed: {e}"))
        })?;
        if !matches!(parsed.scheme(), "redis" | "rediss") {
            return Err(Error::invalid_input(format!(
                "store URL {:?} is not a redis:// or rediss:// URL",
                redacted(&parsed)
            )));
        }
        // As `stowage_backends::open` does: redis-rs would read
        // `#insecure` as "skip TLS certificate checks".
        crate::open::check_query(&parsed, &redacted(&parsed))?;
        parse(&parsed)
    }

    /// Opens the store with the system clock and random ids.
    ///
    /// # Errors
    /// `InvalidInput` or `Unsupported` for options that cannot work
    /// together (naming them); `Unavailable` when the server cannot be
    /// reached.
    pub async fn open(self) -> Result<Stores> {
        self.open_with(StoreEnv::default()).await
    }

    /// Opens the store with an injected clock and id generator.
    ///
    /// # Errors
    /// As [`RedisOptions::open`].
    pub async fn open_with(self, env: StoreEnv) -> Result<Stores> {
        super::open_options(self, env).await
    }
}

/// Every query parameter of a Redis URL and what it accepts.
const PARAMS: [(&str, &str); 9] = [
    (
        "prefix",
        "an identifier (1-256 bytes, no control characters)",
    ),
    ("cluster", "true or false"),
    ("response_timeout_ms", "a whole number of milliseconds ≥ 1"),
    ("connect_timeout_ms", "a whole number of milliseconds ≥ 1"),
    (
        "reconnect_retries",
        "a whole number (0: one connection attempt, no retry)",
    ),
    ("idempotent_retries", "a whole number up to 4294967295"),
    ("wait", "none, aof or replicas:N"),
    ("wait_timeout_ms", "a whole number of milliseconds ≥ 1"),
    ("tls_ca", "the path of a PEM file (rediss:// only)"),
];

/// What the parameter `name` accepts (from [`PARAMS`]).
fn allowed(name: &str) -> &'static str {
    PARAMS
        .iter()
        .find(|(param, _)| *param == name)
        .map_or("", |(_, allowed)| *allowed)
}

/// Parses the query of a `redis://` / `rediss://` URL into options.
///
/// # Errors
/// As [`RedisOptions::from_url`].
pub(crate) fn parse(url: &Url) -> Result<RedisOptions> {
    let mut server = url.clone();
    server.set_query(None);
    let mut cfg = RedisOptions::new(server.to_string());
    let shown = redacted(url);
    let bad = |k: &str, v: &str| {
        Error::invalid_input(format!(
            "store URL {shown:?}: parameter {k}={v:?} is not valid; allowed values: {}",
            allowed(k)
        ))
    };
    let num = |k: &str, v: &str| v.parse::<u64>().map_err(|_| bad(k, v));
    // A timeout of 0 ms cannot work: every reply or connection would time
    // out, and `WAIT`/`WAITAOF` with 0 block forever.
    let millis = |k: &str, v: &str| match num(k, v)? {
        0 => Err(bad(k, v)),
        ms => Ok(Duration::from_millis(ms)),
    };
    for (k, v) in crate::options::query_params(url)? {
        match k.as_ref() {
            "prefix" => cfg.prefix = v.into_owned(),
            "cluster" => {
                cfg.cluster = match v.as_ref() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => return Err(bad(&k, &v)),
                }
            }
            "response_timeout_ms" => cfg.response_timeout = millis(&k, &v)?,
            "connect_timeout_ms" => cfg.connect_timeout = millis(&k, &v)?,
            "reconnect_retries" => {
                cfg.reconnect_retries = usize::try_from(num(&k, &v)?).map_err(|_| bad(&k, &v))?
            }
            "idempotent_retries" => {
                cfg.idempotent_retries = u32::try_from(num(&k, &v)?).map_err(|_| bad(&k, &v))?
            }
            "wait_timeout_ms" => cfg.wait_timeout = millis(&k, &v)?,
            "tls_ca" => {
                if v.is_empty() {
                    return Err(bad(&k, &v));
                }
                cfg.tls_ca = Some(PathBuf::from(v.into_owned()));
            }
            "wait" => {
                cfg.wait = match v.as_ref() {
                    "none" => RedisWait::None,
                    "aof" => RedisWait::Aof,
                    other => match other.strip_prefix("replicas:") {
                        Some(n) => RedisWait::Replicas(n.parse().map_err(|_| bad(&k, &v))?),
                        None => return Err(bad(&k, &v)),
                    },
                }
            }
            other => {
                let known: Vec<String> = PARAMS
                    .iter()
                    .map(|(name, allowed)| format!("{name} ({allowed})"))
                    .collect();
                return Err(Error::invalid_input(format!(
                    "store URL {shown:?}: unknown redis URL parameter {other:?}; known parameters: {}",
                    known.join(", ")
                )));
            }
        }
    }
    check(&cfg)
        .map_err(|e| Error::new(e.kind(), format!("store URL {shown:?}: {}", e.message())))?;
    Ok(cfg)
}

/// Checks the rules that tie options together and returns the parsed
/// server URL.
///
/// # Errors
/// `InvalidInput` for a bad server URL or prefix, a timeout under 1 ms,
/// or `tls_ca` without TLS; `Unsupported` for `wait` together with
/// `cluster`.
pub(crate) fn check(cfg: &RedisOptions) -> Result<Url> {
    let expected = "expected redis://[user:password@]host:port/db or rediss://… without a query";
    let server = Url::parse(&cfg.server).map_err(|e| {
        Error::invalid_input(format!(
            "the redis server URL is malformed ({e}); {expected}"
        ))
    })?;
    if !matches!(server.scheme(), "redis" | "rediss") || server.query().is_some() {
        return Err(Error::invalid_input(format!(
            "redis server {:?} is not valid; {expected}",
            redacted(&server)
        )));
    }
    validate::identifier("redis key prefix", &cfg.prefix).map_err(|e| {
        Error::invalid_input(format!(
            "parameter prefix={:?} is not valid: {}",
            cfg.prefix,
            e.message()
        ))
    })?;
    if cfg.cluster && cfg.prefix.starts_with('}') {
        // Keys are `{prefix}:…`, and Redis hashes the text up to the first
        // `}`: an empty hash tag would scatter one store over many slots.
        return Err(Error::invalid_input(format!(
            "parameter prefix={:?} cannot start with '}}' with cluster=true (its keys would have an empty hash tag)",
            cfg.prefix
        )));
    }
    // Checked here too, not only when parsing a URL, for options built in
    // code. Below 1 ms is 0 for `WAIT`/`WAITAOF` (whole milliseconds):
    // block forever.
    for (param, field, value) in [
        (
            "response_timeout_ms",
            "response_timeout",
            cfg.response_timeout,
        ),
        ("connect_timeout_ms", "connect_timeout", cfg.connect_timeout),
        ("wait_timeout_ms", "wait_timeout", cfg.wait_timeout),
    ] {
        if value < Duration::from_millis(1) {
            return Err(Error::invalid_input(format!(
                "parameter {param} (RedisOptions::{field}) is {value:?}; allowed values: {}",
                allowed(param)
            )));
        }
    }
    // `WAIT`/`WAITAOF` may take the whole wait_timeout to answer: a
    // client giving up sooner would answer every slow wait OutcomeUnknown.
    if cfg.wait != RedisWait::None && cfg.wait_timeout >= cfg.response_timeout {
        return Err(Error::invalid_input(format!(
            "parameter wait_timeout_ms ({} ms) must be below response_timeout_ms ({} ms): the \
             client would stop waiting for the reply before the durability wait answers",
            cfg.wait_timeout.as_millis(),
            cfg.response_timeout.as_millis()
        )));
    }
    if cfg.tls_ca.is_some() && server.scheme() != "rediss" {
        return Err(Error::invalid_input(
            "parameter tls_ca is only valid with rediss:// (TLS)",
        ));
    }
    if cfg.cluster && cfg.wait != RedisWait::None {
        return Err(Error::unsupported(
            "the wait= durability mode is not supported with cluster=true",
        ));
    }
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::ErrorKind;

    #[test]
    fn a_parameter_given_twice_is_refused() {
        // The last value used to win: tenant_b's store opened.
        for query in [
            "prefix=tenant_a&prefix=tenant_b",
            "prefix=a&response_timeout_ms=5&prefix=a",
            "wait=none&wait=aof",
            "pre%66ix=a&prefix=b",
        ] {
            let url = format!("redis://:pw@127.0.0.1:6379/0?{query}");
            let err = RedisOptions::from_url(&url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{query}: {err}");
            assert!(err.message().contains("is given twice"), "{err}");
            assert!(!err.message().contains(":pw@"), "{err}");
        }
        let err =
            RedisOptions::from_url("redis://h:1/0?prefix=tenant_a&prefix=tenant_b").unwrap_err();
        assert!(err.message().contains("`prefix`"), "{err}");
    }

    /// redis-rs reads `#insecure` as "skip TLS certificate checks":
    /// `from_url` refuses any fragment, as `open` does.
    #[test]
    fn a_fragment_is_refused() {
        for url in ["rediss://:pw@h:1/0#insecure", "redis://h:1/0?prefix=a#x"] {
            let err = RedisOptions::from_url(url).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{url}: {err}");
            assert!(err.message().contains("#fragment"), "{err}");
            assert!(!err.message().contains(":pw@"), "{err}");
        }
    }

    /// A durability wait may take its whole timeout: the reply timeout
    /// must be longer, or every slow wait would be OutcomeUnknown.
    #[test]
    fn a_wait_timeout_not_below_the_response_timeout_is_refused() {
        for query in [
            "wait=aof&wait_timeout_ms=2000&response_timeout_ms=2000",
            "wait=replicas:1&wait_timeout_ms=20000",
        ] {
            let err = RedisOptions::from_url(&format!("redis://h:1/0?{query}")).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{query}: {err}");
            assert!(err.message().contains("response_timeout_ms"), "{err}");
        }
        RedisOptions::from_url(
            "redis://h:1/0?wait=aof&wait_timeout_ms=1999&response_timeout_ms=2000",
        )
        .unwrap();
        // Without a wait, the wait timeout means nothing.
        RedisOptions::from_url("redis://h:1/0?wait_timeout_ms=20000").unwrap();
    }

    #[test]
    fn zero_timeouts_are_refused() {
        for param in [
            "response_timeout_ms",
            "connect_timeout_ms",
            "wait_timeout_ms",
        ] {
            let err = RedisOptions::from_url(&format!("redis://h:1/0?{param}=0")).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidInput, "{param}: {err}");
            assert!(err.message().contains(param), "{err}");
            assert!(err.message().contains("≥ 1"), "{err}");
            let one = RedisOptions::from_url(&format!("redis://h:1/0?{param}=1"));
            assert!(one.is_ok(), "{param}=1: {one:?}");
        }
        // 0 is meaningful for the retry counts: no retry.
        let o = RedisOptions::from_url("redis://h:1/0?reconnect_retries=0&idempotent_retries=0")
            .unwrap();
        assert_eq!((o.reconnect_retries, o.idempotent_retries), (0, 0));
    }

    #[test]
    fn typed_options_with_a_timeout_under_a_millisecond_are_refused() {
        type Set = fn(&mut RedisOptions, Duration);
        let fields: [(&str, Set); 3] = [
            ("response_timeout", |o, d| o.response_timeout = d),
            ("connect_timeout", |o, d| o.connect_timeout = d),
            ("wait_timeout", |o, d| o.wait_timeout = d),
        ];
        for (field, set) in fields {
            // WAIT's timeout is whole milliseconds: 500 µs would be 0,
            // "block forever".
            for d in [Duration::ZERO, Duration::from_micros(500)] {
                let mut o = RedisOptions::new("redis://h:1/0");
                set(&mut o, d);
                let err = check(&o).unwrap_err();
                assert_eq!(err.kind(), ErrorKind::InvalidInput, "{field}: {err}");
                assert!(err.message().contains(field), "{err}");
            }
            let mut o = RedisOptions::new("redis://h:1/0");
            set(&mut o, Duration::from_millis(1));
            assert!(check(&o).is_ok(), "{field}");
        }
    }
}
