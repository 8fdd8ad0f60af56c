//! `clock::store_times_from_injected_clock` on a harness that cannot take a
//! clock: it checks times against the wall clock, so it passes on a store
//! that runs on the system clock and fails on one whose clock is elsewhere.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use async_trait::async_trait;
use stowage_backends::memory::MemoryBackend;
use stowage_conformance::{self as suite, Harness};
use stowage_core::{Clock, Result, StoreEnv, Stores, Timestamp};

/// A clock stopped at the start of 2001.
#[derive(Debug)]
struct Stopped;

impl Clock for Stopped {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(978_307_200_000)
    }
}

/// A memory store with only `open` (no `open_with`).
struct OpenOnly {
    backend: MemoryBackend,
}

#[async_trait]
impl Harness for OpenOnly {
    async fn open(&self) -> Result<Stores> {
        Ok(self.backend.stores())
    }
}

fn run(env: StoreEnv) -> std::thread::Result<()> {
    catch_unwind(AssertUnwindSafe(|| {
        suite::__run(async {
            let h = OpenOnly {
                backend: MemoryBackend::new(env),
            };
            suite::clock::store_times_from_injected_clock(&h).await;
        })
    }))
}

#[test]
fn system_clock_passes_against_the_wall_clock() {
    assert!(run(StoreEnv::default()).is_ok());
}

#[test]
fn another_clock_fails_against_the_wall_clock() {
    let env = StoreEnv::default().with_clock(Arc::new(Stopped));
    assert!(
        run(env).is_err(),
        "a store whose times are not the wall clock's passed"
    );
}
