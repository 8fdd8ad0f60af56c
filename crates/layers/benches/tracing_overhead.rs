//! What the tracing layer costs when no subscriber is installed: durable-less
//! `append_event` against the memory backend, bare vs through
//! [`TracingLayer`], in interleaved rounds (the order alternates), compared
//! by their medians. Also reported, for information: every layer stacked
//! (tracing, metrics with no recorder, retry, timeout), and an interceptor
//! that only lets calls through (the interposer's own cost).
//!
//! `cargo bench -p stowage-layers --bench tracing_overhead`
//! (`STOWAGE_BENCH_ROUNDS`, `STOWAGE_BENCH_APPENDS` override the defaults).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use stowage_core::layer::{interpose, Call, Interceptor, Proceed};
use stowage_core::Error;

use serde_json::json;
use stowage_backends::memory::MemoryBackend;
use stowage_core::{Digest, NewEvent, RunMetadata, StoreEnv, Stores};
use stowage_layers::{MetricsLayer, RetryLayer, TimeoutLayer, TracingLayer};

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Lets every call through: the cost of the interposer alone.
struct PassThrough;

#[async_trait]
impl Interceptor for PassThrough {
    async fn around(&self, _call: &Call, proceed: Proceed<'_>) -> Option<Error> {
        let _outcome = proceed.await;
        None
    }
    fn wants_args(&self) -> bool {
        false
    }
}

/// Nanoseconds per append of `appends` events to a fresh run.
async fn round(stores: &Stores, spec: Digest, appends: usize) -> f64 {
    let run = stores
        .runs
        .create_run(spec, RunMetadata::new("bench"))
        .await
        .expect("create run");
    let started = Instant::now();
    for i in 0..appends {
        let event = NewEvent::new("tool_call", json!({"tool": "search", "n": i}));
        stores.runs.append_event(run, event).await.expect("append");
    }
    started.elapsed().as_nanos() as f64 / appends as f64
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

fn main() {
    let rounds = env_usize("STOWAGE_BENCH_ROUNDS", 21);
    let appends = env_usize("STOWAGE_BENCH_APPENDS", 20_000);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let bare = MemoryBackend::new(StoreEnv::default()).stores();
        let traced = bare.clone().layer(TracingLayer::new());
        let passed = interpose(bare.clone(), Arc::new(PassThrough));
        let stacked = bare
            .clone()
            .layer(TimeoutLayer::new(Duration::from_secs(30)))
            .layer(RetryLayer::new())
            .layer(MetricsLayer::new())
            .layer(TracingLayer::new());
        let spec = bare
            .cas
            .put(bytes::Bytes::from_static(b"bench spec"))
            .await
            .expect("spec");
        let variants = [
            ("bare", &bare),
            ("tracing", &traced),
            ("pass-through", &passed),
            ("all layers", &stacked),
        ];
        for (_, stores) in variants {
            round(stores, spec, appends / 4).await; // warm-up
        }
        let mut samples = vec![Vec::new(); variants.len()];
        for r in 0..rounds {
            for k in 0..variants.len() {
                // Rotate the order each round so that no variant always runs first.
                let v = (k + r) % variants.len();
                samples[v].push(round(variants[v].1, spec, appends).await);
            }
        }
        // The ratio of each round to the bare run of the same round: load
        // that drifts between rounds cancels out.
        let mut paired: Vec<Vec<f64>> = samples
            .iter()
            .map(|s| s.iter().zip(&samples[0]).map(|(v, b)| v / b).collect())
            .collect();
        let paired: Vec<f64> = paired.iter_mut().map(|r| median(r)).collect();
        let medians: Vec<f64> = samples.iter_mut().map(|s| median(s)).collect();
        println!("append_event on the memory backend, {rounds} interleaved rounds of {appends} appends");
        for (i, (name, _)) in variants.iter().enumerate() {
            let (lo, hi) = (samples[i][0], samples[i][samples[i].len() - 1]);
            println!(
                "  {name:<12} median {:>6.0} ns/append (range {lo:.0}–{hi:.0}), ratio of medians {:.3}, median paired ratio {:.3}",
                medians[i],
                medians[i] / medians[0],
                paired[i]
            );
        }
        let overhead = paired[1] - 1.0;
        println!(
            "tracing layer, no subscriber: {:+.2} % (median paired ratio; {} the < 5 % target)",
            overhead * 100.0,
            if overhead < 0.05 { "meets" } else { "MISSES" }
        );
    });
}
