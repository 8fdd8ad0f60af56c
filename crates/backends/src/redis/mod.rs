//! The Redis backend (`redis://host:port/db?prefix=NAME`, `rediss://…`),
//! shared between processes. See `docs/redis.md` for the key layout, the
//! scripts, cluster slots, failure semantics and durability.
//!
//! URL query parameters (all optional):
//!
//! | parameter | default | meaning |
//! |---|---|---|
//! | `prefix` | `stowage` | namespace of every key (an identifier) |
//! | `cluster` | `false` | use the Redis Cluster client (the URL is a seed node) |
//! | `response_timeout_ms` | `10000` | how long to wait for a reply before `OutcomeUnknown` |
//! | `connect_timeout_ms` | `2000` | how long one connection attempt may take |
//! | `reconnect_retries` | `3` | connection attempts before `Unavailable` |
//! | `idempotent_retries` | `2` | automatic retries of calls that carry an idempotency key |
//! | `wait` | `none` | `aof` (`WAITAOF 1 0`) or `replicas:N` (`WAIT N`) after every write |
//! | `wait_timeout_ms` | `1000` | timeout of that wait |
//! | `tls_ca` | system roots | `rediss://` only: PEM file of the CA(s) to trust instead |

mod cas;
mod chain;
mod conn;
mod index;
mod keys;
mod releases;
mod runs;
mod scripts;
mod sessions;
mod supersessions;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use stowage_core::{
    validate, Capabilities, DurabilityLevel, Error, ErrorKind, Result, StoreEnv, Stores,
};
use url::Url;

use conn::{Conn, WaitMode};
use keys::Keys;
use scripts::Scripts;

/// Redis's largest string (512 MiB) minus the 4-byte checksum header.
pub(crate) const MAX_BLOB: u64 = 512 * 1024 * 1024 - 4;

/// Most chain heads remembered for one-round-trip appends.
const HEAD_CACHE: usize = 4096;

/// What every store handle shares.
pub(crate) struct Shared {
    pub(crate) conn: Conn,
    pub(crate) keys: Keys,
    pub(crate) env: StoreEnv,
    pub(crate) scripts: Scripts,
    pub(crate) idempotent_retries: u32,
    /// Last known chain head per meta key: (next seq, head hex).
    heads: Mutex<HashMap<Vec<u8>, (u64, String)>>,
}

impl Shared {
    pub(crate) fn cached_head(&self, meta: &[u8]) -> Option<(u64, String)> {
        self.heads.lock().get(meta).cloned()
    }

    pub(crate) fn remember_head(&self, meta: &[u8], head: Option<(u64, String)>) {
        let mut heads = self.heads.lock();
        match head {
            Some(h) => {
                if heads.len() >= HEAD_CACHE && !heads.contains_key(meta) {
                    heads.clear();
                }
                heads.insert(meta.to_vec(), h);
            }
            None => {
                heads.remove(meta);
            }
        }
    }
}

struct Config {
    prefix: String,
    cluster: bool,
    response_timeout: Duration,
    connect_timeout: Duration,
    reconnect_retries: usize,
    idempotent_retries: u32,
    wait: WaitMode,
    wait_timeout: Duration,
    /// `rediss://` only: a PEM file of the CA(s) to trust instead of the system roots.
    tls_ca: Option<String>,
}

fn parse_config(url: &Url) -> Result<(Config, String)> {
    let mut cfg = Config {
        prefix: "stowage".to_owned(),
        cluster: false,
        response_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(2),
        reconnect_retries: 3,
        idempotent_retries: 2,
        wait: WaitMode::None,
        wait_timeout: Duration::from_secs(1),
        tls_ca: None,
    };
    let bad = |k: &str, v: &str| {
        Error::invalid_input(format!("redis URL parameter {k}={v:?} is not valid"))
    };
    let num = |k: &str, v: &str| v.parse::<u64>().map_err(|_| bad(k, v));
    for (k, v) in url.query_pairs() {
        match k.as_ref() {
            "prefix" => {
                validate::identifier("redis key prefix", &v)?;
                cfg.prefix = v.into_owned();
            }
            "cluster" => cfg.cluster = matches!(v.as_ref(), "true" | "1" | "yes"),
            "response_timeout_ms" => cfg.response_timeout = Duration::from_millis(num(&k, &v)?),
            "connect_timeout_ms" => cfg.connect_timeout = Duration::from_millis(num(&k, &v)?),
            "reconnect_retries" => {
                cfg.reconnect_retries = usize::try_from(num(&k, &v)?).map_err(|_| bad(&k, &v))?
            }
            "idempotent_retries" => {
                cfg.idempotent_retries = u32::try_from(num(&k, &v)?).map_err(|_| bad(&k, &v))?
            }
            "wait_timeout_ms" => cfg.wait_timeout = Duration::from_millis(num(&k, &v)?),
            "tls_ca" => {
                if v.is_empty() {
                    return Err(bad(&k, &v));
                }
                cfg.tls_ca = Some(v.into_owned());
            }
            "wait" => {
                cfg.wait = match v.as_ref() {
                    "none" => WaitMode::None,
                    "aof" => WaitMode::Aof,
                    other => match other.strip_prefix("replicas:") {
                        Some(n) => WaitMode::Replicas(n.parse().map_err(|_| bad(&k, &v))?),
                        None => return Err(bad(&k, &v)),
                    },
                }
            }
            other => {
                return Err(Error::invalid_input(format!(
                    "unknown redis URL parameter {other:?}"
                )))
            }
        }
    }
    if cfg.tls_ca.is_some() && url.scheme() != "rediss" {
        return Err(Error::invalid_input(
            "redis URL parameter tls_ca is only valid with rediss:// (TLS)",
        ));
    }
    if cfg.cluster && cfg.wait != WaitMode::None {
        return Err(Error::unsupported(
            "the wait= durability mode is not supported with cluster=true",
        ));
    }
    let mut server = url.clone();
    server.set_query(None);
    Ok((cfg, server.to_string()))
}

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

pub(crate) async fn open_url(url: &Url, env: StoreEnv) -> Result<Stores> {
    let (cfg, server) = parse_config(url)?;
    let shown = redacted(url);
    let tls = url.scheme() == "rediss";
    if tls {
        conn::use_ring_provider();
    }
    let certs = match &cfg.tls_ca {
        Some(path) => Some(conn::private_ca(path).await?),
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
        // Refuse at open, not after a write has been applied.
        let mut probe = redis::cmd("WAITAOF");
        probe.arg(0).arg(0).arg(0);
        if let Err(e) = conn.query(&probe, conn::Op::Read, "probe WAITAOF").await {
            if e.kind() != ErrorKind::Unavailable {
                return Err(Error::unsupported(format!(
                    "wait=aof needs WAITAOF (Redis >= 7.2), which the server at {shown} refused: {e}"
                )));
            }
            return Err(e);
        }
    }
    let shared = Arc::new(Shared {
        conn,
        keys: Keys::new(&cfg.prefix),
        env,
        scripts: Scripts::new(),
        idempotent_retries: cfg.idempotent_retries,
        heads: Mutex::new(HashMap::new()),
    });
    Ok(Stores {
        cas: Arc::new(cas::RedisCas(shared.clone())),
        runs: Arc::new(runs::RedisRuns(shared.clone())),
        releases: Arc::new(releases::RedisReleases(shared.clone())),
        sessions: Arc::new(sessions::RedisSessions(shared.clone())),
        supersessions: Arc::new(supersessions::RedisSupersessions(shared)),
        capabilities: capabilities(),
    })
}

/// What a Redis store can do: shared, as durable as the server is
/// configured to be (`docs/redis.md`).
pub(crate) fn capabilities() -> Capabilities {
    Capabilities {
        backend: "redis",
        durability: DurabilityLevel::AsConfigured,
        shared: true,
        max_blob_size: MAX_BLOB,
        streaming: false,
    }
}

/// The URL without its password, for messages.
fn redacted(url: &Url) -> String {
    let mut u = url.clone();
    if u.password().is_some() {
        let _ = u.set_password(Some("***"));
    }
    u.to_string()
}
