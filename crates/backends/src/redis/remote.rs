//! The `Reader` a job reads the store through: every read is answered
//! from the server (one round trip) or, in a write job, from the store's
//! [`Guesses`], and is recorded as a [`Guard`] — what the job's outcome
//! depends on. The engine applies a write job's writes only if every
//! guard still holds (one script, atomic on the server), and checks a
//! read job's guards once more after it ran several round trips, so a
//! job always acts on one consistent point in time.

use std::borrow::Cow;
use std::cell::RefCell;
use std::future::Future;
use std::panic::{catch_unwind, AssertUnwindSafe};

use redis::Value;
use stowage_core::engine::{measure_by_scan, Direction, Entry, RangeSize, Reader, Table};
use stowage_core::{Error, ErrorKind, Result};
use tokio::runtime::Handle;

use super::conn::{bytes, int, Lua, Op};
use super::engine::Inner;
use super::lua::Scripts;

/// Entries one scan script returns at most.
const SCAN_PAGE: usize = 1000;
/// Members one measure script counts at most.
const MEASURE_PAGE: usize = 10_000;
/// Values up to this size are guarded by their bytes, larger by SHA-1.
const EXACT_GUARD: usize = 128;

/// A table's key as a member of the store's sorted set: the table's id,
/// then the key, so a key range of one table is one member range.
pub(super) fn member(table: Table, key: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(1 + key.len());
    m.push(table.id());
    m.extend_from_slice(key);
    m
}

/// The members of `start <= key < end` of `table` (`end = None`: to the
/// table's end) as `[from, to)`.
pub(super) fn member_range(table: Table, start: &[u8], end: Option<&[u8]>) -> (Vec<u8>, Vec<u8>) {
    let to = match end {
        Some(end) => member(table, end),
        // Table ids are below 255 (`Table::ALL` has 16).
        None => vec![table.id().saturating_add(1)],
    };
    (member(table, start), to)
}

/// `[from, to)` as `ZRANGEBYLEX` bounds.
pub(super) fn lex_bounds(from: &[u8], to: &[u8]) -> (Vec<u8>, Vec<u8>) {
    (lex_bound(b'[', from), lex_bound(b'(', to))
}

/// One `ZRANGEBYLEX` bound: `[` (inclusive) or `(` (exclusive), then the
/// member.
fn lex_bound(mark: u8, member: &[u8]) -> Vec<u8> {
    let mut b = Vec::with_capacity(1 + member.len());
    b.push(mark);
    b.extend_from_slice(member);
    b
}

/// The digest of a scan page, as the apply script computes it.
pub(super) fn page_digest<'a>(entries: impl IntoIterator<Item = (&'a [u8], &'a [u8])>) -> String {
    let mut sha = sha1_smol::Sha1::new();
    for (m, v) in entries {
        sha.update(format!("{}:", m.len()).as_bytes());
        sha.update(m);
        sha.update(format!("{}:", v.len()).as_bytes());
        sha.update(v);
    }
    sha.digest().to_string()
}

/// What a job's outcome depends on; each is encoded for the apply
/// script (see `lua.rs`).
#[derive(Debug, Clone)]
pub(super) enum Guard {
    /// The member holds this value (`None`: is absent).
    Value {
        member: Vec<u8>,
        value: Option<GuardValue>,
    },
    /// A scan page (bounds, direction, limit) had this digest.
    Page {
        min: Vec<u8>,
        max: Vec<u8>,
        forward: bool,
        limit: usize,
        digest: String,
    },
    /// A member range had this many members.
    Count {
        min: Vec<u8>,
        max: Vec<u8>,
        count: u64,
    },
}

/// A guarded value: its bytes when small, else its SHA-1.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum GuardValue {
    Exact(Vec<u8>),
    Sha1(String),
}

impl GuardValue {
    fn of(v: &[u8]) -> GuardValue {
        if v.len() <= EXACT_GUARD {
            GuardValue::Exact(v.to_vec())
        } else {
            GuardValue::Sha1(sha1_smol::Sha1::from(v).digest().to_string())
        }
    }
}

impl Guard {
    /// Whether this guard holds `member` at a present value that writing
    /// `new` (`None`: deleting it) changes. Such a guard passes at most
    /// once for that write as long as the member never returns to a value
    /// it held — true of what the stores guard this way: heads carry
    /// counters, records versions or fresh ids. A member guarded as
    /// absent can become absent again (another process deletes it).
    pub(super) fn changed_by(&self, written: &[u8], new: Option<&[u8]>) -> bool {
        match self {
            Guard::Value {
                member,
                value: Some(held),
            } => member[..] == written[..] && new.map(GuardValue::of).as_ref() != Some(held),
            _ => false,
        }
    }

    pub(super) fn value(member: Vec<u8>, value: Option<&[u8]>) -> Guard {
        Guard::Value {
            member,
            value: value.map(GuardValue::of),
        }
    }

    /// The member a value guard is about.
    pub(super) fn member(&self) -> Option<&[u8]> {
        match self {
            Guard::Value { member, .. } => Some(member),
            _ => None,
        }
    }

    /// Appends the guard's opcode and operands (borrowed where it can).
    pub(super) fn encode<'a>(&'a self, out: &mut Vec<Cow<'a, [u8]>>) {
        let b = |bytes: &'a [u8]| Cow::Borrowed(bytes);
        match self {
            Guard::Value {
                member,
                value: None,
            } => out.extend([b(b"a"), b(member)]),
            Guard::Value {
                member,
                value: Some(GuardValue::Exact(v)),
            } => out.extend([b(b"v"), b(member), b(v)]),
            Guard::Value {
                member,
                value: Some(GuardValue::Sha1(sha)),
            } => out.extend([b(b"h"), b(member), b(sha.as_bytes())]),
            Guard::Page {
                min,
                max,
                forward,
                limit,
                digest,
            } => out.extend([
                b(b"s"),
                b(min),
                b(max),
                b(direction(*forward)),
                Cow::Owned(limit.to_string().into_bytes()),
                b(digest.as_bytes()),
            ]),
            Guard::Count { min, max, count } => out.extend([
                b(b"c"),
                b(min),
                b(max),
                Cow::Owned(count.to_string().into_bytes()),
            ]),
        }
    }
}

fn direction(forward: bool) -> &'static [u8] {
    if forward {
        b"f"
    } else {
        b"r"
    }
}

/// What one run of a job read.
#[derive(Default)]
pub(super) struct ReadLog {
    pub(super) guards: Vec<Guard>,
    /// Round trips made.
    pub(super) fetches: usize,
    /// Some answer came from the guesses.
    pub(super) guessed: bool,
    /// Some read found no guess and could not fetch (an inline run):
    /// the run's outcome means nothing.
    pub(super) missed: bool,
}

/// A job's reader. See the module docs.
pub(super) struct Remote<'a> {
    inner: &'a Inner,
    /// Where to block on fetches; `None`: answer from guesses only.
    fetch: Option<&'a Handle>,
    /// Whether to answer from (and feed) the guesses: write jobs only.
    guess: bool,
    log: RefCell<ReadLog>,
}

impl<'a> Remote<'a> {
    pub(super) fn new(inner: &'a Inner, fetch: Option<&'a Handle>, guess: bool) -> Remote<'a> {
        Remote {
            inner,
            fetch,
            guess,
            log: RefCell::new(ReadLog::default()),
        }
    }

    pub(super) fn into_log(self) -> ReadLog {
        self.log.into_inner()
    }

    /// Runs one call on the server from this (blocking) thread.
    fn block<T>(&self, call: impl Future<Output = Result<T>>, what: &str) -> Result<T> {
        let Some(handle) = self.fetch else {
            self.log.borrow_mut().missed = true;
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!("{what}: needs a round trip (the job is run again off the runtime)"),
            ));
        };
        self.log.borrow_mut().fetches += 1;
        // A runtime shutting down under the call panics its timers.
        catch_unwind(AssertUnwindSafe(|| handle.block_on(call))).unwrap_or_else(|_| {
            Err(Error::new(
                ErrorKind::Unavailable,
                format!("{what}: the runtime shut down during the call"),
            ))
        })
    }

    fn script(&self, lua: &Lua, args: &[Vec<u8>], what: &str) -> Result<Value> {
        let args: Vec<&[u8]> = args.iter().map(Vec::as_slice).collect();
        let keys = [&self.inner.zset[..], &self.inner.hash[..]];
        self.block(
            self.inner.conn.eval(lua, &keys, &args, Op::Read, what),
            what,
        )
    }

    /// One page of a scan, guarded.
    fn scan_page(
        &self,
        min: Vec<u8>,
        max: Vec<u8>,
        forward: bool,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let args = [
            min.clone(),
            max.clone(),
            direction(forward).to_vec(),
            limit.to_string().into_bytes(),
        ];
        let reply = self.script(&Scripts::get().scan, &args, "redis scan")?;
        let Value::Array(items) = reply else {
            return Err(corrupt("a scan reply is not an array"));
        };
        let mut page = Vec::with_capacity(items.len() / 2);
        for pair in items.chunks(2) {
            let (Some(m), Some(v)) = (pair.first().and_then(bytes), pair.get(1).and_then(bytes))
            else {
                return Err(corrupt("a member of the key set has no value"));
            };
            page.push((m.to_vec(), v.to_vec()));
        }
        let digest = page_digest(page.iter().map(|(m, v)| (&m[..], &v[..])));
        // A full page depends on the members up to its last one only:
        // the guard ends there, so writes beyond it never fail the job.
        let (mut min, mut max) = (min, max);
        if let Some((last, _)) = page.last().filter(|_| page.len() == limit) {
            let through = lex_bound(b'[', last);
            if forward {
                max = through;
            } else {
                min = through;
            }
        }
        self.log.borrow_mut().guards.push(Guard::Page {
            min,
            max,
            forward,
            limit,
            digest,
        });
        Ok(page)
    }
}

fn corrupt(what: &str) -> Error {
    Error::new(
        ErrorKind::Corrupted,
        format!("redis store: {what} (changed behind the SDK's back)"),
    )
}

impl Reader for Remote<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let m = member(table, key);
        if self.guess {
            // An inline run guesses that a key it knows nothing of is
            // absent (an idempotency key, a new entity): the guard checks
            // it, and a wrong guess sends the job to a fetching run.
            let guess = self.inner.guesses.get(&m).or_else(|| {
                let absent: Option<Vec<u8>> = None;
                self.fetch.is_none().then_some(absent)
            });
            if let Some(value) = guess {
                let mut log = self.log.borrow_mut();
                log.guessed = true;
                log.guards.push(Guard::value(m, value.as_deref()));
                return Ok(value);
            }
        }
        let mut cmd = redis::cmd("HGET");
        cmd.arg(&self.inner.hash).arg(&m);
        let value = match self.block(
            self.inner.conn.query(&cmd, Op::Read, "redis get"),
            "redis get",
        )? {
            Value::Nil => None,
            other => Some(
                bytes(&other)
                    .ok_or_else(|| corrupt("a value is not a string"))?
                    .to_vec(),
            ),
        };
        if self.guess {
            self.inner.guesses.saw(&m, value.as_deref());
        }
        self.log
            .borrow_mut()
            .guards
            .push(Guard::value(m, value.as_deref()));
        Ok(value)
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        let (from, to) = member_range(table, start, end);
        let mut out = Vec::new();
        if from >= to {
            return Ok(out);
        }
        let (mut min, mut max) = lex_bounds(&from, &to);
        let forward = direction == Direction::Forward;
        while out.len() < limit {
            let want = (limit - out.len()).min(SCAN_PAGE);
            let page = self.scan_page(min.clone(), max.clone(), forward, want)?;
            let full = page.len() == want;
            if let Some((last, _)) = page.last() {
                // The next page starts after (or, reversed, before) it.
                let after = lex_bound(b'(', last);
                if forward {
                    min = after;
                } else {
                    max = after;
                }
            }
            for (m, v) in page {
                out.push((m[1..].to_vec(), v));
            }
            if !full {
                break;
            }
        }
        Ok(out)
    }

    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<RangeSize> {
        let (from, to) = member_range(table, start, end);
        if from >= to {
            return Ok(RangeSize::default());
        }
        if self.fetch.is_none() {
            // Inline runs have nothing to measure with.
            return measure_by_scan(self, table, start, end);
        }
        let (min, max) = lex_bounds(&from, &to);
        let mut size = RangeSize::default();
        let mut cursor = min.clone();
        loop {
            let args = vec![
                cursor.clone(),
                max.clone(),
                MEASURE_PAGE.to_string().into_bytes(),
            ];
            let reply = self.script(&Scripts::get().measure, &args, "redis measure")?;
            let Value::Array(items) = reply else {
                return Err(corrupt("a measure reply is not an array"));
            };
            let (Some(n), Some(b), Some(last)) = (
                items.first().and_then(int),
                items.get(1).and_then(int),
                items.get(2).and_then(bytes),
            ) else {
                return Err(corrupt("a measure reply is malformed"));
            };
            size.entries += u64::try_from(n).unwrap_or(0);
            size.bytes += u64::try_from(b).unwrap_or(0);
            if usize::try_from(n).unwrap_or(0) < MEASURE_PAGE || last.is_empty() {
                break;
            }
            cursor = lex_bound(b'(', last);
        }
        self.log.borrow_mut().guards.push(Guard::Count {
            min,
            max,
            count: size.entries,
        });
        Ok(size)
    }
}
