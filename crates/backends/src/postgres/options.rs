//! [`PostgresOptions`] and the `postgres://` URL that parses into it.

use std::path::PathBuf;
use std::time::Duration;

use stowage_core::{Error, Result, StoreEnv, Stores};
use url::Url;

use crate::options::StoreOptions;

/// The default schema (`schema`).
pub const DEFAULT_SCHEMA: &str = "stowage";

/// The default number of connections (`pool_size`).
pub const DEFAULT_POOL_SIZE: usize = 16;

/// The most connections one store opens (`pool_size`).
pub const MAX_POOL_SIZE: usize = 256;

/// The default `connect_timeout_ms`.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The longest `connect_timeout_ms` / `statement_timeout_ms` accepted (one hour).
const MAX_TIMEOUT_MS: u64 = 3_600_000;

/// The query options of a `postgres://` URL and what each accepts (for
/// error messages). `require` is read by [`open`](crate::open) itself.
const OPTIONS: [(&str, &str); 9] = [
    (
        "schema",
        "a PostgreSQL identifier: lowercase ASCII letters, digits and underscores, \
         not starting with a digit or pg_, at most 63 bytes",
    ),
    ("pool_size", "a whole number from 1 to 256"),
    (
        "connect_timeout_ms",
        "a whole number of milliseconds from 1 to 3600000",
    ),
    (
        "statement_timeout_ms",
        "a whole number of milliseconds up to 3600000 (0: no timeout)",
    ),
    (
        "sslmode",
        "disable, prefer, require, verify-ca or verify-full",
    ),
    ("readable_columns", "true or false"),
    (
        "sslrootcert",
        "the path of a PEM file of CA certificates (needed by verify-ca and verify-full)",
    ),
    (
        "sslcert",
        "the path of a PEM file of the client certificate (and its chain), with sslkey",
    ),
    (
        "sslkey",
        "the path of a PEM file of the client certificate's private key, with sslcert",
    ),
];

/// `sslmode`: whether the connection is encrypted and what is checked,
/// as libpq defines the modes (`allow` is not supported).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SslMode {
    /// `disable`: never TLS.
    Disable,
    /// `prefer` (the default, as libpq's): TLS if the server offers it,
    /// else plain; the certificate is not checked.
    #[default]
    Prefer,
    /// `require`: TLS or no connection; the certificate is not checked
    /// (encryption, but no protection against an active man in the
    /// middle). With `sslrootcert` set it behaves as `verify-ca`, as
    /// libpq's does.
    Require,
    /// `verify-ca`: TLS, and the server's certificate must chain to a CA
    /// of `sslrootcert`; its host name is not checked.
    VerifyCa,
    /// `verify-full`: as `verify-ca`, and the certificate must name the
    /// host connected to (DNS name or IP address).
    VerifyFull,
}

impl SslMode {
    /// The URL spelling (`verify-full`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    fn parse(value: &str) -> Option<SslMode> {
        [
            SslMode::Disable,
            SslMode::Prefer,
            SslMode::Require,
            SslMode::VerifyCa,
            SslMode::VerifyFull,
        ]
        .into_iter()
        .find(|m| m.as_str() == value)
    }
}

/// How to open a PostgreSQL store (URL:
/// `postgres://user[:password]@host[:port]/db?schema=NAME`, also
/// `postgresql://`, with the options below as query parameters of the
/// same names). See the [module docs](super) and `docs/postgres.md`.
///
/// ```
/// use stowage_backends::options::{PostgresOptions, StoreOptions};
/// let mut opts = PostgresOptions::new("db.internal", "agents");
/// opts.user = "app".into();
/// opts.schema = "team_a".into();
/// opts.pool_size = 32;
/// let parsed =
///     StoreOptions::parse("postgres://app@db.internal/agents?schema=team_a&pool_size=32").unwrap();
/// assert_eq!(parsed, StoreOptions::Postgres(opts));
/// ```
#[non_exhaustive]
#[derive(Clone, PartialEq, Eq)]
pub struct PostgresOptions {
    /// The server's host name or IP address.
    pub host: String,
    /// The server's port (default 5432).
    pub port: u16,
    /// The user to connect as (default `postgres`; not empty).
    pub user: String,
    /// The password, if the server asks for one (never shown by `Debug`).
    pub password: Option<String>,
    /// The database.
    pub dbname: String,
    /// `schema`: the PostgreSQL schema holding this store's tables,
    /// created if missing (default `stowage`). Stores in different schemas
    /// of one database are independent.
    pub schema: String,
    /// `pool_size`: connections, 1 to 256 (default 16): a quarter of them
    /// (1 to 8) belong to the writers, which commit write jobs in
    /// groups, the rest (at least one) to the pool for reads; opened when
    /// first needed.
    pub pool_size: usize,
    /// `connect_timeout_ms`: how long opening a connection may take, 1 ms
    /// to 1 h (default 10 s), per host. It bounds the whole connect — the
    /// TCP connect, the TLS handshake, the startup, the login and the
    /// connection's first queries — so a server
    /// that accepts connections but never answers fails the open (or the
    /// job needing a new connection) with `Unavailable` after it; nothing
    /// was applied.
    pub connect_timeout: Duration,
    /// `statement_timeout_ms`: the server's `statement_timeout` for every
    /// statement, lock waits included, up to 1 h (default `None`: no
    /// timeout). A statement that times out fails with `Unavailable`.
    /// `Some(Duration::ZERO)` means no timeout, as `None` and
    /// `statement_timeout_ms=0` do (PostgreSQL's `statement_timeout=0`);
    /// any other value under 1 ms is refused, since the server is sent
    /// whole milliseconds and it would silently become 0, no timeout.
    pub statement_timeout: Option<Duration>,
    /// `readable_columns`: fill the readable columns of `run_events`,
    /// `runs`, `sessions`, `session_log` and `releases` at write time
    /// (default `true`; `false` leaves them `NULL` and saves about 10 % of
    /// append throughput).
    pub readable_columns: bool,
    /// `sslmode`: TLS and what it checks (default [`SslMode::Prefer`]).
    pub ssl_mode: SslMode,
    /// `sslrootcert`: a PEM file of the CA certificates `verify-ca` and
    /// `verify-full` trust (read at open). Set with `require`, it makes
    /// `require` check the chain as `verify-ca` does (libpq's rule).
    pub ssl_root_cert: Option<PathBuf>,
    /// `sslcert`: a PEM file of the client certificate (then its chain)
    /// presented to a server that asks for one (`cert` authentication or
    /// `clientcert=verify-ca|verify-full` in `pg_hba.conf`). Needs
    /// [`ssl_key`](Self::ssl_key) and a mode other than `disable`.
    pub ssl_cert: Option<PathBuf>,
    /// `sslkey`: a PEM file of the client certificate's private key
    /// (PKCS#8, PKCS#1 or SEC1; not encrypted). Needs
    /// [`ssl_cert`](Self::ssl_cert).
    pub ssl_key: Option<PathBuf>,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "<redacted>"))
            .field("dbname", &self.dbname)
            .field("schema", &self.schema)
            .field("pool_size", &self.pool_size)
            .field("connect_timeout", &self.connect_timeout)
            .field("statement_timeout", &self.statement_timeout)
            .field("readable_columns", &self.readable_columns)
            .field("ssl_mode", &self.ssl_mode)
            .field("ssl_root_cert", &self.ssl_root_cert)
            .field("ssl_cert", &self.ssl_cert)
            .field("ssl_key", &self.ssl_key)
            .finish()
    }
}

impl PostgresOptions {
    /// The defaults, for database `dbname` on `host`.
    pub fn new(host: impl Into<String>, dbname: impl Into<String>) -> PostgresOptions {
        PostgresOptions {
            host: host.into(),
            port: 5432,
            user: "postgres".into(),
            password: None,
            dbname: dbname.into(),
            schema: DEFAULT_SCHEMA.into(),
            pool_size: DEFAULT_POOL_SIZE,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: None,
            readable_columns: true,
            ssl_mode: SslMode::Prefer,
            ssl_root_cert: None,
            ssl_cert: None,
            ssl_key: None,
        }
    }

    /// What is wrong with `ssl_cert`/`ssl_key` as a pair, if anything.
    fn client_cert_problem(&self) -> Option<&'static str> {
        let empty = |p: &Option<PathBuf>| p.as_ref().is_some_and(|p| p.as_os_str().is_empty());
        if self.ssl_cert.is_some() != self.ssl_key.is_some() {
            Some("set both or neither of sslcert and sslkey (ssl_cert and ssl_key)")
        } else if empty(&self.ssl_cert) || empty(&self.ssl_key) {
            Some("paths of PEM files (sslcert and sslkey cannot be empty)")
        } else if self.ssl_cert.is_some() && self.ssl_mode == SslMode::Disable {
            Some("unset with sslmode=disable (a client certificate needs TLS)")
        } else {
            None
        }
    }

    /// The first of the strings sent in PostgreSQL's startup message
    /// (`host`, `user`, `password`, `dbname`) that holds a NUL byte: the
    /// message carries them as NUL-terminated strings, so no server can
    /// take one.
    fn nul_field(&self) -> Option<&'static str> {
        [
            ("host", Some(&self.host)),
            ("user", Some(&self.user)),
            ("password", self.password.as_ref()),
            ("dbname", Some(&self.dbname)),
        ]
        .into_iter()
        .find(|(_, value)| value.is_some_and(|v| v.contains('\0')))
        .map(|(field, _)| field)
    }

    /// The mode connections really use: `require` with `sslrootcert`
    /// checks the chain, as `verify-ca` (libpq's rule).
    pub(super) fn effective_ssl_mode(&self) -> SslMode {
        match self.ssl_mode {
            SslMode::Require if self.ssl_root_cert.is_some() => SslMode::VerifyCa,
            mode => mode,
        }
    }

    /// Parses a `postgres://` or `postgresql://` URL.
    ///
    /// # Errors
    /// As [`StoreOptions::parse`], and `InvalidInput` for another scheme.
    pub fn from_url(url: &str) -> Result<PostgresOptions> {
        match StoreOptions::parse(url)? {
            StoreOptions::Postgres(o) => Ok(o),
            #[allow(unreachable_patterns)]
            _ => Err(Error::invalid_input(format!(
                "store URL {url:?} is not a postgres:// URL (expected \
                 postgres://user@host:port/db?schema=NAME)"
            ))),
        }
    }

    /// Opens the store with the system clock and random ids.
    ///
    /// # Errors
    /// As [`PostgresEngine::open`](super::PostgresEngine::open).
    pub async fn open(self) -> Result<Stores> {
        self.open_with(StoreEnv::default()).await
    }

    /// Opens the store with an injected clock and id generator.
    ///
    /// # Errors
    /// As [`PostgresEngine::open`](super::PostgresEngine::open).
    pub async fn open_with(self, env: StoreEnv) -> Result<Stores> {
        let engine = super::PostgresEngine::open(self).await?;
        Ok(stowage_core::engine::stores(engine, env))
    }

    /// `postgres://user@host:port/db?schema=…` without the password (for
    /// messages).
    pub(super) fn shown(&self) -> String {
        format!(
            "postgres://{}@{}:{}/{}?schema={}",
            self.user, self.host, self.port, self.dbname, self.schema
        )
    }

    /// Checks the values a URL cannot express wrongly but a struct can
    /// (and a NUL byte, which neither may hold).
    ///
    /// # Errors
    /// `InvalidInput` naming the field and what it accepts.
    pub(super) fn validate(&self) -> Result<()> {
        let bad = |field: &str, value: &dyn std::fmt::Debug, allowed: &str| {
            Err(Error::invalid_input(format!(
                "PostgresOptions::{field} is {value:?}; allowed values: {allowed}"
            )))
        };
        if let Some(field) = self.nul_field() {
            // The value is not shown: it may be the password.
            return Err(Error::invalid_input(format!(
                "PostgresOptions::{field} holds a NUL byte; allowed values: text without NUL \
                 (PostgreSQL's startup message carries it as a NUL-terminated string)"
            )));
        }
        if self.host.is_empty() {
            return bad("host", &self.host, "a host name or IP address");
        }
        // The server would refuse the login (28000), which is `Unavailable`
        // ("retry") for a value that can never work.
        if self.user.is_empty() {
            return bad(
                "user",
                &self.user,
                "a user name (PostgreSQL logs in as a user)",
            );
        }
        if self.dbname.is_empty() {
            return bad("dbname", &self.dbname, "a database name");
        }
        if !valid_schema(&self.schema) {
            return bad("schema", &self.schema, OPTIONS[0].1);
        }
        if !(1..=MAX_POOL_SIZE).contains(&self.pool_size) {
            return bad("pool_size", &self.pool_size, OPTIONS[1].1);
        }
        let (min, max) = (
            Duration::from_millis(1),
            Duration::from_millis(MAX_TIMEOUT_MS),
        );
        if !(min..=max).contains(&self.connect_timeout) {
            return bad("connect_timeout", &self.connect_timeout, OPTIONS[2].1);
        }
        // Sent in whole milliseconds: 500 µs would be 0, which PostgreSQL
        // reads as "no timeout".
        if self
            .statement_timeout
            .is_some_and(|t| t > max || (!t.is_zero() && t < min))
        {
            return bad("statement_timeout", &self.statement_timeout, OPTIONS[3].1);
        }
        if matches!(self.ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull)
            && self.ssl_root_cert.is_none()
        {
            return bad(
                "ssl_root_cert",
                &self.ssl_root_cert,
                "a PEM file of CA certificates when ssl_mode is verify-ca or verify-full",
            );
        }
        if self
            .ssl_root_cert
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return bad("ssl_root_cert", &self.ssl_root_cert, OPTIONS[6].1);
        }
        if let Some(why) = self.client_cert_problem() {
            return bad("ssl_cert", &self.ssl_cert, why);
        }
        Ok(())
    }
}

/// Whether `schema` is a lowercase identifier PostgreSQL lets a user
/// create (`pg_…` names are reserved for its own schemas; keywords are
/// fine, the schema is created quoted).
pub(super) fn valid_schema(schema: &str) -> bool {
    let mut chars = schema.chars();
    matches!(chars.next(), Some('a'..='z' | '_'))
        && chars.all(|c| matches!(c, 'a'..='z' | '0'..='9' | '_'))
        && schema.len() <= 63
        && !schema.starts_with("pg_")
}

/// Parses `postgres://user[:password]@host[:port]/db?options`.
///
/// # Errors
/// `InvalidInput` naming the URL for a missing host or database, a user,
/// password or database that is not UTF-8 or holds a NUL byte (naming the
/// field), an unknown or malformed option (naming the option and what it
/// accepts), `sslmode=allow`, `sslrootcert=system`, or `verify-ca`/`verify-full`
/// without `sslrootcert`.
pub(crate) fn parse(url: &Url) -> Result<PostgresOptions> {
    let shown = redacted(url);
    let bad_url = |why: &str| {
        Error::invalid_input(format!(
            "store URL {shown:?}: {why}; expected postgres://user@host:port/db?schema=NAME"
        ))
    };
    let host = match url.host_str() {
        Some(h) if !h.is_empty() => h.trim_start_matches('[').trim_end_matches(']'),
        _ => return Err(bad_url("the host is missing")),
    };
    let dbname = url.path().trim_start_matches('/');
    if dbname.is_empty() || dbname.contains('/') {
        return Err(bad_url("the path must name one database (/db)"));
    }
    if url.fragment().is_some() {
        return Err(bad_url("a fragment is not allowed"));
    }
    let decode = |s: &str| {
        crate::options::percent_decode(s)
            .ok_or_else(|| bad_url("the user, password or database is not UTF-8"))
    };
    let mut opts = PostgresOptions::new(host, decode(dbname)?);
    if let Some(port) = url.port() {
        opts.port = port;
    }
    if !url.username().is_empty() {
        opts.user = decode(url.username())?;
    }
    opts.password = url.password().map(decode).transpose()?;
    if let Some(field) = opts.nul_field() {
        return Err(bad_url(&format!(
            "the {field} holds a NUL byte (%00), which PostgreSQL's startup message cannot \
             carry (its strings are NUL-terminated)"
        )));
    }
    for (key, value) in crate::options::query_params(url)? {
        let bad = |allowed: &str| {
            Error::invalid_input(format!(
                "store URL {shown:?}: option {key}={value} is not valid; allowed values: {allowed}"
            ))
        };
        let millis = |allowed: &str, min: u64| {
            value
                .parse::<u64>()
                .ok()
                .filter(|ms| (min..=MAX_TIMEOUT_MS).contains(ms))
                .map(Duration::from_millis)
                .ok_or_else(|| bad(allowed))
        };
        match &*key {
            "schema" if valid_schema(&value) => opts.schema = value.into_owned(),
            "schema" => return Err(bad(OPTIONS[0].1)),
            "pool_size" => {
                opts.pool_size = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=MAX_POOL_SIZE).contains(n))
                    .ok_or_else(|| bad(OPTIONS[1].1))?;
            }
            "connect_timeout_ms" => opts.connect_timeout = millis(OPTIONS[2].1, 1)?,
            "statement_timeout_ms" => {
                let t = millis(OPTIONS[3].1, 0)?;
                opts.statement_timeout = (!t.is_zero()).then_some(t);
            }
            "readable_columns" => {
                opts.readable_columns = match &*value {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(OPTIONS[5].1)),
                }
            }
            "sslmode" => {
                opts.ssl_mode = SslMode::parse(&value).ok_or_else(|| bad(OPTIONS[4].1))?;
            }
            "sslrootcert" if value.is_empty() || value == "system" => {
                return Err(bad(OPTIONS[6].1));
            }
            "sslrootcert" => opts.ssl_root_cert = Some(PathBuf::from(&*value)),
            "sslcert" => opts.ssl_cert = Some(PathBuf::from(&*value)),
            "sslkey" => opts.ssl_key = Some(PathBuf::from(&*value)),
            _ => {
                let known: Vec<String> = OPTIONS
                    .iter()
                    .map(|(name, allowed)| format!("{name} ({allowed})"))
                    .collect();
                return Err(Error::invalid_input(format!(
                    "store URL {shown:?}: unknown option {key}={value}; known options: {}, \
                     require (a durability level)",
                    known.join(", ")
                )));
            }
        }
    }
    if matches!(opts.ssl_mode, SslMode::VerifyCa | SslMode::VerifyFull)
        && opts.ssl_root_cert.is_none()
    {
        return Err(Error::invalid_input(format!(
            "store URL {shown:?}: sslmode={} needs sslrootcert=PATH (a PEM file of the CA \
             certificates to trust)",
            opts.ssl_mode.as_str()
        )));
    }
    if let Some(why) = opts.client_cert_problem() {
        return Err(Error::invalid_input(format!(
            "store URL {shown:?}: option sslcert/sslkey is not valid: {why}"
        )));
    }
    Ok(opts)
}

/// The URL with its password replaced (for messages).
fn redacted(url: &Url) -> String {
    let mut shown = url.clone();
    if shown.password().is_some() {
        let _ = shown.set_password(Some("***"));
    }
    shown.to_string()
}

#[cfg(test)]
#[path = "options_tests.rs"]
mod tests;
