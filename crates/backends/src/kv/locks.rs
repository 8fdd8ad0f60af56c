//! In-process locking: a striped table of mutexes keyed by (table, entity).
//!
//! Every read-modify-write of one entity (a run, a session, a release name,
//! a blob) holds its stripe for the whole read → decide → atomic batch, so
//! sequence allocation and state transitions never race inside the process.
//! The engines refuse a second opener, so no other process writes.
//! Two entities may share a stripe; that only serialises them.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};

use parking_lot::{Mutex, MutexGuard};

use super::seam::Table;

/// Number of stripes: enough that unrelated entities rarely wait on each
/// other, small enough to be free.
const STRIPES: usize = 256;

/// A fixed set of mutexes picked by hashing (table, entity).
pub(crate) struct LockTable {
    stripes: Vec<Mutex<()>>,
}

impl LockTable {
    pub(crate) fn new() -> Self {
        LockTable {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Blocks until the stripe of `(table, entity)` is held. Call only from
    /// a blocking thread, and never while holding another stripe.
    pub(crate) fn lock(&self, table: Table, entity: &[u8]) -> MutexGuard<'_, ()> {
        let mut hasher = DefaultHasher::new();
        table.hash(&mut hasher);
        entity.hash(&mut hasher);
        let index = (hasher.finish() % STRIPES as u64) as usize;
        // `index < STRIPES == stripes.len()`, so this never falls through.
        match self.stripes.get(index) {
            Some(stripe) => stripe.lock(),
            None => self.stripes[0].lock(),
        }
    }
}
