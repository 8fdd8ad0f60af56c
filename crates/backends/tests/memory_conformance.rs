//! The whole conformance suite (`stowage-conformance`) against the memory
//! backend. Memory is not durable, so the reopen checks report that they do
//! not apply; tampering goes through its engine.

#![cfg(feature = "memory")]

use async_trait::async_trait;
use stowage_backends::memory::MemoryBackend;
use stowage_conformance::{Harness, Tamper};
use stowage_core::{Result, StoreEnv, Stores};

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
        stowage_conformance::tamper_engine(self.backend.engine(), target).await
    }
}

async fn memory_harness() -> MemoryHarness {
    MemoryHarness {
        backend: MemoryBackend::new(StoreEnv::default()),
    }
}

stowage_conformance::conformance_tests!(memory_harness);
