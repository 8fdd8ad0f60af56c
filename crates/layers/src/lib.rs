//! # stowage-layers
//!
//! Layers over any [`Stores`](stowage_core::Stores) — a real backend, a
//! fake, or stores already wrapped — built on the one interposer of
//! [`stowage_core::layer`], the same one the fault injector and call
//! recorder of `stowage-fakes` plug into:
//!
//! | layer | what it does |
//! |---|---|
//! | [`TracingLayer`] (feature `tracing`) | one `tracing` span per call, named after the operation, with backend, store, entity, seq, outcome and error kind; no payloads |
//! | [`MetricsLayer`] (feature `metrics`) | `stowage_calls_total{backend,store,operation,outcome}` and `stowage_call_duration_seconds{backend,store,operation}` on the `metrics` facade |
//! | [`RetryLayer`] | retries `Unavailable`, and `OutcomeUnknown` only where repeating cannot apply a call twice, with exponential backoff and jitter |
//! | [`TimeoutLayer`] | a deadline per call: a timed-out write is `OutcomeUnknown`, a read `Unavailable` |
//!
//! Apply them with [`Stores::layer`](stowage_core::Stores::layer), in any
//! order; the last applied is the outermost, the first to see a call:
//!
//! ```
//! use std::time::Duration;
//! use stowage_backends::memory::MemoryBackend;
//! use stowage_core::{NewEvent, RunMetadata, StoreEnv};
//! use stowage_layers::{MetricsLayer, RetryLayer, TimeoutLayer, TracingLayer};
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let stores = MemoryBackend::new(StoreEnv::default())
//!     .stores()
//!     .layer(TimeoutLayer::new(Duration::from_secs(5))) // each attempt gets 5 s
//!     .layer(RetryLayer::new().with_max_attempts(4))    // up to 4 attempts
//!     .layer(MetricsLayer::new())                        // one count per application call
//!     .layer(TracingLayer::new());                       // one span per application call
//!
//! let spec = stores.cas.put(bytes::Bytes::from_static(b"agent spec")).await.unwrap();
//! let run = stores.runs.create_run(spec, RunMetadata::new("planner")).await.unwrap();
//! let event = NewEvent::new("step", serde_json::json!({"n": 1}));
//! assert_eq!(stores.runs.append_event(run, event).await.unwrap().seq, 0);
//! # });
//! ```
//!
//! Order matters where layers interact: a [`TimeoutLayer`] below a
//! [`RetryLayer`] bounds each attempt, above it the whole call; metrics or
//! tracing below a retry layer see every attempt, above it every call the
//! application made. Fault injection from `stowage-fakes` stacks the same
//! way (`FaultInjector::wrap(stores).0.layer(RetryLayer::new())` retries
//! injected faults).
//!
//! ## Why `tracing` and `metrics`
//!
//! They are the facades the Rust ecosystem's services already use
//! (Tokio, hyper, tower, sqlx, OpenDAL): a library emits through them and
//! the application picks the backend (OpenTelemetry, Prometheus, StatsD,
//! logs). Both cost next to nothing when nothing is installed, and each is
//! behind a default feature, so `default-features = false` builds the
//! retry and timeout layers alone.

#[cfg(feature = "metrics")]
mod measure;
mod retry;
mod timeout;
#[cfg(feature = "tracing")]
mod trace;

#[cfg(feature = "metrics")]
pub use measure::{MetricsLayer, CALLS_TOTAL, CALL_DURATION_SECONDS};
pub use retry::RetryLayer;
pub use timeout::TimeoutLayer;
#[cfg(feature = "tracing")]
pub use trace::{TracingLayer, TARGET};
