//! A third-party storage engine: implement `stowage::engine::Engine` (a
//! few primitives with a documented contract) and every store rule of
//! stowage runs over it. `cargo run -p stowage-examples --example custom_engine`

mod engine;

use std::sync::Arc;

use serde_json::json;
use stowage::{Digest, NewEvent, RunMetadata, StoreEnv};

#[tokio::main]
async fn main() -> stowage::Result<()> {
    let stores =
        stowage::engine::stores(Arc::new(engine::MapEngine::default()), StoreEnv::default());
    let run = stores
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await?;
    for step in 0..3 {
        let event =
            NewEvent::new("step", json!({ "n": step })).with_idempotency_key(format!("s{step}"));
        stores.runs.append_event(run, event).await?;
    }
    let report = stores.runs.verify_run(run).await?;
    println!(
        "run {run}: {} events, chain intact, head {:?}",
        report.len, report.head
    );
    stores.close().await
}
