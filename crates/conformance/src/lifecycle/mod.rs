//! Lifecycle checks (SPEC §10): run retention, session expiry, blob
//! references and garbage collection, forks and statistics. Time passes
//! on a clock the check moves ([`Harness::open_with`] with a manual clock),
//! or, when the harness cannot take one, in real time (sleeping): "idle
//! for longer than 0" needs a few milliseconds to pass, "longer than an
//! hour" never holds during a check.

mod blobs;
mod deletes;
mod fork;
mod runs;
mod sessions;
mod stats;

pub use blobs::*;
pub use deletes::*;
pub use fork::*;
pub use runs::*;
pub use sessions::*;
pub use stats::*;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stowage_core::lifecycle::Sweep;
use stowage_core::{Clock, ErrorKind, Result, StoreEnv, Stores, Timestamp};

use crate::harness::Harness;
use crate::util::open;

/// A span no check outlives.
pub(crate) const HOUR: Duration = Duration::from_secs(3600);

/// A clock the check moves.
#[derive(Debug)]
struct ManualClock(AtomicU64);

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// How time passes for the store under test.
pub(crate) struct Time(Option<Arc<ManualClock>>);

impl Time {
    /// Moves time on by `span`.
    pub(crate) async fn pass(&self, span: Duration) {
        match &self.0 {
            Some(clock) => {
                let ms = u64::try_from(span.as_millis()).unwrap_or(u64::MAX);
                clock.0.fetch_add(ms, Ordering::SeqCst);
            }
            None => tokio::time::sleep(span).await,
        }
    }

    /// Starts timing a stretch that a check needs shorter than some span
    /// (see [`Time::within`]).
    pub(crate) fn start(&self) -> std::time::Instant {
        std::time::Instant::now()
    }

    /// Whether the stretch begun at `started` took less than `span`: always
    /// on the manual clock (it moves only when told); on the system clock
    /// only when the calls in it were quick enough. A check whose stretch
    /// took longer cannot judge the backend (a slow or loaded one is not
    /// wrong): it says so and passes.
    pub(crate) fn within(&self, started: std::time::Instant, span: Duration, check: &str) -> bool {
        if self.0.is_some() || started.elapsed() < span {
            return true;
        }
        eprintln!(
            "{check}: not judged: the harness has no open_with, so the check ran on the \
             system clock, and its calls took {:?}, longer than the {span:?} it needs them \
             within (give the harness open_with to judge it on a manual clock)",
            started.elapsed()
        );
        false
    }

    /// Moves time past everything written so far.
    pub(crate) async fn tick(&self) {
        self.pass(Duration::from_millis(5)).await;
    }
}

/// A fresh store on a clock the check moves, if the harness takes one.
pub(crate) async fn open_timed(h: &dyn Harness) -> (Stores, Time) {
    let clock = Arc::new(ManualClock(AtomicU64::new(Timestamp::now().as_millis())));
    let env = StoreEnv::default().with_clock(clock.clone());
    match h.open_with(env).await {
        Ok(stores) => (stores, Time(Some(clock))),
        Err(e) if e.kind() == ErrorKind::Unsupported => (open(h).await, Time(None)),
        Err(e) => panic!("harness: opening a store with a manual clock failed: {e}"),
    }
}

/// Runs a sweep to its end, one batch after another; returns the summed
/// sweep (`next` is `None`).
pub(crate) async fn sweep_all<C, F, Fut>(mut call: F) -> Sweep<C>
where
    C: Clone,
    F: FnMut(Option<C>) -> Fut,
    Fut: std::future::Future<Output = Result<Sweep<C>>>,
{
    let mut total = Sweep::new(0, 0, 0, None);
    let mut after = None;
    for _ in 0..100_000 {
        let sweep = match call(after.clone()).await {
            Ok(sweep) => sweep,
            Err(e) => panic!("a lifecycle sweep failed: {} error: {e}", e.kind()),
        };
        total.examined += sweep.examined;
        total.affected += sweep.affected;
        total.removed += sweep.removed;
        match sweep.next {
            Some(next) => after = Some(next),
            None => return total,
        }
    }
    panic!("a sweep did not reach its end in 100 000 batches (its cursor does not advance?)");
}
