//! [`MetricsLayer`]: call counts and latencies on the `metrics` facade.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use metrics::{counter, describe_counter, describe_histogram, histogram, Unit};
use stowage_core::layer::{interpose, Call, Interceptor, Layer, Proceed};
use stowage_core::{Error, Stores};

/// The counter of calls: labels `backend`, `store`, `operation`, `outcome`.
pub const CALLS_TOTAL: &str = "stowage_calls_total";
/// The latency histogram, in seconds: labels `backend`, `store`, `operation`.
pub const CALL_DURATION_SECONDS: &str = "stowage_call_duration_seconds";

/// Counts every store call and times it, through whatever `metrics`
/// recorder the application installed (Prometheus, StatsD, …; none: the
/// calls cost almost nothing).
///
/// - [`CALLS_TOTAL`] `stowage_calls_total{backend, store, operation, outcome}`:
///   one increment per call; `outcome` is `"ok"` or the
///   [`ErrorKind`](stowage_core::ErrorKind) name (`"not_found"`,
///   `"conflict"`, `"unavailable"`, …), so the label set is bounded.
/// - [`CALL_DURATION_SECONDS`] `stowage_call_duration_seconds{backend, store, operation}`:
///   the wall time of each call, success or not.
///
/// `backend` is [`Capabilities::backend`](stowage_core::Capabilities::backend),
/// `store` the store (`"runs"`), `operation` the operation
/// (`"runs.append_event"`). Placed below a [`RetryLayer`](crate::RetryLayer)
/// it counts every attempt; above it, every call the application made.
/// A call cancelled before it finished is neither counted nor timed.
#[derive(Debug, Clone, Copy, Default)]
pub struct MetricsLayer;

impl MetricsLayer {
    /// The layer; see [`MetricsLayer`].
    pub fn new() -> Self {
        MetricsLayer
    }

    /// Describes both metrics (help text and unit) to the installed
    /// recorder. [`Layer::layer`] does it too; call it again after
    /// installing a recorder later.
    pub fn describe() {
        describe_counter!(
            CALLS_TOTAL,
            Unit::Count,
            "Store calls made through stowage, by backend, store, operation and outcome."
        );
        describe_histogram!(
            CALL_DURATION_SECONDS,
            Unit::Seconds,
            "Latency of stowage store calls, by backend, store and operation."
        );
    }
}

impl Layer for MetricsLayer {
    fn layer(&self, stores: Stores) -> Stores {
        MetricsLayer::describe();
        interpose(stores, Arc::new(MetricsInterceptor))
    }
}

struct MetricsInterceptor;

#[async_trait]
impl Interceptor for MetricsInterceptor {
    async fn around(&self, call: &Call, mut proceed: Proceed<'_>) -> Option<Error> {
        let started = Instant::now();
        let outcome = proceed.run().await;
        let seconds = started.elapsed().as_secs_f64();
        let backend = call.backend;
        let store = call.op.store().as_str();
        let operation = call.op.as_str();
        let outcome = match outcome {
            Ok(()) => "ok",
            Err(kind) => kind.as_str(),
        };
        counter!(
            CALLS_TOTAL,
            "backend" => backend,
            "store" => store,
            "operation" => operation,
            "outcome" => outcome
        )
        .increment(1);
        histogram!(
            CALL_DURATION_SECONDS,
            "backend" => backend,
            "store" => store,
            "operation" => operation
        )
        .record(seconds);
        None
    }

    fn wants_args(&self) -> bool {
        false
    }
}
