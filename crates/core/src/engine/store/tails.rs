//! The encoded entries at the end of recently appended logs (run events,
//! session log entries), so that a page of them is read without a trip to
//! the engine (see [`StoreCache`]).
//!
//! A tail is a gap-free run of seqs ending wherever its last append left
//! it; whether it still reaches the log's end is for the caller to judge
//! against the log's confirmed head (`StoreCache::events`).
//!
//! [`StoreCache`]: super::StoreCache

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;

use super::heads::Log;

/// At most this many bytes of entries are kept across every log.
const BUDGET: usize = 16 << 20;

/// At most this many bytes of entries are kept for one log (its oldest go
/// first).
const LOG_BUDGET: usize = 4 << 20;

/// The overhead counted per cached event besides its bytes.
const PER_EVENT: usize = 48;

#[derive(Default)]
struct Tail {
    /// The seq of `events[0]`.
    first: u64,
    events: VecDeque<Bytes>,
    bytes: usize,
}

impl Tail {
    /// The seq after the last cached event.
    fn end(&self) -> u64 {
        self.first + self.events.len() as u64
    }
}

fn cost(event: &Bytes) -> usize {
    event.len() + PER_EVENT
}

/// The tails of every cached log, within [`BUDGET`].
#[derive(Default)]
pub(super) struct Tails {
    logs: HashMap<Log, Tail>,
    bytes: usize,
}

impl Tails {
    /// Adds entry `seq` of log `id`: extends its tail if `seq` follows it,
    /// else starts the tail over at `seq`.
    pub(super) fn push(&mut self, id: &Log, seq: u64, event: Bytes) {
        let added = cost(&event);
        if added > LOG_BUDGET {
            self.forget(id);
            return;
        }
        let tail = self.logs.entry(id.clone()).or_default();
        if tail.end() != seq || tail.events.is_empty() {
            self.bytes -= tail.bytes;
            *tail = Tail {
                first: seq,
                ..Tail::default()
            };
        }
        tail.events.push_back(event);
        tail.bytes += added;
        self.bytes += added;
        while tail.bytes > LOG_BUDGET {
            let Some(oldest) = tail.events.pop_front() else {
                break;
            };
            tail.first += 1;
            tail.bytes -= cost(&oldest);
            self.bytes -= cost(&oldest);
        }
        if self.bytes > BUDGET {
            self.evict_except(id);
        }
    }

    /// Drops whole tails of logs other than `keep` (in no particular
    /// order) until a quarter of [`BUDGET`] is free, so that one pass over
    /// the logs pays for many appends to come.
    fn evict_except(&mut self, keep: &Log) {
        let target = BUDGET / 4 * 3;
        let mut bytes = self.bytes;
        self.logs.retain(|id, tail| {
            if bytes <= target || id == keep {
                return true;
            }
            bytes -= tail.bytes;
            false
        });
        self.bytes = bytes;
    }

    /// Drops the tail of log `id`.
    pub(super) fn forget(&mut self, id: &Log) {
        if let Some(tail) = self.logs.remove(id) {
            self.bytes -= tail.bytes;
        }
    }

    /// Drops every tail.
    pub(super) fn clear(&mut self) {
        self.logs.clear();
        self.bytes = 0;
    }

    /// Up to `limit` entries of log `id` from seq `first` on, if its tail
    /// holds `first` and ends exactly at `end` (the log's next seq).
    pub(super) fn page(&self, id: &Log, first: u64, end: u64, limit: usize) -> Option<Vec<Bytes>> {
        let tail = self.logs.get(id)?;
        if tail.end() != end || first < tail.first {
            return None;
        }
        let skip = usize::try_from(first - tail.first).ok()?;
        Some(tail.events.iter().skip(skip).take(limit).cloned().collect())
    }

    /// The bytes counted against [`BUDGET`].
    #[cfg(test)]
    pub(super) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Timestamp;

    fn run(n: u128) -> Log {
        Log::Run(crate::RunId::new_v7(Timestamp::ZERO, n))
    }

    fn event(seq: u64, len: usize) -> Bytes {
        let mut bytes = vec![0u8; len];
        bytes[..8].copy_from_slice(&seq.to_be_bytes());
        Bytes::from(bytes)
    }

    fn seqs(page: &[Bytes]) -> Vec<u64> {
        page.iter()
            .map(|b| u64::from_be_bytes(b[..8].try_into().unwrap()))
            .collect()
    }

    #[test]
    fn a_page_is_answered_only_from_a_tail_that_reaches_the_end() {
        let mut tails = Tails::default();
        let id = run(1);
        for seq in 3..8 {
            tails.push(&id, seq, event(seq, 16));
        }
        assert_eq!(seqs(&tails.page(&id, 4, 8, 2).unwrap()), [4, 5]);
        assert_eq!(seqs(&tails.page(&id, 6, 8, 10).unwrap()), [6, 7]);
        assert_eq!(tails.page(&id, 8, 8, 10).unwrap().len(), 0);
        assert!(tails.page(&id, 2, 8, 10).is_none(), "seq 2 is not cached");
        assert!(tails.page(&id, 4, 9, 10).is_none(), "the run went on");
        assert!(tails.page(&run(2), 0, 1, 10).is_none(), "another run");
    }

    #[test]
    fn a_gap_starts_the_tail_over() {
        let mut tails = Tails::default();
        let id = run(1);
        tails.push(&id, 0, event(0, 16));
        tails.push(&id, 1, event(1, 16));
        tails.push(&id, 5, event(5, 16));
        assert!(tails.page(&id, 0, 6, 10).is_none());
        assert_eq!(seqs(&tails.page(&id, 5, 6, 10).unwrap()), [5]);
        assert_eq!(tails.bytes(), 16 + PER_EVENT);
    }

    #[test]
    fn tails_stay_within_their_budgets() {
        let mut tails = Tails::default();
        let len = 64 << 10;
        for n in 0..64u128 {
            for seq in 0..100 {
                tails.push(&run(n), seq, event(seq, len));
                assert!(tails.bytes() <= BUDGET);
                let counted: usize = tails.logs.values().map(|t| t.bytes).sum();
                assert_eq!(tails.bytes(), counted);
            }
            let kept = tails.page(&run(n), 0, 100, 100);
            assert!(kept.is_none(), "100 events of 64 KiB exceed a run's budget");
            let page = tails.page(&run(n), 99, 100, 1).unwrap();
            assert_eq!(seqs(&page), [99]);
        }
        // Many runs of one small event each: an eviction frees a quarter
        // of the budget, not one event's worth.
        let mut evictions = 0;
        for n in 0..100_000u128 {
            let before = tails.logs.len();
            tails.push(&run(1000 + n), 0, event(0, 200));
            evictions += usize::from(tails.logs.len() < before);
        }
        assert!(tails.bytes() <= BUDGET);
        assert!(evictions < 10, "{evictions} evictions");
        let oversized = event(0, LOG_BUDGET + 1);
        tails.push(&run(0), 100, oversized);
        assert!(tails.page(&run(0), 100, 101, 1).is_none());
    }
}
