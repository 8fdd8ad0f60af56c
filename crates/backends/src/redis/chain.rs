//! Appending to a hash-chained list (run events, session logs).
//!
//! Lua has no SHA-256, so the client builds the entry (core's
//! `RunEvent::build` / `LogEntry::build`) against the head it believes is
//! current, and the `APPEND` script checks that head (next seq and previous
//! hash) before writing. On a mismatch the script returns the real head and
//! the client rebuilds: an optimistic compare-and-append. Heads are cached
//! per chain, so an uncontended append is one round trip.

use std::str::FromStr;

use stowage_core::{Digest, Error, ErrorKind, Result};

use super::conn::{bytes, int, status, unexpected, Op};
use super::Shared;

/// Attempts before an append under extreme contention gives up (nothing
/// applied, so `Unavailable`).
const MAX_ATTEMPTS: usize = 100_000;

/// The three keys of a chain.
pub(crate) struct ChainKeys {
    pub(crate) meta: Vec<u8>,
    pub(crate) list: Vec<u8>,
    pub(crate) idem: Vec<u8>,
}

/// What an append did.
pub(crate) enum Appended<T> {
    /// Stored as built.
    New(T),
    /// The idempotency key was already used: the stored original record.
    Dup(Vec<u8>),
    /// The owner does not exist.
    NotFound,
    /// The owner takes no appends: a run that is not `Running`, a session
    /// in a final state (the caller asks core for the message).
    NotRunning,
}

/// A stored chain head: lowercase hex, or empty for an empty chain.
pub(crate) fn parse_head(hex: &str, what: &str) -> Result<Option<Digest>> {
    if hex.is_empty() {
        return Ok(None);
    }
    Digest::from_str(hex)
        .map(Some)
        .map_err(|_| Error::corrupted(format!("{what}: stored chain head {hex:?} is not a digest")))
}

/// Lowercase hex of a digest, the same text as its `Display` (which goes
/// through a per-character iterator; this runs once per append).
fn hex_of(d: &Digest) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(Digest::LEN * 2);
    for b in d.as_bytes() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

/// Builds an entry with `build(next_seq, prev_hash) -> (value, record, hash)`
/// and appends it atomically. `mode` is `"run"` (status must be Running) or
/// `"session"`.
///
/// # Errors
/// Once any attempt ended with its reply lost (`OutcomeUnknown`: it may
/// have been applied), the call can no longer promise that nothing was
/// applied: a later attempt's `Unavailable` (say, "connection refused"
/// while the server restarts) is reported as `OutcomeUnknown`, naming
/// both. A later attempt that answers definitively (stored, the original
/// of a duplicate key, not found…) decides the outcome as usual.
pub(crate) async fn append<T>(
    sh: &Shared,
    k: &ChainKeys,
    mode: &str,
    idem: Option<&str>,
    what: &str,
    build: impl FnMut(u64, Option<Digest>) -> Result<(T, Vec<u8>, Digest)>,
) -> Result<Appended<T>> {
    let mut unknown = false;
    attempts(sh, k, mode, idem, what, build, &mut unknown)
        .await
        .map_err(|e| after_unknown(e, unknown, what))
}

/// The outcome of a call one of whose attempts may have been applied.
fn after_unknown(e: Error, unknown: bool, what: &str) -> Error {
    if !unknown || e.kind() != ErrorKind::Unavailable {
        return e;
    }
    Error::new(
        ErrorKind::OutcomeUnknown,
        format!(
            "{what}: an earlier attempt's reply was lost, so it may have been applied; \
             the retry then found the server unavailable"
        ),
    )
    .with_source(e)
}

/// The attempts of [`append`]; sets `unknown` when one ends without a reply.
async fn attempts<T>(
    sh: &Shared,
    k: &ChainKeys,
    mode: &str,
    idem: Option<&str>,
    what: &str,
    mut build: impl FnMut(u64, Option<Digest>) -> Result<(T, Vec<u8>, Digest)>,
    unknown: &mut bool,
) -> Result<Appended<T>> {
    let idem_b = idem.unwrap_or("");
    let (mut head, mut confirmed) = match sh.cached_head(&k.meta) {
        Some(h) => (h, false),
        None => ((0, String::new()), false),
    };
    let mut retries_left = if idem.is_some() {
        sh.idempotent_retries
    } else {
        0
    };
    for _ in 0..MAX_ATTEMPTS {
        let prev = parse_head(&head.1, what)?;
        let (value, record, hash) = match build(head.0, prev) {
            Ok(b) => b,
            Err(e) if e.kind() == ErrorKind::Conflict => {
                match read_head(sh, k, idem_b, what).await? {
                    HeadRead::NotFound => return Ok(Appended::NotFound),
                    HeadRead::Dup(rec) => return Ok(Appended::Dup(rec)),
                    HeadRead::Head(h) if !confirmed || h != head => {
                        head = h;
                        confirmed = true;
                        continue;
                    }
                    HeadRead::Head(_) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        let n = head.0.to_string();
        let after = (head.0 + 1).to_string();
        let new_head = hex_of(&hash);
        let sent = if idem.is_some() {
            let keys: [&[u8]; 3] = [&k.meta, &k.list, &k.idem];
            let args: [&[u8]; 7] = [
                mode.as_bytes(),
                n.as_bytes(),
                head.1.as_bytes(),
                new_head.as_bytes(),
                &record,
                idem_b.as_bytes(),
                after.as_bytes(),
            ];
            let keys = sh.counted(&keys);
            sh.conn.mutate(&sh.scripts.append, &keys, &args, what).await
        } else {
            // No idempotency key: the slimmer per-mode script (the idem
            // hash is neither read nor written, so it is not declared).
            let lua = if mode == "run" {
                &sh.scripts.append_run
            } else {
                &sh.scripts.append_session
            };
            let keys: [&[u8]; 2] = [&k.meta, &k.list];
            let args: [&[u8]; 5] = [
                n.as_bytes(),
                head.1.as_bytes(),
                new_head.as_bytes(),
                &record,
                after.as_bytes(),
            ];
            let keys = sh.counted(&keys);
            sh.conn.mutate(lua, &keys, &args, what).await
        };
        let reply = match sent {
            Ok(r) => r,
            Err(e) => {
                sh.remember_head(&k.meta, None);
                *unknown |= e.kind() == ErrorKind::OutcomeUnknown;
                let transient =
                    matches!(e.kind(), ErrorKind::OutcomeUnknown | ErrorKind::Unavailable);
                if transient && retries_left > 0 {
                    retries_left -= 1;
                    continue;
                }
                return Err(e);
            }
        };
        let (word, rest) = status(reply, what)?;
        match word.as_str() {
            "ok" => {
                sh.remember_head(&k.meta, Some((head.0 + 1, new_head)));
                return Ok(Appended::New(value));
            }
            "dup" => return dup(rest.first(), what).map(Appended::Dup),
            "moved" => {
                let n = rest
                    .first()
                    .and_then(int)
                    .and_then(|n| u64::try_from(n).ok());
                let h = rest
                    .get(1)
                    .and_then(bytes)
                    .map(|b| String::from_utf8_lossy(b).into_owned());
                match (n, h) {
                    (Some(n), Some(h)) => {
                        head = (n, h);
                        confirmed = true;
                    }
                    _ => return Err(unexpected(what, "moved")),
                }
            }
            "notfound" => {
                sh.remember_head(&k.meta, None);
                return Ok(Appended::NotFound);
            }
            "status" => return Ok(Appended::NotRunning),
            other => return Err(unexpected(what, other)),
        }
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!(
            "{what}: gave up after {MAX_ATTEMPTS} attempts under contention; nothing was applied"
        ),
    ))
}

fn dup(v: Option<&redis::Value>, what: &str) -> Result<Vec<u8>> {
    v.and_then(bytes).map(<[u8]>::to_vec).ok_or_else(|| {
        Error::corrupted(format!(
            "{what}: the idempotency key points at an entry that is missing"
        ))
    })
}

enum HeadRead {
    NotFound,
    Dup(Vec<u8>),
    Head((u64, String)),
}

async fn read_head(sh: &Shared, k: &ChainKeys, idem: &str, what: &str) -> Result<HeadRead> {
    let keys: [&[u8]; 3] = [&k.meta, &k.list, &k.idem];
    let reply = sh
        .conn
        .eval(&sh.scripts.head, &keys, &[idem.as_bytes()], Op::Read, what)
        .await?;
    let (word, rest) = status(reply, what)?;
    match word.as_str() {
        "notfound" => Ok(HeadRead::NotFound),
        "ok" => {
            if let Some(rec) = rest.get(2).and_then(bytes) {
                return Ok(HeadRead::Dup(rec.to_vec()));
            }
            let n = rest
                .first()
                .and_then(int)
                .and_then(|n| u64::try_from(n).ok());
            let h = rest
                .get(1)
                .and_then(bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned());
            match (n, h) {
                (Some(n), Some(h)) => Ok(HeadRead::Head((n, h))),
                _ => Err(unexpected(what, "head")),
            }
        }
        other => Err(unexpected(what, other)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_of_matches_display() {
        for seed in [&b""[..], b"a", b"stowage"] {
            let d = Digest::of(seed);
            assert_eq!(hex_of(&d), d.to_string());
        }
    }
}
