//! The values a store's write jobs last saw or wrote, by member: what an
//! append reads (its run's head) is answered from here without a round
//! trip. Every answer is a *guess*: the job's guard on it is checked by
//! the apply script, and a guess that turned out stale is forgotten and
//! the job run again. So this cache can never make a write wrong, only
//! slower; other processes writing the same store are why it is a guess.

use std::collections::BTreeMap;

use parking_lot::Mutex;
use stowage_core::engine::Write;

use super::remote::{member, member_range};

/// Most members remembered; the whole map is dropped when full.
const MAX_ENTRIES: usize = 16 * 1024;
/// Larger values are never remembered (they are rarely read by writes).
const MAX_VALUE: usize = 4 * 1024;

/// Member → its value (`None`: absent), as last seen.
#[derive(Default)]
pub(super) struct Guesses(Mutex<BTreeMap<Vec<u8>, Option<Vec<u8>>>>);

impl Guesses {
    /// The guess for `member`: `None` when there is none, `Some(None)`
    /// when it was absent.
    pub(super) fn get(&self, member: &[u8]) -> Option<Option<Vec<u8>>> {
        self.0.lock().get(member).cloned()
    }

    /// Remembers what a read found.
    pub(super) fn saw(&self, member: &[u8], value: Option<&[u8]>) {
        if value.is_some_and(|v| v.len() > MAX_VALUE) {
            self.0.lock().remove(member);
            return;
        }
        let mut map = self.0.lock();
        if map.len() >= MAX_ENTRIES && !map.contains_key(member) {
            map.clear();
        }
        map.insert(member.to_vec(), value.map(<[u8]>::to_vec));
    }

    /// Forgets `members` (their guesses failed a guard, or a write's
    /// outcome is unknown).
    pub(super) fn forget<'a>(&self, members: impl IntoIterator<Item = &'a [u8]>) {
        let mut map = self.0.lock();
        for m in members {
            map.remove(m);
        }
    }

    /// Forgets everything.
    pub(super) fn clear(&self) {
        self.0.lock().clear();
    }

    /// Learns what an applied job wrote. Only members the job also read
    /// (`read`: read-modify-write keys such as heads, which the next job
    /// reads again) are remembered; others are forgotten, so appended
    /// events and chunks never fill the map.
    pub(super) fn wrote(&self, writes: &[Write], read: impl Fn(&[u8]) -> bool) {
        let learn = |m: Vec<u8>, value: Option<&[u8]>| {
            if read(&m) {
                self.saw(&m, value);
            } else {
                self.0.lock().remove(&m);
            }
        };
        for write in writes {
            match write {
                Write::Put { table, key, value } => learn(member(*table, key), Some(value)),
                Write::Delete { table, key } => learn(member(*table, key), None),
                Write::DeleteRange { table, start, end } => {
                    let (from, to) = member_range(*table, start, Some(end));
                    self.0.lock().retain(|m, _| *m < from || *m >= to);
                }
                // A write this engine does not know: trust nothing.
                _ => self.clear(),
            }
        }
    }
}
