//! The metrics layer's counters and histograms, captured by the
//! `metrics-util` debugging recorder installed for the test's thread.

use std::collections::BTreeMap;

use metrics::Unit;
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use serde_json::json;
use stowage_backends::memory::MemoryBackend;
use stowage_core::{Digest, ErrorKind, NewEvent, RunMetadata, StoreEnv};
use stowage_fakes::{FaultInjector, Operation};
use stowage_layers::{MetricsLayer, RetryLayer, CALLS_TOTAL, CALL_DURATION_SECONDS};

/// `(metric name, sorted labels) -> value` of one snapshot.
type Metrics = BTreeMap<(String, Vec<(String, String)>), Value>;

/// A metric's value, comparable and clonable.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    Counter(u64),
    Gauge(f64),
    Histogram(Vec<f64>),
}

impl From<DebugValue> for Value {
    fn from(value: DebugValue) -> Self {
        match value {
            DebugValue::Counter(n) => Value::Counter(n),
            DebugValue::Gauge(g) => Value::Gauge(g.into_inner()),
            DebugValue::Histogram(h) => {
                Value::Histogram(h.into_iter().map(|v| v.into_inner()).collect())
            }
        }
    }
}

fn snapshot(snapshotter: &Snapshotter) -> (Metrics, Vec<(String, Option<Unit>)>) {
    let mut metrics = Metrics::new();
    let mut units = Vec::new();
    for (key, unit, _help, value) in snapshotter.snapshot().into_vec() {
        let (kind, key) = key.into_parts();
        let name = key.name().to_owned();
        let mut labels: Vec<_> = key
            .labels()
            .map(|l| (l.key().to_owned(), l.value().to_owned()))
            .collect();
        labels.sort();
        units.push((format!("{name} {kind:?}"), unit));
        metrics.insert((name, labels), value.into());
    }
    (metrics, units)
}

fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut labels: Vec<_> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    labels.sort();
    labels
}

/// Runs `test` on a current-thread runtime with `recorder` as the
/// thread's metrics recorder.
fn with_recorder<F: std::future::Future<Output = ()>>(recorder: &DebuggingRecorder, test: F) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .unwrap();
    metrics::with_local_recorder(recorder, || runtime.block_on(test));
}

#[test]
fn counts_calls_by_operation_and_outcome_and_times_them() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    with_recorder(&recorder, async {
        let stores = MemoryBackend::new(StoreEnv::default())
            .stores()
            .layer(MetricsLayer::new());
        let spec = stores
            .cas
            .put(bytes::Bytes::from_static(b"spec"))
            .await
            .unwrap();
        let run = stores
            .runs
            .create_run(spec, RunMetadata::new("a"))
            .await
            .unwrap();
        for n in 0..3 {
            let event = NewEvent::new("step", json!(n));
            stores.runs.append_event(run, event).await.unwrap();
        }
        let mut stale = NewEvent::new("step", json!(9));
        stale.expected_seq = Some(0);
        let err = stores.runs.append_event(run, stale).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Conflict);
        let err = stores.cas.get(&Digest::of(b"nope")).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotFound);
    });

    let (metrics, units) = snapshot(&snapshotter);
    let calls = |op: &str, store: &str, outcome: &str| {
        let key = (
            CALLS_TOTAL.to_owned(),
            labels(&[
                ("backend", "memory"),
                ("store", store),
                ("operation", op),
                ("outcome", outcome),
            ]),
        );
        metrics.get(&key).cloned()
    };
    assert_eq!(
        calls("runs.append_event", "runs", "ok"),
        Some(Value::Counter(3))
    );
    assert_eq!(
        calls("runs.append_event", "runs", "conflict"),
        Some(Value::Counter(1))
    );
    assert_eq!(calls("cas.put", "cas", "ok"), Some(Value::Counter(1)));
    assert_eq!(
        calls("cas.get", "cas", "not_found"),
        Some(Value::Counter(1))
    );
    assert_eq!(calls("cas.get", "cas", "ok"), None);

    let latency = (
        CALL_DURATION_SECONDS.to_owned(),
        labels(&[
            ("backend", "memory"),
            ("store", "runs"),
            ("operation", "runs.append_event"),
        ]),
    );
    match metrics.get(&latency) {
        Some(Value::Histogram(samples)) => {
            assert_eq!(samples.len(), 4, "one sample per call, errors included");
            assert!(samples.iter().all(|s| *s >= 0.0));
        }
        other => panic!("no latency histogram: {other:?}"),
    }
    let total: usize = metrics
        .keys()
        .filter(|(name, _)| name == CALLS_TOTAL)
        .count();
    assert_eq!(
        total, 5,
        "one counter per (operation, outcome): {metrics:#?}"
    );
    assert!(units.contains(&(
        format!("{CALL_DURATION_SECONDS} Histogram"),
        Some(Unit::Seconds)
    )));
}

/// Below a retry layer the metrics see every attempt; above it, one call.
#[test]
fn below_a_retry_layer_every_attempt_counts() {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    with_recorder(&recorder, async {
        let (faulty, faults) =
            FaultInjector::wrap(MemoryBackend::new(StoreEnv::default()).stores());
        faults.fail_next(Operation::CasPut, ErrorKind::Unavailable);
        let stores = faulty.layer(MetricsLayer::new()).layer(RetryLayer::new());
        stores
            .cas
            .put(bytes::Bytes::from_static(b"x"))
            .await
            .unwrap();
    });
    let (metrics, _) = snapshot(&snapshotter);
    let count = |outcome: &str| {
        metrics
            .get(&(
                CALLS_TOTAL.to_owned(),
                labels(&[
                    ("backend", "memory"),
                    ("store", "cas"),
                    ("operation", "cas.put"),
                    ("outcome", outcome),
                ]),
            ))
            .cloned()
    };
    assert_eq!(count("unavailable"), Some(Value::Counter(1)));
    assert_eq!(count("ok"), Some(Value::Counter(1)));
}
