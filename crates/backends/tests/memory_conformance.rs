//! The whole conformance suite (`stowage-conformance`) against the memory
//! backend. Memory is not durable, so the reopen checks report that they do
//! not apply; tampering goes through the backend's integrity-testing hooks.

#![cfg(feature = "memory")]

use async_trait::async_trait;
use stowage_backends::memory::MemoryBackend;
use stowage_conformance::{Harness, Tamper};
use stowage_core::{Error, Result, StoreEnv, Stores};

/// One fresh, isolated in-memory store per check.
struct MemoryHarness {
    backend: MemoryBackend,
}

#[async_trait]
impl Harness for MemoryHarness {
    async fn open(&self) -> Result<Stores> {
        Ok(self.backend.stores())
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        Ok(MemoryBackend::new(env).stores())
    }

    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        let found = match &target {
            Tamper::Blob(digest) => self.backend.corrupt_blob(digest),
            Tamper::RunEvent { run, seq } => self.backend.corrupt_run_event(*run, *seq),
            Tamper::LogEntry { session, seq } => self.backend.corrupt_log_entry(session, *seq),
            Tamper::RunEvents { run, events } => {
                self.backend.corrupt_run_events(*run, events.clone())
            }
            Tamper::LogEntries { session, entries } => {
                self.backend.corrupt_log(session, entries.clone())
            }
            Tamper::RunHead { run, head } => self.backend.corrupt_run_head(*run, *head),
            Tamper::LogHead { session, head } => self.backend.corrupt_log_head(session, *head),
            other => {
                return Err(Error::unsupported(format!(
                    "the memory harness cannot inflict {other:?}"
                )))
            }
        };
        if found {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "nothing to tamper with: {target:?}"
            )))
        }
    }
}

async fn memory_harness() -> MemoryHarness {
    MemoryHarness {
        backend: MemoryBackend::new(StoreEnv::default()),
    }
}

stowage_conformance::conformance_tests!(memory_harness);
