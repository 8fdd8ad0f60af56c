//! [`FakeClock`]: a clock that only moves when the test says so.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stowage_core::{Clock, Timestamp};

/// A controllable [`Clock`]: it stands still until it is [`set`](FakeClock::set)
/// or [`advance`](FakeClock::advance)d, or moves by a fixed step on every
/// read when [auto-advance](FakeClock::set_auto_advance) is on.
///
/// Clones share one state (moving one moves all of them), so a test can keep
/// a handle while the store reads another. [`FakeClock::fork`] makes an
/// independent copy instead. All methods are lock-free and safe to call from
/// many tasks at once.
///
/// ```
/// use std::time::Duration;
/// use stowage_core::{Clock, Timestamp};
/// use stowage_fakes::FakeClock;
///
/// let clock = FakeClock::at(Timestamp::from_millis(1_000));
/// let seen_by_store = clock.clone();
/// assert_eq!(seen_by_store.now(), Timestamp::from_millis(1_000));
///
/// clock.advance(Duration::from_secs(2));
/// assert_eq!(seen_by_store.now(), Timestamp::from_millis(3_000));
///
/// clock.set_auto_advance_ms(5); // every read returns the time, then moves 5 ms
/// assert_eq!(clock.now(), Timestamp::from_millis(3_000));
/// assert_eq!(clock.now(), Timestamp::from_millis(3_005));
/// assert_eq!(clock.peek(), Timestamp::from_millis(3_010)); // peek never moves it
/// ```
#[derive(Debug, Clone)]
pub struct FakeClock {
    state: Arc<State>,
}

#[derive(Debug)]
struct State {
    now_ms: AtomicU64,
    step_ms: AtomicU64,
}

impl FakeClock {
    /// Where [`FakeClock::new`] starts: 2024-01-01T00:00:00Z.
    pub const DEFAULT_START: Timestamp = Timestamp::from_millis(1_704_067_200_000);

    /// A frozen clock at [`FakeClock::DEFAULT_START`].
    pub fn new() -> Self {
        Self::at(Self::DEFAULT_START)
    }

    /// A frozen clock at `start`.
    pub fn at(start: Timestamp) -> Self {
        FakeClock {
            state: Arc::new(State {
                now_ms: AtomicU64::new(start.as_millis()),
                step_ms: AtomicU64::new(0),
            }),
        }
    }

    /// Builder form of [`FakeClock::set_auto_advance_ms`].
    #[must_use]
    pub fn with_auto_advance_ms(self, step_ms: u64) -> Self {
        self.set_auto_advance_ms(step_ms);
        self
    }

    /// Sets the time (forwards or backwards).
    pub fn set(&self, now: Timestamp) {
        self.state.now_ms.store(now.as_millis(), Ordering::SeqCst);
    }

    /// Moves the time forward by `by` (whole milliseconds; saturates at
    /// [`Timestamp::MAX`]).
    pub fn advance(&self, by: Duration) {
        self.advance_ms(u64::try_from(by.as_millis()).unwrap_or(u64::MAX));
    }

    /// Moves the time forward by `ms` milliseconds (saturating).
    pub fn advance_ms(&self, ms: u64) {
        add_saturating(&self.state.now_ms, ms);
    }

    /// Makes every [`Clock::now`] read return the current time and then move
    /// it forward by `step` (whole milliseconds). A zero step freezes the
    /// clock again.
    pub fn set_auto_advance(&self, step: Duration) {
        self.set_auto_advance_ms(u64::try_from(step.as_millis()).unwrap_or(u64::MAX));
    }

    /// [`FakeClock::set_auto_advance`] in milliseconds.
    pub fn set_auto_advance_ms(&self, step_ms: u64) {
        self.state.step_ms.store(step_ms, Ordering::SeqCst);
    }

    /// The auto-advance step in milliseconds (0 when frozen).
    pub fn auto_advance_ms(&self) -> u64 {
        self.state.step_ms.load(Ordering::SeqCst)
    }

    /// The current time, without auto-advancing.
    pub fn peek(&self) -> Timestamp {
        Timestamp::from_millis(self.state.now_ms.load(Ordering::SeqCst))
    }

    /// An independent clock with the same time and auto-advance step:
    /// moving one no longer moves the other.
    pub fn fork(&self) -> FakeClock {
        FakeClock::at(self.peek()).with_auto_advance_ms(self.auto_advance_ms())
    }
}

impl Default for FakeClock {
    /// Same as [`FakeClock::new`].
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for FakeClock {
    /// The current time; with auto-advance, moves the clock by one step
    /// after reading (atomically, so concurrent readers see distinct times).
    fn now(&self) -> Timestamp {
        let step = self.state.step_ms.load(Ordering::SeqCst);
        if step == 0 {
            return self.peek();
        }
        Timestamp::from_millis(add_saturating(&self.state.now_ms, step))
    }
}

/// Adds `by` to `cell` saturating at `u64::MAX`; returns the previous value.
fn add_saturating(cell: &AtomicU64, by: u64) -> u64 {
    let update = cell.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |v| {
        Some(v.saturating_add(by))
    });
    // The closure always returns Some, so both arms carry the old value.
    match update {
        Ok(old) | Err(old) => old,
    }
}
