//! Deferred durability: a store call writes on the store's writer thread
//! (or a blocking-pool thread), which goes on with other work while the
//! caller waits for the engine's shared fsync asynchronously.
//!
//! [`collect`] runs one call's closure with a per-thread slot armed;
//! [`write`] lets the engine defer durability only while the slot is armed
//! and records the highest ticket in it. `KvStore::acknowledge` then
//! awaits that ticket before the call's result reaches its caller, so
//! nothing is acknowledged before it is durable. Outside `collect` (no slot armed)
//! [`write`] is an ordinary durable write, so a caller that would not wait
//! can never receive a deferred one.

use std::cell::Cell;

use stowage_core::Result;

use super::seam::{Batch, OrderedKv};

/// This thread's slot.
#[derive(Clone, Copy)]
enum Slot {
    /// No store call is collecting on this thread.
    Off,
    /// One is; the highest ticket written so far, if any.
    Armed(Option<u64>),
}

thread_local! {
    static SLOT: Cell<Slot> = const { Cell::new(Slot::Off) };
}

/// Disarms the slot when the closure returns or unwinds, so a panic never
/// leaves a later write on this pool thread deferred.
struct Armed;

impl Drop for Armed {
    fn drop(&mut self) {
        SLOT.with(|s| s.set(Slot::Off));
    }
}

/// Runs `f` with deferred writes allowed; returns its result and the
/// ticket to await before acknowledging it (`None`: nothing deferred).
pub(super) fn collect<T>(f: impl FnOnce() -> Result<T>) -> (Result<T>, Option<u64>) {
    SLOT.with(|s| s.set(Slot::Armed(None)));
    let armed = Armed;
    let result = f();
    let ticket = match SLOT.with(Cell::get) {
        Slot::Armed(ticket) => ticket,
        Slot::Off => None,
    };
    drop(armed);
    (result, ticket)
}

/// Writes `batch`, deferring durability to the enclosing [`collect`] if
/// there is one.
pub(super) fn write(engine: &dyn OrderedKv, batch: Batch) -> Result<()> {
    let Slot::Armed(highest) = SLOT.with(Cell::get) else {
        return engine.write(batch);
    };
    if let Some(ticket) = engine.write_deferred(batch)? {
        SLOT.with(|s| s.set(Slot::Armed(highest.max(Some(ticket)))));
    }
    Ok(())
}
