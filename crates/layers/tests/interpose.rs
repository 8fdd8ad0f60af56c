//! The layering mechanism itself (`stowage_core::layer`): what a `Call`
//! tells an interceptor, how `Proceed` runs a call more than once, and
//! the order of stacked layers.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use serde_json::json;
use stowage_backends::memory::MemoryBackend;
use stowage_core::layer::{interpose, Call, Entity, Interceptor, Layer, Operation, Proceed};
use stowage_core::{Error, ErrorKind, NewEvent, RunMetadata, StoreEnv, Stores};
use stowage_fakes::Recorder;

/// Keeps every call it sees, optionally with its args text.
#[derive(Clone, Default)]
struct Calls {
    seen: Arc<Mutex<Vec<Call>>>,
    args: bool,
}

#[async_trait]
impl Interceptor for Calls {
    async fn around(&self, call: &Call, proceed: Proceed<'_>) -> Option<Error> {
        self.seen.lock().push(call.clone());
        let _ = proceed.await;
        None
    }
    fn wants_args(&self) -> bool {
        self.args
    }
}

fn memory() -> Stores {
    MemoryBackend::new(StoreEnv::default()).stores()
}

#[tokio::test]
async fn a_call_names_its_operation_entity_seq_and_key() {
    let calls = Calls::default();
    let stores = interpose(memory(), Arc::new(calls.clone()));
    let spec = stores.cas.put(Bytes::from_static(b"s")).await.unwrap();
    let run = stores
        .runs
        .create_run(spec, RunMetadata::new("a"))
        .await
        .unwrap();
    let mut event = NewEvent::new("step", json!(1));
    event.idempotency_key = Some("k".into());
    event.expected_seq = Some(0);
    stores.runs.append_event(run, event).await.unwrap();
    let reader: stowage_core::BlobReader = Box::pin(std::io::Cursor::new(b"x".to_vec()));
    stores.cas.put_stream(reader).await.unwrap();

    let seen = calls.seen.lock().clone();
    let append = &seen[2];
    assert_eq!(append.op, Operation::RunsAppendEvent);
    assert_eq!(append.backend, "memory");
    assert_eq!(append.entity, Some(Entity::Run(run)));
    assert_eq!(append.seq, Some(0));
    assert!(append.idempotency_key && append.repeatable && append.safe_to_repeat());
    assert_eq!(
        append.args, "",
        "not formatted for an interceptor that does not want it"
    );
    assert_eq!(seen[0].entity, None);
    assert!(
        !seen[1].safe_to_repeat(),
        "creating a run twice makes two runs"
    );
    assert_eq!(seen[3].op, Operation::CasPutStream);
    assert!(!seen[3].repeatable);

    let wants = Calls {
        args: true,
        ..Calls::default()
    };
    let stores = interpose(memory(), Arc::new(wants.clone()));
    stores.cas.put(Bytes::from_static(b"hello")).await.unwrap();
    assert_eq!(wants.seen.lock()[0].args, "5 bytes");
}

/// Runs every call three times: two attempts, then the last run.
struct Thrice;

#[async_trait]
impl Interceptor for Thrice {
    async fn around(&self, _call: &Call, mut proceed: Proceed<'_>) -> Option<Error> {
        let _ = proceed.attempt().await;
        let _ = proceed.attempt().await;
        let _ = proceed.run().await;
        None
    }
}

#[tokio::test]
async fn a_call_can_run_again_and_the_last_reply_wins() {
    let (recorded, log) = Recorder::wrap(memory());
    let stores = interpose(recorded, Arc::new(Thrice));
    stores
        .sessions
        .create_session("s", json!({}))
        .await
        .unwrap_err();
    let outcomes: Vec<_> = log.calls().into_iter().map(|c| c.outcome).collect();
    assert_eq!(
        outcomes,
        [
            Ok(()),
            Err(ErrorKind::AlreadyExists),
            Err(ErrorKind::AlreadyExists)
        ]
    );
    // Created once, by the first run; the caller got the last reply.
    let loaded = stores.sessions.load_session("s").await.unwrap().unwrap();
    let fresh = memory()
        .sessions
        .create_session("s", json!({}))
        .await
        .unwrap();
    assert_eq!(loaded.version, fresh.version);
}

/// Runs a call after its last run: a bug the interposer reports.
struct AfterLast;

#[async_trait]
impl Interceptor for AfterLast {
    async fn around(&self, _call: &Call, mut proceed: Proceed<'_>) -> Option<Error> {
        let first = proceed.run().await;
        assert_eq!(first, Ok(()));
        let again = proceed.attempt().await;
        assert_eq!(again, Err(ErrorKind::Internal));
        None
    }
}

#[tokio::test]
async fn running_after_the_last_run_is_internal_and_reaches_nothing() {
    let (recorded, log) = Recorder::wrap(memory());
    let stores = interpose(recorded, Arc::new(AfterLast));
    let err = stores.cas.put(Bytes::from_static(b"x")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal);
    assert!(err.message().contains("cas.put"), "{err}");
    assert_eq!(log.len(), 1, "the wrapped store saw one call");
}

/// Appends its name to a shared trace before and after each call.
#[derive(Clone)]
struct Named(&'static str, Arc<Mutex<Vec<String>>>);

#[async_trait]
impl Interceptor for Named {
    async fn around(&self, _call: &Call, proceed: Proceed<'_>) -> Option<Error> {
        self.1.lock().push(format!("{} in", self.0));
        let _ = proceed.await;
        self.1.lock().push(format!("{} out", self.0));
        None
    }
}

impl Layer for Named {
    fn layer(&self, stores: Stores) -> Stores {
        interpose(stores, Arc::new(self.clone()))
    }
}

#[tokio::test]
async fn the_last_layer_applied_is_the_outermost() {
    let trace = Arc::new(Mutex::new(Vec::new()));
    let b = Named("b", trace.clone());
    let stores = memory()
        .layer(Named("a", trace.clone()))
        .layer(&b)
        .layer(Arc::new(Named("c", trace.clone())));
    stores.cas.put(Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(
        *trace.lock(),
        ["c in", "b in", "a in", "a out", "b out", "c out"]
    );
    assert_eq!(stores.capabilities.backend, "memory");
}

/// Counts the calls it handles; skips every read.
#[derive(Clone, Default)]
struct WritesOnly(Arc<Mutex<Vec<Operation>>>);

#[async_trait]
impl Interceptor for WritesOnly {
    async fn around(&self, call: &Call, proceed: Proceed<'_>) -> Option<Error> {
        self.0.lock().push(call.op);
        let _ = proceed.await;
        None
    }
    fn skips(&self, call: &Call) -> bool {
        !call.op.is_write()
    }
}

#[tokio::test]
async fn skipped_calls_bypass_the_interceptor_and_still_run() {
    let seen = WritesOnly::default();
    let stores = interpose(memory(), Arc::new(seen.clone()));
    let digest = stores.cas.put(Bytes::from_static(b"x")).await.unwrap();
    assert_eq!(
        stores.cas.get(&digest).await.unwrap(),
        Bytes::from_static(b"x")
    );
    let err = stores
        .cas
        .get(&stowage_core::Digest::of(b"y"))
        .await
        .unwrap_err();
    assert_eq!(
        err.kind(),
        ErrorKind::NotFound,
        "errors of skipped calls pass as is"
    );
    assert!(stores.cas.delete(&digest).await.unwrap());
    assert_eq!(*seen.0.lock(), [Operation::CasPut, Operation::CasDelete]);
}
