//! The whole conformance suite against the example's third-party engine,
//! in one line (`conformance_tests!`), using only public APIs — as an
//! engine crate outside this workspace would.

#[path = "../custom_engine/engine.rs"]
mod engine;

use std::sync::Arc;

use async_trait::async_trait;
use stowage::{Result, StoreEnv, Stores};
use stowage_conformance::{Harness, Tamper};

struct MapHarness(engine::MapEngine);

#[async_trait]
impl Harness for MapHarness {
    async fn open(&self) -> Result<Stores> {
        Ok(stowage::engine::stores(
            Arc::new(self.0.clone()),
            StoreEnv::default(),
        ))
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        Ok(stowage::engine::stores(
            Arc::new(engine::MapEngine::default()),
            env,
        ))
    }

    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        stowage_conformance::tamper_engine(&self.0, target).await
    }
}

async fn harness() -> MapHarness {
    MapHarness(engine::MapEngine::default())
}

stowage_conformance::conformance_tests!(harness);
