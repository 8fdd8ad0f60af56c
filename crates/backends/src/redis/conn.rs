//! The connection (single node or cluster), script calls, and the mapping of
//! redis-rs errors into stowage's [`ErrorKind`]s.

use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;

use redis::aio::ConnectionManager;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, ErrorKind as RedisKind, RedisError, ServerErrorKind, Value};
use stowage_core::{Error, ErrorKind, Result};

/// Whether a failed call may have changed anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Reads never change anything: a lost reply is `Unavailable`.
    Read,
    /// A lost or timed-out reply to a write is `OutcomeUnknown`.
    Write,
}

/// An opt-in durability wait issued after every acknowledged mutation.
pub(crate) use super::config::RedisWait as WaitMode;

/// Makes rustls's ring provider the process default for `rediss://`,
/// unless the application installed one already (then that one is used).
pub(crate) fn use_ring_provider() {
    // `Err` only means a default is already installed: keep it.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// Reads the `tls_ca` PEM file (off the async runtime) as the only roots
/// a `rediss://` connection trusts.
///
/// # Errors
/// `InvalidInput` when the file cannot be read, is not PEM, or holds no
/// certificate.
pub(crate) async fn private_ca(path: &str) -> Result<redis::TlsCertificates> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    let owned = path.to_owned();
    let read = tokio::task::spawn_blocking(move || std::fs::read(&owned))
        .await
        .map_err(|e| Error::internal(format!("reading tls_ca {path:?}: {e}")))?;
    let pem = read.map_err(|e| {
        Error::invalid_input(format!(
            "redis URL parameter tls_ca={path:?}: cannot read the file"
        ))
        .with_source(e)
    })?;
    let mut count = 0usize;
    for cert in CertificateDer::pem_slice_iter(&pem) {
        cert.map_err(|e| {
            Error::invalid_input(format!(
                "redis URL parameter tls_ca={path:?}: not a PEM certificate file: {e}"
            ))
        })?;
        count += 1;
    }
    if count == 0 {
        return Err(Error::invalid_input(format!(
            "redis URL parameter tls_ca={path:?}: the file holds no PEM certificate"
        )));
    }
    Ok(redis::TlsCertificates {
        client_tls: None,
        root_cert: Some(pem),
    })
}

/// A Lua script with its SHA-1, called by `EVALSHA` with an `EVAL` fallback.
pub(crate) struct Lua {
    pub(super) body: String,
    sha: String,
}

impl Lua {
    pub(crate) fn new(body: String) -> Self {
        let sha = redis::Script::new(&body).get_hash().to_owned();
        Lua { body, sha }
    }
}

/// A cheap-to-clone handle on the server(s).
#[derive(Clone)]
pub(crate) struct Conn {
    /// `None` once closed: every clone then refuses calls.
    inner: Arc<RwLock<Option<Inner>>>,
    wait: WaitMode,
    wait_timeout: Duration,
}

#[derive(Clone)]
enum Inner {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Conn {
    pub(crate) fn single(c: ConnectionManager, wait: WaitMode, wait_timeout: Duration) -> Self {
        Conn {
            inner: Arc::new(RwLock::new(Some(Inner::Single(c)))),
            wait,
            wait_timeout,
        }
    }

    pub(crate) fn cluster(c: ClusterConnection, wait: WaitMode, wait_timeout: Duration) -> Self {
        Conn {
            inner: Arc::new(RwLock::new(Some(Inner::Cluster(c)))),
            wait,
            wait_timeout,
        }
    }

    /// Drops this handle's connections (calls already running keep theirs
    /// until they finish); every later call fails with `Conflict`.
    pub(crate) fn close(&self) {
        drop(self.inner.write().take());
    }

    /// `Ok` unless the store was closed.
    ///
    /// # Errors
    /// `Conflict` once [`Conn::close`] ran.
    pub(crate) fn check_open(&self, what: &str) -> Result<()> {
        self.handle(what).map(drop)
    }

    /// The connection for one call, or the error of a closed store.
    fn handle(&self, what: &str) -> Result<Inner> {
        self.inner.read().clone().ok_or_else(|| {
            Error::conflict(format!(
                "{what}: the redis store was closed (Stores::close); open it again to use it"
            ))
        })
    }

    /// Sends one command.
    pub(crate) async fn query(&self, cmd: &Cmd, op: Op, what: &str) -> Result<Value> {
        let result = match self.handle(what)? {
            Inner::Single(mut c) => cmd.query_async::<Value>(&mut c).await,
            Inner::Cluster(mut c) => cmd.query_async::<Value>(&mut c).await,
        };
        result.map_err(|e| map_error(e, op, what))
    }

    /// Runs a script by SHA, falling back to `EVAL` (which also caches it on
    /// that node) when the server does not know it yet. `NOSCRIPT` means
    /// nothing ran, so the fallback never duplicates a write.
    pub(crate) async fn eval(
        &self,
        lua: &Lua,
        keys: &[&[u8]],
        args: &[&[u8]],
        op: Op,
        what: &str,
    ) -> Result<Value> {
        let build = |head: &str, body: &[u8]| {
            let mut cmd = redis::cmd(head);
            cmd.arg(body).arg(keys.len());
            for k in keys {
                cmd.arg(*k);
            }
            for a in args {
                cmd.arg(*a);
            }
            cmd
        };
        let by_sha = build("EVALSHA", lua.sha.as_bytes());
        let result = match self.handle(what)? {
            Inner::Single(mut c) => by_sha.query_async::<Value>(&mut c).await,
            Inner::Cluster(mut c) => by_sha.query_async::<Value>(&mut c).await,
        };
        match result {
            Err(e) if e.kind() == RedisKind::Server(ServerErrorKind::NoScript) => {
                let full = build("EVAL", lua.body.as_bytes());
                self.query(&full, op, what).await
            }
            other => other.map_err(|e| map_error(e, op, what)),
        }
    }

    /// Issues `WAIT`/`WAITAOF` when configured.
    ///
    /// # Errors
    /// `OutcomeUnknown`, whatever went wrong: the write was applied on the
    /// primary, but its durability is not confirmed (the wait timed out
    /// short of its target, or failed).
    pub(crate) async fn wait_durable(&self, what: &str) -> Result<()> {
        let timeout = u64::try_from(self.wait_timeout.as_millis()).unwrap_or(u64::MAX);
        let (cmd, want) = match self.wait {
            WaitMode::None => return Ok(()),
            WaitMode::Aof => {
                let mut c = redis::cmd("WAITAOF");
                c.arg(1).arg(0).arg(timeout);
                (c, 1)
            }
            WaitMode::Replicas(n) => {
                let mut c = redis::cmd("WAIT");
                c.arg(n).arg(timeout);
                (c, i64::from(n))
            }
        };
        let reply = self.query(&cmd, Op::Write, what).await.map_err(|e| {
            Error::new(
                ErrorKind::OutcomeUnknown,
                format!("{what}: applied on the primary, but the durability wait failed"),
            )
            .with_source(e)
        })?;
        let got = match &reply {
            Value::Int(n) => *n,
            Value::Array(items) => match items.first() {
                Some(Value::Int(n)) => *n,
                _ => -1,
            },
            _ => -1,
        };
        if got < want {
            return Err(Error::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "{what}: applied on the primary, but the durability wait confirmed {got} of {want} within {timeout} ms"
                ),
            ));
        }
        Ok(())
    }
}

/// Maps a redis-rs error. Only errors that prove nothing ran are
/// `Unavailable` for writes; a lost or timed-out reply is `OutcomeUnknown`.
pub(crate) fn map_error(e: RedisError, op: Op, what: &str) -> Error {
    let code = e.code().unwrap_or("");
    let kind = match e.kind() {
        RedisKind::Server(
            ServerErrorKind::BusyLoading
            | ServerErrorKind::TryAgain
            | ServerErrorKind::ClusterDown
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::Moved
            | ServerErrorKind::Ask,
        ) => ErrorKind::Unavailable,
        RedisKind::Server(ServerErrorKind::CrossSlot) => ErrorKind::Internal,
        RedisKind::AuthenticationFailed | RedisKind::InvalidClientConfig => ErrorKind::Unavailable,
        RedisKind::ClusterConnectionNotFound => ErrorKind::Unavailable,
        _ if code == "OOM" => ErrorKind::StorageFull,
        // A key of the wrong type was written behind the SDK's back.
        _ if code == "WRONGTYPE" => ErrorKind::Corrupted,
        // MISCONF: writes are refused while the server cannot persist
        // (a failed background save); nothing ran.
        _ if code == "BUSY" || code == "NOREPLICAS" || code == "MISCONF" => ErrorKind::Unavailable,
        _ if e.is_connection_refusal() => ErrorKind::Unavailable,
        RedisKind::Io | RedisKind::Parse => match op {
            Op::Read => ErrorKind::Unavailable,
            Op::Write => ErrorKind::OutcomeUnknown,
        },
        _ => ErrorKind::Internal,
    };
    let rule = match kind {
        ErrorKind::OutcomeUnknown => {
            "the request was sent but its reply was lost or timed out; it may or may not have been applied"
        }
        ErrorKind::Unavailable => "the server is unreachable or refused the request; nothing was applied",
        ErrorKind::StorageFull => "the server is out of memory (maxmemory); nothing was applied",
        ErrorKind::Corrupted => "a stored key has the wrong type (changed behind the SDK's back)",
        _ => "unexpected Redis error",
    };
    Error::new(kind, format!("{what}: {rule}")).with_source(e)
}

/// Reads a reply as bytes (`None` for nil).
pub(crate) fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

/// Reads a reply as an integer (integers and numeric strings).
pub(crate) fn int(v: &Value) -> Option<i64> {
    match v {
        Value::Int(n) => Some(*n),
        other => bytes(other).and_then(|b| std::str::from_utf8(b).ok()?.parse().ok()),
    }
}
