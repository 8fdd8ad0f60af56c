//! The Redis backend (`redis://host:port/db?prefix=NAME`, `rediss://…`),
//! shared between processes: an engine on core's seam ([`RedisEngine`])
//! whose jobs run on the client and whose writes are applied by one
//! script only if everything the job read is unchanged. See
//! `docs/redis.md` for the key layout, the scripts, cluster slots,
//! failure semantics and durability.
//!
//! URL query parameters (all optional, each at most once):
//!
//! | parameter | default | meaning |
//! |---|---|---|
//! | `prefix` | `stowage` | namespace of every key (an identifier) |
//! | `cluster` | `false` | use the Redis Cluster client (the URL is a seed node) |
//! | `response_timeout_ms` | `10000` | how long to wait for a reply before `OutcomeUnknown` (≥ 1) |
//! | `connect_timeout_ms` | `2000` | how long one connection attempt may take (≥ 1) |
//! | `reconnect_retries` | `3` | connection attempts after the first before `Unavailable` (0: no retry) |
//! | `idempotent_retries` | `2` | resends of a write whose reply was lost, where a resend is exactly-once |
//! | `wait` | `none` | `aof` (`WAITAOF 1 0`) or `replicas:N` (`WAIT N`) after every write |
//! | `wait_timeout_ms` | `1000` | timeout of that wait (≥ 1) |
//! | `tls_ca` | system roots | `rediss://` only: PEM file of the CA(s) to trust instead |

pub(crate) mod config;
mod conn;
mod engine;
mod guess;
mod lua;
mod remote;
mod turnstile;

use std::sync::Arc;
use std::time::Duration;

use stowage_core::{Capabilities, DurabilityLevel, Error, ErrorKind, Result, StoreEnv, Stores};
use url::Url;

pub use config::{RedisOptions, RedisWait};
use conn::{Conn, WaitMode};
pub use engine::RedisEngine;

/// The largest blob: Redis's largest string (512 MiB) minus the 4-byte
/// checksum header, kept from the backend's first layout.
pub(crate) const MAX_BLOB: u64 = 512 * 1024 * 1024 - 4;

fn open_failed(e: redis::RedisError, url: &str, tls: bool) -> Error {
    let kind = match e.kind() {
        redis::ErrorKind::InvalidClientConfig => ErrorKind::InvalidInput,
        _ => ErrorKind::Unavailable,
    };
    let how = if tls {
        " over TLS (the server's certificate must name this host and chain to a trusted root: the system roots, or the CA file given by tls_ca=)"
    } else {
        ""
    };
    Error::new(kind, format!("cannot open redis store at {url}{how}")).with_source(e)
}

/// Opens the store `cfg` describes.
///
/// # Errors
/// As [`open_engine`].
pub(crate) async fn open_options(cfg: RedisOptions, env: StoreEnv) -> Result<Stores> {
    let engine = open_engine(cfg).await?;
    Ok(stowage_core::engine::stores(Arc::new(engine), env))
}

/// Connects the engine of the store `cfg` describes (the stores over it:
/// `stowage_core::engine::stores`). Several engines, in one process or
/// many, may serve one store at once.
///
/// # Errors
/// `InvalidInput` or `Unsupported` for options that cannot work together;
/// `Unavailable` when the server cannot be reached.
pub async fn open_engine(cfg: RedisOptions) -> Result<RedisEngine> {
    let url = config::check(&cfg)?;
    let server = url.to_string();
    let shown = redacted(&url);
    let tls = url.scheme() == "rediss";
    if tls {
        conn::use_ring_provider();
    }
    let certs = match &cfg.tls_ca {
        Some(path) => Some(
            conn::private_ca(&path.to_string_lossy())
                .await
                .map_err(|e| e.context(format_args!("redis store {shown:?}")))?,
        ),
        None => None,
    };
    let failed = |e| open_failed(e, &shown, tls);
    let conn = if cfg.cluster {
        let mut builder = redis::cluster::ClusterClientBuilder::new(vec![server.as_str()])
            .retries(0)
            .connection_timeout(cfg.connect_timeout)
            .response_timeout(cfg.response_timeout);
        if let Some(certs) = certs {
            builder = builder.certs(certs);
        }
        let client = builder.build().map_err(failed)?;
        let c = client.get_async_connection().await.map_err(failed)?;
        Conn::cluster(c, cfg.wait, cfg.wait_timeout)
    } else {
        let client = match certs {
            Some(certs) => redis::Client::build_with_tls(server.as_str(), certs),
            None => redis::Client::open(server.as_str()),
        }
        .map_err(failed)?;
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_response_timeout(Some(cfg.response_timeout))
            .set_connection_timeout(Some(cfg.connect_timeout))
            .set_number_of_retries(cfg.reconnect_retries)
            .set_max_delay(Duration::from_secs(1));
        let c = redis::aio::ConnectionManager::new_with_config(client, config)
            .await
            .map_err(failed)?;
        Conn::single(c, cfg.wait, cfg.wait_timeout)
    };
    if cfg.wait == WaitMode::Aof {
        // Refuse at open, not after a write has been applied: `WAITAOF 1`
        // is refused by a server without `appendonly yes` (and by one
        // before 7.2); on this fresh connection it has nothing to wait for.
        let mut probe = redis::cmd("WAITAOF");
        probe.arg(1).arg(0).arg(1);
        if let Err(e) = conn.query(&probe, conn::Op::Read, "probe WAITAOF").await {
            if e.kind() != ErrorKind::Unavailable {
                return Err(Error::unsupported(format!(
                    "wait=aof needs WAITAOF (Redis >= 7.2) and appendonly yes, which the server \
                     at {shown} refused: {e}"
                )));
            }
            return Err(e);
        }
    }
    Ok(RedisEngine::new(
        conn,
        &cfg.prefix,
        cfg.response_timeout,
        cfg.idempotent_retries,
        capabilities(),
    ))
}

/// What a Redis store can do: shared, as durable as the server is
/// configured to be (`docs/redis.md`).
pub(crate) fn capabilities() -> Capabilities {
    Capabilities::new("redis", DurabilityLevel::AsConfigured, true, MAX_BLOB)
}

/// The URL without its password, for messages.
pub(crate) fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}
