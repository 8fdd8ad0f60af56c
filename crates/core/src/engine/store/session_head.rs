//! A session's head: whether its log is closed, the log's length and its
//! chain head — the small, fixed-layout record every `append_log` reads
//! and rewrites, kept in `Table::SessionHeads` beside the session record.
//! The record (whose `data` may be up to 1 MiB) is written only by the
//! calls that change it (create, save, state changes, forks, expiry), so
//! an append never rewrites or decodes the session's data.
//!
//! Layout: `[0xA2 version][closed u8][length u64 BE][0 | 1 ++ hash(32)]`.
//!
//! Invariant: every write of a session record writes its head in the same
//! job ([`super::sessions::put`]), so `closed` always says what the
//! record's state does.

use super::get_record;
use super::run_head::{push_hash, read_hash};
use crate::engine::keys;
use crate::engine::{Reader, Table, Txn};
use crate::session::len_after;
use crate::validate::preview;
use crate::{Digest, Error, LogEntry, Result, Session};

/// Version byte of the layout.
const VERSION: u8 = 0xA2;

/// What an append needs of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SessionHead {
    /// The session's state is final: its log can no longer change.
    pub(super) closed: bool,
    /// How many entries the log holds (the next entry's seq).
    pub(super) len: u64,
    /// The hash of the log's last entry.
    pub(crate) hash: Option<Digest>,
}

impl SessionHead {
    /// The head a session record states.
    pub(super) fn of(session: &Session) -> SessionHead {
        SessionHead {
            closed: session.state.is_final(),
            len: session.log_len,
            hash: session.log_head,
        }
    }

    /// `session` with this head's log length and chain head.
    pub(super) fn apply(&self, mut session: Session) -> Session {
        session.log_len = self.len;
        session.log_head = self.hash;
        session
    }

    /// The head after appending `entry` (built at seq `len`).
    ///
    /// # Errors
    /// `Conflict` when the log has reached the largest seq.
    pub(super) fn after(&self, id: &str, entry: &LogEntry) -> Result<SessionHead> {
        Ok(SessionHead {
            len: len_after(id, entry)?,
            hash: Some(entry.hash),
            ..*self
        })
    }

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(43);
        out.push(VERSION);
        out.push(u8::from(self.closed));
        out.extend_from_slice(&self.len.to_be_bytes());
        push_hash(&mut out, self.hash);
        out
    }

    /// # Errors
    /// `Corrupted` when `bytes` is not a head of this layout.
    fn decode(id: &str, bytes: &[u8]) -> Result<SessionHead> {
        let damaged = || {
            Error::corrupted(format!(
                "session {:?}: its head record is damaged",
                preview(id)
            ))
        };
        let (&version, rest) = bytes.split_first().ok_or_else(damaged)?;
        let (&closed, rest) = rest.split_first().ok_or_else(damaged)?;
        let (len, rest) = rest.split_at_checked(8).ok_or_else(damaged)?;
        if version != VERSION || closed > 1 {
            return Err(damaged());
        }
        Ok(SessionHead {
            closed: closed == 1,
            len: u64::from_be_bytes(len.try_into().map_err(|_| damaged())?),
            hash: read_hash(rest).ok_or_else(damaged)?,
        })
    }

    /// The stored head of session `id`, if it has one (a session written
    /// before heads were kept apart has none: its record says it all).
    ///
    /// # Errors
    /// `Corrupted` for damage.
    pub(super) fn stored(reader: &dyn Reader, id: &str) -> Result<Option<SessionHead>> {
        reader
            .get(Table::SessionHeads, &keys::session(id))?
            .map(|bytes| SessionHead::decode(id, &bytes))
            .transpose()
    }

    /// What an append needs of session `id`: its head, or for a session
    /// written before heads were kept apart, what its record says.
    ///
    /// # Errors
    /// `NotFound` when the session does not exist; `Corrupted` for damage.
    pub(crate) fn load(reader: &dyn Reader, id: &str) -> Result<SessionHead> {
        if let Some(head) = SessionHead::stored(reader, id)? {
            return Ok(head);
        }
        let session: Option<Session> = get_record(
            reader,
            Table::Sessions,
            &keys::session(id),
            "session record",
        )?;
        let session = session.ok_or_else(|| super::sessions::not_found(id))?;
        SessionHead::without_head(reader, &session)
    }

    /// The head of `session`, a record stored without a head record (as
    /// sessions were before heads were kept apart): what the record says.
    ///
    /// # Errors
    /// `Corrupted` when the log holds an entry past the record's length:
    /// the head record was lost, and the record would rewind the log.
    pub(super) fn without_head(reader: &dyn Reader, session: &Session) -> Result<SessionHead> {
        let past = keys::log_entry(&session.id, session.log_len);
        if reader.get(Table::SessionLog, &past)?.is_some() {
            return Err(Error::corrupted(format!(
                "session {:?}: its head record is missing, and its log holds more than the {} entries its record counts",
                preview(&session.id),
                session.log_len
            )));
        }
        Ok(SessionHead::of(session))
    }

    /// Stages this head as session `id`'s.
    pub(crate) fn put(&self, txn: &mut dyn Txn, id: &str) -> Result<()> {
        txn.put(Table::SessionHeads, keys::session(id), self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn heads_round_trip_and_garbage_is_corrupted() {
        for (closed, hash) in [(false, None), (true, Some(Digest::of(b"x")))] {
            let head = SessionHead {
                closed,
                len: 42,
                hash,
            };
            assert_eq!(SessionHead::decode("s", &head.encode()).unwrap(), head);
        }
        let good = SessionHead {
            closed: false,
            len: 1,
            hash: Some(Digest::of(b"y")),
        }
        .encode();
        for bad in [
            Vec::new(),
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![0]].concat(),
            [vec![0xA1], good[1..].to_vec()].concat(),
            [vec![0xA2, 2], good[2..].to_vec()].concat(),
        ] {
            let err = SessionHead::decode("s", &bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Corrupted, "{bad:?}");
        }
    }
}
