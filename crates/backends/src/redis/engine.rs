//! The Redis engine: core's stores over one sorted set of members and one
//! hash of values per store, with optimistic jobs. A job runs on the
//! client — against the store's [`Guesses`] first, so an append whose
//! run head is known needs no read — and its writes go to the server in
//! one script that first checks every guard (what the job read); a stale
//! guard sends the job round again with fresh reads. So a mutation is one
//! round trip when the guesses are right, every rule of core holds
//! across processes, and no lock is ever held on the server.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use redis::Value;
use stowage_core::engine::{Durable, Engine, ReadJob, Scope, Staging, Write, WriteJob};
use stowage_core::{Capabilities, Error, ErrorKind, Result};
use tokio::runtime::Handle;

use super::conn::{int, Conn, Op};
use super::guess::Guesses;
use super::lua::Scripts;
use super::remote::{lex_bounds, member, member_range, Guard, ReadLog, Remote};
use super::turnstile::Turnstiles;

/// Failed consistency checks after which a read job takes the readers'
/// hold, and how long the hold lasts at most.
const CHECKS_BEFORE_HOLD: u32 = 3;
const HOLD: Duration = Duration::from_secs(2);

/// What the engine's handles share.
pub(super) struct Inner {
    pub(super) conn: Conn,
    /// The sorted set of members (`{prefix}:k`).
    pub(super) zset: Vec<u8>,
    /// The hash of values (`{prefix}:v`).
    pub(super) hash: Vec<u8>,
    /// The readers' hold (`{prefix}:hold`, see `lua.rs`).
    hold: Vec<u8>,
    pub(super) guesses: Guesses,
    turnstiles: Turnstiles,
    /// How long a job may keep meeting changed data before giving up.
    patience: Duration,
    /// Resends of an apply whose reply was lost (`idempotent_retries`).
    retries: u32,
    capabilities: Capabilities,
}

/// One run of a write job: its outcome, what it read and what it staged.
struct Attempt {
    outcome: Result<()>,
    read: ReadLog,
    writes: Vec<Write>,
}

/// A Redis store as an [`Engine`]; see the module docs.
pub struct RedisEngine(std::sync::Arc<Inner>);

impl RedisEngine {
    /// An engine over `conn`, keeping the store's data under `prefix`.
    pub(super) fn new(
        conn: Conn,
        prefix: &str,
        patience: Duration,
        retries: u32,
        capabilities: Capabilities,
    ) -> RedisEngine {
        // One hash tag: both keys live in one cluster slot.
        let key = |suffix: &str| format!("{{{prefix}}}:{suffix}").into_bytes();
        RedisEngine(std::sync::Arc::new(Inner {
            conn,
            zset: key("k"),
            hash: key("v"),
            hold: key("hold"),
            guesses: Guesses::default(),
            turnstiles: Turnstiles::default(),
            patience,
            retries,
            capabilities,
        }))
    }
}

impl Inner {
    /// Runs `job` on this thread from guesses alone; `None` when it needed
    /// a read the guesses do not hold.
    fn attempt_inline(&self, job: &mut WriteJob) -> Option<Attempt> {
        let remote = Remote::new(self, None, true);
        let mut staged = Staging::new(&remote);
        let outcome = job(&mut staged);
        let writes = staged.into_writes();
        let read = remote.into_log();
        (!read.missed).then_some(Attempt {
            outcome,
            read,
            writes,
        })
    }

    /// Checks `guards` against the server, writing `writes` if all hold:
    /// `Ok(true)` when applied, `Ok(false)` when a guard failed or a
    /// reader holds the store (nothing written).
    async fn apply(&self, guards: &[Guard], writes: &[Write]) -> Result<bool> {
        let mut args = vec![Cow::Owned(guards.len().to_string().into_bytes())];
        for guard in guards {
            guard.encode(&mut args);
        }
        for write in writes {
            encode_write(write, &mut args)?;
        }
        let args: Vec<&[u8]> = args.iter().map(|a| &**a).collect();
        let keys = [&self.zset[..], &self.hash[..], &self.hold[..]];
        let op = if writes.is_empty() {
            Op::Read
        } else {
            Op::Write
        };
        let reply = self
            .conn
            .eval(&Scripts::get().apply, &keys, &args, op, "redis write")
            .await?;
        match &reply {
            Value::Array(items) => match items.first().and_then(int) {
                Some(1) => Ok(true),
                Some(0 | 2) => Ok(false),
                _ => Err(unexpected(&reply)),
            },
            _ => Err(unexpected(&reply)),
        }
    }

    /// After `lost`, the error of an apply whose reply was lost: sends the
    /// same apply again, up to `retries` times, when that is exactly-once
    /// — the apply changes a member it guards at a present value
    /// ([`Guard::changed_by`]), so of the original and its copies at most
    /// one can pass the guards. `Ok`: applied (now, or by the original:
    /// its writes are all there); `Err`: still unknown. A copy refused by
    /// its guards while the writes are not all there is unknown too: the
    /// original may have landed and been overwritten since by another
    /// process, or never landed while another process changed what it
    /// read — running the job again could apply it twice.
    ///
    /// An apply that guards what it writes only as absent (a create) is
    /// not resent: after it landed, another process may have deleted what
    /// it wrote, and a copy would pass its guards and create it again. It
    /// is answered `Ok` only when its writes are all there.
    async fn resend(&self, lost: Error, guards: &[Guard], writes: &[Write]) -> Result<()> {
        let (mut guarded, mut exactly_once) = (false, false);
        for w in writes {
            let (written, new) = match w {
                Write::Put { table, key, value } => (member(*table, key), Some(&value[..])),
                Write::Delete { table, key } => (member(*table, key), None),
                _ => continue,
            };
            guarded |= guards.iter().any(|g| g.member() == Some(&written[..]));
            exactly_once |= guards.iter().any(|g| g.changed_by(&written, new));
        }
        if lost.kind() != ErrorKind::OutcomeUnknown || self.retries == 0 || !guarded {
            return Err(lost);
        }
        if !exactly_once {
            return match self.apply(&landed(writes), &[]).await {
                Ok(true) => Ok(()),
                _ => Err(lost),
            };
        }
        let mut last = lost;
        for attempt in 1..=self.retries {
            Inner::back_off(attempt + 4).await;
            match self.apply(guards, writes).await {
                Ok(true) => return Ok(()),
                Ok(false) => {
                    return match self.apply(&landed(writes), &[]).await {
                        Ok(true) => Ok(()),
                        // The first attempt may have been applied.
                        _ => Err(last),
                    };
                }
                Err(e) if e.kind() == ErrorKind::OutcomeUnknown => last = e,
                // Refused: nothing new was applied, but the first attempt
                // may have been.
                Err(_) => {}
            }
        }
        Err(last)
    }

    /// Takes the readers' hold (waiting while another reader has it):
    /// the token to release it with.
    async fn take_hold(&self, started: Instant) -> Result<String> {
        let token = format!("{:016x}", rand::random::<u64>());
        let ttl = HOLD.as_millis().to_string();
        let mut cmd = redis::cmd("SET");
        cmd.arg(&self.hold)
            .arg(&token)
            .arg("NX")
            .arg("PX")
            .arg(&ttl);
        let mut waits = 0;
        loop {
            let reply = self.conn.query(&cmd, Op::Read, "redis read").await?;
            if reply != Value::Nil {
                return Ok(token);
            }
            if started.elapsed() > self.patience {
                return Err(self.gave_up(waits));
            }
            waits += 1;
            Inner::back_off(waits).await;
        }
    }

    async fn release_hold(&self, token: &str) -> Result<()> {
        self.conn
            .eval(
                &Scripts::get().release,
                &[&self.hold[..]],
                &[token.as_bytes()],
                Op::Read,
                "redis read",
            )
            .await
            .map(drop)
    }

    /// Waits a little before running a job again (longer each time).
    async fn back_off(attempts: u32) {
        let jitter = rand::random::<u64>() % 500;
        let micros = (50u64 << attempts.min(10)).min(20_000) + jitter;
        tokio::time::sleep(Duration::from_micros(micros)).await;
    }

    fn gave_up(&self, attempts: u32) -> Error {
        Error::new(
            ErrorKind::Unavailable,
            format!(
                "redis store: the data a job read kept changing under it ({attempts} attempts in {:?}); nothing was applied",
                self.patience
            ),
        )
    }
}

/// Guards that hold exactly when every put of `writes` holds its value
/// and every delete's member is absent: an apply that wrote them landed.
fn landed(writes: &[Write]) -> Vec<Guard> {
    writes
        .iter()
        .filter_map(|w| match w {
            Write::Put { table, key, value } => {
                Some(Guard::value(member(*table, key), Some(value)))
            }
            Write::Delete { table, key } => Some(Guard::value(member(*table, key), None)),
            _ => None,
        })
        .collect()
}

fn encode_write<'a>(write: &'a Write, out: &mut Vec<Cow<'a, [u8]>>) -> Result<()> {
    match write {
        Write::Put { table, key, value } => out.extend([
            Cow::Borrowed(&b"p"[..]),
            Cow::Owned(member(*table, key)),
            Cow::Borrowed(&value[..]),
        ]),
        Write::Delete { table, key } => {
            out.extend([Cow::Borrowed(&b"d"[..]), Cow::Owned(member(*table, key))]);
        }
        Write::DeleteRange { table, start, end } => {
            let (from, to) = member_range(*table, start, Some(end));
            if from < to {
                let (min, max) = lex_bounds(&from, &to);
                out.extend([Cow::Borrowed(&b"r"[..]), Cow::Owned(min), Cow::Owned(max)]);
            }
        }
        other => {
            return Err(Error::internal(format!(
                "redis engine: a write it does not know: {other:?}"
            )))
        }
    }
    Ok(())
}

fn unexpected(reply: &Value) -> Error {
    Error::internal(format!("redis write: unexpected script reply {reply:?}"))
}

/// Runs `run` on the blocking pool, handing back what it owns.
async fn off_runtime<T: Send + 'static>(run: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(run).await.map_err(|e| {
        Error::internal(format!(
            "redis engine: a job panicked or was cancelled: {e}"
        ))
    })
}

#[async_trait]
impl Engine for RedisEngine {
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities.clone()
    }

    fn reruns_jobs(&self) -> bool {
        true
    }

    async fn read(&self, job: ReadJob) -> Result<()> {
        let inner = &self.0;
        inner.conn.check_open("redis read")?;
        let started = Instant::now();
        let mut job = job;
        let mut attempts = 0;
        let mut hold = None;
        let result = loop {
            attempts += 1;
            if attempts > CHECKS_BEFORE_HOLD && hold.is_none() {
                match inner.take_hold(started).await {
                    Ok(token) => hold = Some(token),
                    Err(e) => break Err(e),
                }
            }
            let shared = std::sync::Arc::clone(&self.0);
            let handle = Handle::current();
            let ran = off_runtime(move || {
                let remote = Remote::new(&shared, Some(&handle), false);
                let outcome = job(&remote);
                (job, outcome, remote.into_log())
            })
            .await;
            let (back, outcome, read) = match ran {
                Ok(ran) => ran,
                Err(e) => break Err(e),
            };
            job = back;
            // One round trip is one point in time already.
            if read.fetches <= 1 {
                break outcome;
            }
            match inner.apply(&read.guards, &[]).await {
                Ok(true) => break outcome,
                Ok(false) => {}
                Err(e) => break outcome.and(Err(e)),
            }
            if started.elapsed() > inner.patience {
                break Err(inner.gave_up(attempts));
            }
            Inner::back_off(attempts).await;
        };
        if let Some(token) = hold {
            // Best effort: an unreleased hold expires on its own.
            let _ = inner.release_hold(&token).await;
        }
        result
    }

    async fn write(&self, scope: Scope, job: WriteJob) -> Result<Durable> {
        let inner = &self.0;
        inner.conn.check_open("redis write")?;
        let _turn = inner.turnstiles.enter(&scope).await;
        let started = Instant::now();
        let mut job = job;
        let mut attempts = 0;
        let mut refused = 0;
        loop {
            attempts += 1;
            // After a failed check, the next run reads afresh.
            let inline = if attempts == 1 {
                inner.attempt_inline(&mut job)
            } else {
                None
            };
            let attempt = match inline {
                Some(attempt) => attempt,
                None => {
                    let shared = std::sync::Arc::clone(&self.0);
                    let handle = Handle::current();
                    let (back, attempt) = off_runtime(move || {
                        let remote = Remote::new(&shared, Some(&handle), true);
                        let mut staged = Staging::new(&remote);
                        let outcome = job(&mut staged);
                        let writes = staged.into_writes();
                        let read = remote.into_log();
                        (
                            job,
                            Attempt {
                                outcome,
                                read,
                                writes,
                            },
                        )
                    })
                    .await?;
                    job = back;
                    attempt
                }
            };
            let Attempt {
                outcome,
                read,
                writes,
            } = attempt;
            let checked = match outcome {
                // A refusal founded on guesses is checked before it is
                // believed; one founded on one fresh read stands.
                Err(e) => {
                    if !read.guessed && read.fetches <= 1 {
                        return Err(e);
                    }
                    match inner.apply(&read.guards, &[]).await {
                        Ok(true) => return Err(e),
                        Ok(false) => false,
                        // The refusal may rest on a wrong guess: it cannot
                        // be answered, but the check can be tried again.
                        Err(check)
                            if check.kind() == ErrorKind::Unavailable
                                && refused < inner.retries =>
                        {
                            refused += 1;
                            false
                        }
                        Err(check) => return Err(check),
                    }
                }
                Ok(()) if writes.is_empty() && !read.guessed && read.fetches <= 1 => true,
                Ok(()) => match inner.apply(&read.guards, &writes).await {
                    Ok(applied) => applied,
                    Err(e) => {
                        // Whatever happened, what this process knows of
                        // the touched members is in doubt.
                        inner.guesses.clear();
                        inner.resend(e, &read.guards, &writes).await?;
                        true
                    }
                },
            };
            if checked {
                let read_members: std::collections::HashSet<&[u8]> =
                    read.guards.iter().filter_map(Guard::member).collect();
                inner.guesses.wrote(&writes, |m| read_members.contains(m));
                // Also when the job wrote nothing: what it found (the
                // original of a retried idempotent append, say) may have
                // been written on this connection and not be durable yet.
                inner.conn.wait_durable("redis write").await?;
                return Ok(Durable::ready());
            }
            inner
                .guesses
                .forget(read.guards.iter().filter_map(Guard::member));
            if started.elapsed() > inner.patience {
                return Err(inner.gave_up(attempts));
            }
            if attempts > 1 {
                Inner::back_off(attempts).await;
            }
        }
    }

    async fn close(&self) -> Result<()> {
        self.0.conn.close();
        self.0.guesses.clear();
        Ok(())
    }
}
