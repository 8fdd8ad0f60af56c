//! The store's "now" (SPEC §2 Time): every timestamp a store assigns — a
//! run's `created_at` and `finished_at`, an event or log entry appended
//! without a timestamp, a release record's `created_at`, a session's
//! `created_at` and `updated_at`, a fork's `created_at` — comes from the
//! clock the store was opened with, and a caller's timestamp is kept as
//! given.
//!
//! [`store_times_from_injected_clock`] opens the store with a clock the
//! check sets ([`Harness::open_with`]) to instants far from the wall
//! clock. A harness that cannot take a clock is taken to run its store on
//! the system clock (as the [`lifecycle`](crate::lifecycle) checks do):
//! then each assigned time must lie between wall-clock readings taken
//! just before and just after the call, and never go backwards. (A
//! harness whose `open` uses a fake clock must therefore implement
//! `open_with`, as `stowage-fakes`' does.)

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde_json::json;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{
    Clock, ErrorKind, NewEvent, RunStatus, RunSummary, SessionState, StoreEnv, Stores, Timestamp,
};

use crate::harness::Harness;
use crate::util::{entry, event, meta, ok, open, rmeta, spec};

/// The first instant of the set clock: 2001-09-09, far from any wall clock
/// a check runs under, and not a round number.
const SET_BASE_MS: u64 = 1_000_000_000_007;

/// A clock the check sets.
#[derive(Debug)]
struct SetClock(AtomicU64);

impl Clock for SetClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

/// Where the store under test takes "now" from.
enum Source {
    /// A clock the check sets before each call.
    Set(Arc<SetClock>),
    /// The wall clock (the store was opened as usual).
    Wall,
}

/// What "now" may have been while one call ran: `lo..=hi`.
#[derive(Debug, Clone, Copy)]
struct Window {
    lo: Timestamp,
    hi: Timestamp,
}

impl Window {
    /// Fails unless `t` lies in the window.
    #[track_caller]
    fn holds(self, t: Timestamp, what: &str) {
        assert!(
            self.lo <= t && t <= self.hi,
            "{what} is {t}, but the store's clock read {} during the call (SPEC §2: stores take \
             \"now\" from their injected clock)",
            if self.lo == self.hi {
                format!("{}", self.lo)
            } else {
                format!("between {} and {}", self.lo, self.hi)
            }
        );
    }
}

/// Moves the time source on before each call and remembers every
/// assigned time, in call order.
struct Stamper {
    source: Source,
    step: u64,
    seen: Vec<(Timestamp, String)>,
}

impl Stamper {
    /// Runs `call` at a new instant; returns its output and what "now" was.
    async fn at<T>(&mut self, call: impl Future<Output = T>) -> (T, Window) {
        self.step += 1;
        match &self.source {
            Source::Set(clock) => {
                // Steps of just over a second, so no two calls share an instant.
                let now = SET_BASE_MS + self.step * 1_001;
                clock.0.store(now, Ordering::SeqCst);
                let out = call.await;
                let t = Timestamp::from_millis(now);
                (out, Window { lo: t, hi: t })
            }
            Source::Wall => {
                let lo = Timestamp::now();
                let out = call.await;
                let hi = Timestamp::now();
                (out, Window { lo, hi })
            }
        }
    }

    /// Checks `t` against `window` and remembers it.
    #[track_caller]
    fn stamp(&mut self, window: Window, t: Timestamp, what: &str) {
        window.holds(t, what);
        self.seen.push((t, what.to_owned()));
    }

    /// Fails unless the assigned times never went backwards.
    fn assert_monotonic(&self) {
        for pair in self.seen.windows(2) {
            if let [(a, what_a), (b, what_b)] = pair {
                assert!(
                    a <= b,
                    "store-assigned times went backwards across sequential calls: {what_a} is \
                     {a}, then {what_b} is {b}"
                );
            }
        }
    }
}

/// With a clock the check sets (through [`Harness::open_with`]), every timestamp the store assigns is the clock's reading during the call — run `created_at` and `finished_at` (all three terminal transitions), events and log entries without a timestamp (also from `replace_log`), release records from promote, `rollback` and `rollback_to`, session `created_at`/`updated_at` on create and save (a state change leaves `updated_at` as it was or sets it to the clock), a fork's `created_at` — and reads return those times exactly; caller timestamps are kept. When `open_with` is `Unsupported`, the store is taken to be on the system clock: each assigned time lies between wall-clock readings just before and after its call, and they never go backwards.
pub async fn store_times_from_injected_clock(h: &dyn Harness) {
    let clock = Arc::new(SetClock(AtomicU64::new(SET_BASE_MS)));
    let env = StoreEnv::default().with_clock(clock.clone());
    let (s, source) = match h.open_with(env).await {
        Ok(s) => (s, Source::Set(clock)),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            println!(
                "clock::store_times_from_injected_clock: the harness cannot open a store on a \
                 given clock ({e}); checking times against the wall clock instead"
            );
            (open(h).await, Source::Wall)
        }
        Err(e) => panic!("harness: opening a store with a set clock failed: {e}"),
    };
    let mut stamper = Stamper {
        source,
        step: 0,
        seen: Vec::new(),
    };
    stamps_from_store_clock(&s, &mut stamper).await;
}

/// Every call that makes the store assign a time, checked against `t`.
async fn stamps_from_store_clock(s: &Stores, t: &mut Stamper) {
    let given = Timestamp::from_millis(42);
    runs(s, t, given).await;
    releases(s, t).await;
    sessions(s, t, given).await;
    t.assert_monotonic();
}

async fn runs(s: &Stores, t: &mut Stamper, given: Timestamp) {
    for status in [
        RunStatus::Completed,
        RunStatus::Failed,
        RunStatus::Cancelled,
    ] {
        let (id, w) = t.at(s.runs.create_run(spec(1), meta("clock"))).await;
        let id = ok(id, "create_run");
        let created = ok(s.runs.get_run(id).await, "get_run").created_at;
        t.stamp(w, created, "a run's created_at");

        let (e, w) = t.at(s.runs.append_event(id, event("step", 0))).await;
        let e = ok(e, "append_event without a timestamp");
        t.stamp(w, e.timestamp, "an event appended without a timestamp");
        let (mine, _) = t
            .at(s
                .runs
                .append_event(id, NewEvent::new("k", json!(1)).with_timestamp(given)))
            .await;
        assert_eq!(
            ok(mine, "append_event with a timestamp").timestamp,
            given,
            "an event's given timestamp is kept, whatever the store's clock says"
        );
        let read = ok(s.runs.read_events(id, None, MAX_PAGE).await, "read_events");
        let times: Vec<Timestamp> = read.iter().map(|e| e.timestamp).collect();
        assert_eq!(
            times,
            [e.timestamp, given],
            "events read back with the times they were appended with"
        );

        let (done, w) = t
            .at(s.runs.finish_run(id, status, RunSummary::new("end")))
            .await;
        let done = ok(done, &format!("finish_run {status} without finished_at"));
        let Some(finished) = done.finished_at else {
            panic!("a {status} run has no finished_at");
        };
        t.stamp(w, finished, &format!("finished_at of a {status} run"));
        let run = ok(s.runs.get_run(id).await, "get_run");
        assert_eq!(
            (run.created_at, run.finished_at),
            (created, Some(finished)),
            "a finished run reads back its created_at and finished_at exactly"
        );
    }
}

async fn releases(s: &Stores, t: &mut Stamper) {
    let mut created = Vec::new();
    for i in 0..3 {
        let (r, w) = t
            .at(s.releases.promote("svc", spec(i), rmeta("v"), None))
            .await;
        let r = ok(r, "promote");
        t.stamp(w, r.created_at, "a promoted release record's created_at");
        created.push(r.created_at);
    }
    let (r, w) = t.at(s.releases.rollback("svc", "ops")).await;
    let r = ok(r, "rollback");
    t.stamp(w, r.created_at, "a rollback record's created_at");
    created.push(r.created_at);
    let (r, w) = t.at(s.releases.rollback_to("svc", 2, "ops")).await;
    let r = ok(r, "rollback_to");
    t.stamp(w, r.created_at, "a rollback_to record's created_at");
    created.push(r.created_at);
    let history = ok(s.releases.history("svc", None, MAX_PAGE).await, "history");
    let mut read: Vec<Timestamp> = history.iter().map(|r| r.created_at).collect();
    read.reverse();
    assert_eq!(
        read, created,
        "release records read back the created_at they were appended with"
    );
}

async fn sessions(s: &Stores, t: &mut Stamper, given: Timestamp) {
    let (c, w) = t.at(s.sessions.create_session("s", json!({}))).await;
    let c = ok(c, "create_session");
    t.stamp(w, c.created_at, "a new session's created_at");
    t.stamp(w, c.updated_at, "a new session's updated_at");

    let (saved, w) = t
        .at(s.sessions.save_session("s", json!({"n": 1}), None))
        .await;
    let saved = ok(saved, "save_session");
    t.stamp(w, saved.updated_at, "a saved session's updated_at");
    assert_eq!(
        saved.created_at, c.created_at,
        "a save keeps the session's created_at"
    );

    let (moved, w) = t
        .at(s
            .sessions
            .set_session_state("s", SessionState::Suspended, None))
        .await;
    let moved = ok(moved, "set_session_state");
    assert_eq!(
        moved.created_at, c.created_at,
        "a state change keeps the session's created_at"
    );
    if moved.updated_at != saved.updated_at {
        t.stamp(
            w,
            moved.updated_at,
            "the updated_at a state change set (when it set one)",
        );
    }

    let (e, w) = t.at(s.sessions.append_log("s", entry("hi"))).await;
    let since_state = w.lo;
    let e = ok(e, "append_log without a timestamp");
    t.stamp(w, e.timestamp, "a log entry appended without a timestamp");
    let (mine, _) = t
        .at(s
            .sessions
            .append_log("s", entry("mine").with_timestamp(given)))
        .await;
    assert_eq!(
        ok(mine, "append_log with a timestamp").timestamp,
        given,
        "a log entry's given timestamp is kept"
    );
    let log = ok(s.sessions.read_log("s", None, MAX_PAGE).await, "read_log");
    let times: Vec<Timestamp> = log.iter().map(|e| e.timestamp).collect();
    assert_eq!(
        times,
        [e.timestamp, given],
        "log entries read back with their times"
    );

    let (replaced, w) = t
        .at(s.sessions.replace_log(
            "s",
            vec![entry("a"), entry("b").with_timestamp(given), entry("c")],
            None,
        ))
        .await;
    let replaced = ok(replaced, "replace_log");
    let times: Vec<Timestamp> = replaced.iter().map(|e| e.timestamp).collect();
    if let [a, b, c] = times[..] {
        t.stamp(w, a, "a replace_log entry without a timestamp");
        assert_eq!(b, given, "a replace_log entry's given timestamp is kept");
        t.stamp(w, c, "a replace_log entry without a timestamp");
    } else {
        panic!(
            "replace_log with 3 entries returned {} entries",
            times.len()
        );
    }
    assert_eq!(
        ok(s.sessions.read_log("s", None, MAX_PAGE).await, "read_log"),
        replaced,
        "the replaced log reads back exactly, times included"
    );

    let (fork, w) = t.at(s.lifecycle.fork_session("s", "fork")).await;
    let fork = ok(fork, "fork_session");
    t.stamp(w, fork.created_at, "a forked session's created_at");

    let loaded = ok(s.sessions.load_session("s").await, "load_session");
    let Some(loaded) = loaded else {
        panic!("session \"s\" is gone");
    };
    assert_eq!(
        loaded.created_at, c.created_at,
        "a session reads back its created_at exactly"
    );
    // Log appends and replace_log are not saves; whether they touch
    // `updated_at` is the backend's choice, but only with the clock.
    if loaded.updated_at != moved.updated_at {
        let span = Window {
            lo: since_state,
            hi: w.hi,
        };
        span.holds(
            loaded.updated_at,
            "a session's updated_at after log appends, replace_log and a fork",
        );
    }
}
