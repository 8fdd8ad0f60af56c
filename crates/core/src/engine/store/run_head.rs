//! A run's head: its status, event count and chain head — the small,
//! fixed-layout record every append reads and rewrites, kept in
//! `Table::RunHeads` beside the run record (which is written at create and
//! finish only, so an append never rewrites the run's tags).
//!
//! Layout: `[0xA1 version][status u8][count u64 BE][0 | 1 ++ hash(32)]`.

use crate::engine::keys;
use crate::engine::{Reader, Table, Txn};
use crate::run::{check_appendable, count_after};
use crate::{Digest, Error, Result, Run, RunEvent, RunId, RunStatus};

/// Version byte of the layout.
const VERSION: u8 = 0xA1;

/// What an append needs of a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RunHead {
    pub(crate) id: RunId,
    pub(crate) status: RunStatus,
    /// The next event's seq.
    pub(crate) count: u64,
    /// The last event's hash.
    pub(crate) hash: Option<Digest>,
}

fn status_byte(status: RunStatus) -> u8 {
    match status {
        RunStatus::Running => 0,
        RunStatus::Completed => 1,
        RunStatus::Failed => 2,
        RunStatus::Cancelled => 3,
    }
}

fn status_of(byte: u8) -> Option<RunStatus> {
    Some(match byte {
        0 => RunStatus::Running,
        1 => RunStatus::Completed,
        2 => RunStatus::Failed,
        3 => RunStatus::Cancelled,
        _ => return None,
    })
}

impl RunHead {
    /// The head a run record states.
    pub(crate) fn of(run: &Run) -> RunHead {
        RunHead {
            id: run.id,
            status: run.status,
            count: run.event_count,
            hash: run.head,
        }
    }

    /// `run` with this head's count and chain head.
    pub(crate) fn apply(&self, mut run: Run) -> Run {
        run.event_count = self.count;
        run.head = self.hash;
        run
    }

    /// The head after appending `event` (to a run that passed
    /// [`RunHead::check_running`]).
    ///
    /// # Errors
    /// `Conflict` when the run has reached the largest seq.
    pub(crate) fn after(&self, event: &RunEvent) -> Result<RunHead> {
        Ok(RunHead {
            count: count_after(self.id, event)?,
            hash: Some(event.hash),
            ..*self
        })
    }

    /// `Conflict` unless the run takes events.
    pub(crate) fn check_running(&self) -> Result<()> {
        check_appendable(self.id, self.status)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(43);
        out.push(VERSION);
        out.push(status_byte(self.status));
        out.extend_from_slice(&self.count.to_be_bytes());
        push_hash(&mut out, self.hash);
        out
    }

    /// # Errors
    /// `Corrupted` when `bytes` is not a head of this layout.
    pub(crate) fn decode(id: RunId, bytes: &[u8]) -> Result<RunHead> {
        let damaged = || Error::corrupted(format!("run {id}: its head record is damaged"));
        let (&version, rest) = bytes.split_first().ok_or_else(damaged)?;
        let (&status, rest) = rest.split_first().ok_or_else(damaged)?;
        let (count, rest) = rest.split_at_checked(8).ok_or_else(damaged)?;
        if version != VERSION {
            return Err(damaged());
        }
        Ok(RunHead {
            id,
            status: status_of(status).ok_or_else(damaged)?,
            count: u64::from_be_bytes(count.try_into().map_err(|_| damaged())?),
            hash: read_hash(rest).ok_or_else(damaged)?,
        })
    }

    /// The stored head of run `id`: its head record, or for a run written
    /// before heads were kept apart, what its run record says.
    ///
    /// # Errors
    /// `NotFound` when the run does not exist; `Corrupted` for damage.
    pub(crate) fn load(reader: &dyn Reader, id: RunId) -> Result<RunHead> {
        if let Some(bytes) = reader.get(Table::RunHeads, &keys::run(id))? {
            return RunHead::decode(id, &bytes);
        }
        RunHead::without_head(reader, &super::runs::load_record(reader, id)?)
    }

    /// The head of `run`, a record stored without a head record (as runs
    /// were before heads were kept apart): what the record counts.
    ///
    /// # Errors
    /// `Corrupted` when the log holds an event past that count: the head
    /// record was lost, and the record's count would rewind the log.
    pub(crate) fn without_head(reader: &dyn Reader, run: &Run) -> Result<RunHead> {
        let past = keys::run_event(run.id, run.event_count);
        if reader.get(Table::RunEvents, &past)?.is_some() {
            return Err(Error::corrupted(format!(
                "run {}: its head record is missing, and its log holds more than the {} events its record counts",
                run.id, run.event_count
            )));
        }
        Ok(RunHead::of(run))
    }

    /// Stages this head.
    pub(crate) fn put(&self, txn: &mut dyn Txn) -> Result<()> {
        txn.put(Table::RunHeads, keys::run(self.id), self.encode())
    }
}

/// Appends a head's chain hash: `0`, or `1` and the 32 bytes.
pub(super) fn push_hash(out: &mut Vec<u8>, hash: Option<Digest>) {
    match hash {
        None => out.push(0),
        Some(hash) => {
            out.push(1);
            out.extend_from_slice(hash.as_bytes());
        }
    }
}

/// The chain hash [`push_hash`] wrote as the whole of `bytes`; `None`
/// for anything else.
pub(super) fn read_hash(bytes: &[u8]) -> Option<Option<Digest>> {
    match bytes.split_first()? {
        (0, []) => Some(None),
        (1, hash) if hash.len() == 32 => Digest::from_slice(hash).ok().map(Some),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    #[test]
    fn heads_round_trip_and_garbage_is_corrupted() {
        let id = RunId::new_v7(Timestamp::ZERO, 7);
        for (status, hash) in [
            (RunStatus::Running, None),
            (RunStatus::Cancelled, Some(Digest::of(b"x"))),
        ] {
            let head = RunHead {
                id,
                status,
                count: 42,
                hash,
            };
            assert_eq!(RunHead::decode(id, &head.encode()).unwrap(), head);
        }
        let good = RunHead {
            id,
            status: RunStatus::Failed,
            count: 1,
            hash: Some(Digest::of(b"y")),
        }
        .encode();
        for bad in [
            Vec::new(),
            good[..good.len() - 1].to_vec(),
            [good.clone(), vec![0]].concat(),
            [vec![0xA0], good[1..].to_vec()].concat(),
            [vec![0xA1, 9], good[2..].to_vec()].concat(),
        ] {
            let err = RunHead::decode(id, &bad).unwrap_err();
            assert_eq!(err.kind(), crate::ErrorKind::Corrupted, "{bad:?}");
        }
    }
}
