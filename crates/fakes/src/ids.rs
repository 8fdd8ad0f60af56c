//! [`SequentialIds`]: deterministic, strictly increasing run ids.

use std::sync::Arc;

use parking_lot::Mutex;
use stowage_core::{IdGenerator, RunId, Timestamp};

/// The largest millisecond value a UUID v7 can hold (48 bits).
const MAX_V7_MS: u64 = 0xFFFF_FFFF_FFFF;

/// A deterministic [`IdGenerator`]: UUID v7 run ids built with
/// [`RunId::new_v7`] from the store's "now" and a counter, so that the same
/// sequence of calls yields the same ids in every test run.
///
/// Ids are unique and strictly increasing in issue order, also with a
/// frozen clock or one moved backwards:
/// - the counter (0, 1, 2, …, never reset) fills the 74 entropy bits, which
///   order ids within one millisecond;
/// - the time used is the largest "now" seen so far (like RFC 9562's
///   monotonic generators), so an id's [`RunId::timestamp`] is its creation
///   time unless the clock went backwards.
///
/// Clones share the counter; [`SequentialIds::fork`] makes an independent
/// copy that continues from the same point.
///
/// ```
/// use stowage_core::{IdGenerator, Timestamp};
/// use stowage_fakes::SequentialIds;
///
/// let ids = SequentialIds::new();
/// let frozen = Timestamp::from_millis(1_000);
/// let a = ids.new_run_id(frozen);
/// let b = ids.new_run_id(frozen);
/// assert!(a < b);
/// assert_eq!(a.timestamp(), frozen);
/// assert_eq!(ids.issued(), 2);
///
/// // The same calls give the same ids.
/// let again = SequentialIds::new();
/// assert_eq!(again.new_run_id(frozen), a);
/// ```
#[derive(Debug, Clone, Default)]
pub struct SequentialIds {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Clone, Copy, Default)]
struct State {
    issued: u64,
    last_ms: u64,
}

impl SequentialIds {
    /// A generator whose first id uses counter 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many ids have been issued (shared by clones).
    pub fn issued(&self) -> u64 {
        self.state.lock().issued
    }

    /// An independent generator in the same state: it issues the same ids
    /// this one would issue next, without affecting it.
    pub fn fork(&self) -> SequentialIds {
        let state = *self.state.lock();
        SequentialIds {
            state: Arc::new(Mutex::new(state)),
        }
    }

    /// Takes `other`'s state as it is now (a fork catching up with the
    /// generator it was forked from).
    pub(crate) fn catch_up(&self, other: &SequentialIds) {
        let state = *other.state.lock();
        *self.state.lock() = state;
    }
}

impl IdGenerator for SequentialIds {
    fn new_run_id(&self, now: Timestamp) -> RunId {
        let mut state = self.state.lock();
        let ms = now.as_millis().min(MAX_V7_MS).max(state.last_ms);
        let counter = state.issued;
        state.issued = state.issued.wrapping_add(1);
        state.last_ms = ms;
        RunId::new_v7(Timestamp::from_millis(ms), u128::from(counter))
    }
}
