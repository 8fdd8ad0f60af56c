//! The tracing layer's spans, captured by a `tracing-subscriber` layer.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use serde_json::json;
use stowage_backends::memory::MemoryBackend;
use stowage_core::{
    Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, RunMetadata, StoreEnv,
    Stores,
};
use stowage_fakes::{FaultInjector, Operation};
use stowage_layers::{RetryLayer, TracingLayer};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::Subscriber;
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;

/// One closed span: its name, target, fields and parent's name.
#[derive(Debug, Clone, Default)]
struct Captured {
    name: &'static str,
    target: String,
    fields: BTreeMap<String, String>,
    parent: Option<&'static str>,
}

impl Captured {
    fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

struct FieldVisitor<'a>(&'a mut BTreeMap<String, String>);

impl Visit for FieldVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

/// Collects every span, with its fields, when it closes.
#[derive(Clone, Default)]
struct Capture {
    open: Arc<Mutex<BTreeMap<u64, Captured>>>,
    closed: Arc<Mutex<Vec<Captured>>>,
}

impl<S: Subscriber + for<'a> LookupSpan<'a>> tracing_subscriber::Layer<S> for Capture {
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut span = Captured {
            name: attrs.metadata().name(),
            target: attrs.metadata().target().to_owned(),
            parent: ctx.span(id).and_then(|s| s.parent()).map(|p| p.name()),
            ..Captured::default()
        };
        attrs.record(&mut FieldVisitor(&mut span.fields));
        self.open.lock().insert(id.into_u64(), span);
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, _ctx: Context<'_, S>) {
        if let Some(span) = self.open.lock().get_mut(&id.into_u64()) {
            values.record(&mut FieldVisitor(&mut span.fields));
        }
    }

    fn on_close(&self, id: Id, _ctx: Context<'_, S>) {
        if let Some(span) = self.open.lock().remove(&id.into_u64()) {
            self.closed.lock().push(span);
        }
    }
}

impl Capture {
    fn spans(&self) -> Vec<Captured> {
        self.closed.lock().clone()
    }
}

fn traced(stores: Stores) -> (Stores, Capture, tracing::subscriber::DefaultGuard) {
    let capture = Capture::default();
    let subscriber = tracing_subscriber::registry().with(capture.clone());
    let guard = tracing::subscriber::set_default(subscriber);
    (stores.layer(TracingLayer::new()), capture, guard)
}

#[tokio::test]
async fn one_span_per_call_named_after_the_operation() {
    let (stores, capture, _guard) = traced(MemoryBackend::new(StoreEnv::default()).stores());
    let spec = stores
        .cas
        .put(bytes::Bytes::from_static(b"spec"))
        .await
        .unwrap();
    let run = stores
        .runs
        .create_run(spec, RunMetadata::new("agent"))
        .await
        .unwrap();
    let mut event = NewEvent::new("step", json!({"secret": "do-not-log-me"}));
    event.idempotency_key = Some("k1".into());
    stores.runs.append_event(run, event.clone()).await.unwrap();
    stores
        .runs
        .append_event(run, NewEvent::new("step", json!(2)))
        .await
        .unwrap();
    stores.lifecycle.stats().await.unwrap();

    let spans = capture.spans();
    let names: Vec<_> = spans.iter().map(|s| s.name).collect();
    assert_eq!(
        names,
        [
            "cas.put",
            "runs.create_run",
            "runs.append_event",
            "runs.append_event",
            "lifecycle.stats"
        ]
    );
    for span in &spans {
        assert_eq!(span.target, "stowage");
        assert_eq!(span.field("db.system.name"), Some("memory"));
        assert_eq!(span.field("stowage.outcome"), Some("ok"));
        assert_eq!(span.field("error.type"), None);
    }
    let put = &spans[0];
    assert_eq!(put.field("db.collection.name"), Some("cas"));
    assert_eq!(put.field("db.operation.name"), Some("cas.put"));
    assert_eq!(
        put.field("stowage.entity.id"),
        None,
        "a put names no entity up front"
    );

    let first = &spans[2];
    assert_eq!(first.field("db.collection.name"), Some("runs"));
    assert_eq!(first.field("stowage.entity.kind"), Some("run"));
    assert_eq!(
        first.field("stowage.entity.id"),
        Some(run.to_string().as_str())
    );
    assert_eq!(first.field("stowage.seq"), Some("0"));
    assert_eq!(first.field("stowage.idempotency_key"), Some("true"));
    assert_eq!(spans[3].field("stowage.seq"), Some("1"));
    assert_eq!(spans[3].field("stowage.idempotency_key"), Some("false"));

    // No payload anywhere: not the event's JSON, not its kind.
    for span in &spans {
        for value in span.fields.values() {
            assert!(!value.contains("do-not-log-me"), "{span:?}");
            assert!(!value.contains("step"), "{span:?}");
        }
    }
}

#[tokio::test]
async fn errors_record_their_kind() {
    let (stores, capture, _guard) = traced(MemoryBackend::new(StoreEnv::default()).stores());
    let missing = Digest::of(b"missing");
    let err = stores.cas.get(&missing).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let err = stores
        .sessions
        .create_session("", json!({}))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);

    let spans = capture.spans();
    assert_eq!(spans.len(), 2);
    let get = &spans[0];
    assert_eq!(get.name, "cas.get");
    assert_eq!(get.field("stowage.entity.kind"), Some("blob"));
    assert_eq!(
        get.field("stowage.entity.id"),
        Some(missing.to_string().as_str())
    );
    assert_eq!(get.field("stowage.outcome"), Some("error"));
    assert_eq!(get.field("error.type"), Some("not_found"));
    assert_eq!(get.field("otel.status_code"), Some("ERROR"));
    assert_eq!(spans[1].name, "sessions.create_session");
    assert_eq!(spans[1].field("error.type"), Some("invalid_input"));
}

#[tokio::test]
async fn log_entries_and_release_records_carry_their_seq() {
    let (stores, capture, _guard) = traced(MemoryBackend::new(StoreEnv::default()).stores());
    stores
        .sessions
        .create_session("s1", json!({}))
        .await
        .unwrap();
    for n in 0..3u8 {
        let entry = NewLogEntry::new(
            LogKind::Incoming,
            "alice",
            "text",
            bytes::Bytes::from(vec![n]),
        );
        stores.sessions.append_log("s1", entry).await.unwrap();
    }
    let spans = capture.spans();
    let seqs: Vec<_> = spans
        .iter()
        .filter(|s| s.name == "sessions.append_log")
        .map(|s| s.field("stowage.seq").unwrap_or("-").to_owned())
        .collect();
    assert_eq!(seqs, ["0", "1", "2"]);
    assert!(spans
        .iter()
        .all(|s| s.field("stowage.entity.id") == Some("s1")));

    let spec = Digest::of(b"spec");
    for label in ["v1", "v2"] {
        let metadata = ReleaseMetadata::new(label, "ci");
        stores
            .releases
            .promote("prod", spec, metadata, None)
            .await
            .unwrap();
    }
    stores.releases.rollback_to("prod", 0, "ops").await.unwrap();
    let err = stores
        .releases
        .rollback_to("prod", 9, "ops")
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let releases: Vec<_> = capture
        .spans()
        .into_iter()
        .filter(|s| s.field("db.collection.name") == Some("releases"))
        .map(|s| (s.name, s.field("stowage.seq").unwrap_or("-").to_owned()))
        .collect();
    assert_eq!(
        releases,
        [
            ("releases.promote", "0".to_owned()),
            ("releases.promote", "1".to_owned()),
            // The record written is seq 2 (a rollback appends a record).
            ("releases.rollback_to", "2".to_owned()),
            // Failed: the seq the arguments named.
            ("releases.rollback_to", "9".to_owned()),
        ]
    );
}

/// Under a retry layer, each attempt is a span of its own inside the
/// application call's span.
#[tokio::test(start_paused = true)]
async fn attempts_nest_inside_the_call_span() {
    let backend = MemoryBackend::new(StoreEnv::default());
    let (faulty, faults) = FaultInjector::wrap(backend.stores());
    faults.fail_next(Operation::CasPut, ErrorKind::Unavailable);
    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    let stores = faulty
        .layer(TracingLayer::new())
        .layer(RetryLayer::new())
        .layer(TracingLayer::new());
    stores
        .cas
        .put(bytes::Bytes::from_static(b"x"))
        .await
        .unwrap();

    let spans = capture.spans();
    let outcomes: Vec<_> = spans
        .iter()
        .map(|s| (s.name, s.parent, s.field("stowage.outcome").unwrap_or("-")))
        .collect();
    assert_eq!(
        outcomes,
        [
            ("cas.put", Some("cas.put"), "error"),
            ("cas.put", Some("cas.put"), "ok"),
            ("cas.put", None, "ok"),
        ]
    );
    assert_eq!(spans[0].field("error.type"), Some("unavailable"));
}

/// Built before any subscriber exists, the layer still traces once one is
/// installed; a subscriber filtering above `DEBUG` gets no span.
#[tokio::test]
async fn follows_the_subscribers_installed_later_and_their_level() {
    let stores = MemoryBackend::new(StoreEnv::default())
        .stores()
        .layer(TracingLayer::new());
    stores
        .cas
        .put(bytes::Bytes::from_static(b"untraced"))
        .await
        .unwrap();

    let info_only = Capture::default();
    {
        let subscriber = tracing_subscriber::registry()
            .with(tracing_subscriber::filter::LevelFilter::INFO)
            .with(info_only.clone());
        let _guard = tracing::subscriber::set_default(subscriber);
        stores
            .cas
            .put(bytes::Bytes::from_static(b"info"))
            .await
            .unwrap();
    }
    assert!(info_only.spans().is_empty(), "{:?}", info_only.spans());

    let capture = Capture::default();
    let _guard =
        tracing::subscriber::set_default(tracing_subscriber::registry().with(capture.clone()));
    stores
        .cas
        .put(bytes::Bytes::from_static(b"debug"))
        .await
        .unwrap();
    let names: Vec<_> = capture.spans().iter().map(|s| s.name).collect();
    assert_eq!(names, ["cas.put"]);
}
