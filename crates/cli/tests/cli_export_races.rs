//! Exports taken while other processes write to the store: appends, log
//! replacements and deletions (retention, gc) that land between the
//! exporter's reads. Whatever happens meanwhile, the file imports cleanly
//! and its end line counts what it holds. Found by review.
#![allow(missing_docs)]

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::FutureExt;
use serde_json::json;
use stowage_cli::export::{export, JsonlSink, SupersessionPolicy};
use stowage_cli::format::Counts;
use stowage_cli::import::{feed, Importer};
use stowage_core::layer::{interpose, Call, Interceptor, Operation, Proceed};
use stowage_core::lifecycle::IfRunning;
use stowage_core::{Error, LogKind, NewEvent, NewLogEntry, RunMetadata, RunSummary, Stores};

type Action = Box<dyn Fn(Stores) -> BoxFuture<'static, ()> + Send + Sync>;

/// Does `action` to the unwrapped store just before the exporter's first
/// call `op`: a writer or a sweep racing the export.
struct Meanwhile {
    op: Operation,
    inner: Stores,
    fired: AtomicBool,
    action: Action,
}

#[async_trait]
impl Interceptor for Meanwhile {
    async fn around(&self, call: &Call, proceed: Proceed<'_>) -> Option<Error> {
        if call.op == self.op && !self.fired.swap(true, Ordering::SeqCst) {
            (self.action)(self.inner.clone()).await;
        }
        let _ = proceed.await;
        None
    }
}

/// `inner`, with `action` done to it before the first call `op`.
fn racing(
    inner: &Stores,
    op: Operation,
    action: impl Fn(Stores) -> BoxFuture<'static, ()> + Send + Sync + 'static,
) -> Stores {
    let meanwhile = Meanwhile {
        op,
        inner: inner.clone(),
        fired: AtomicBool::new(false),
        action: Box::new(action),
    };
    interpose(inner.clone(), Arc::new(meanwhile))
}

/// Exports `stores`, imports the file into a new memory store and returns
/// the export's counts with the target; panics when either fails or the
/// counts differ.
async fn export_and_import(stores: &Stores) -> (Counts, Stores) {
    let mut sink = JsonlSink::new(Vec::new());
    let counts = export(stores, &mut sink, SupersessionPolicy::Require)
        .await
        .expect("the export succeeds");
    let file = sink.finish().unwrap();
    let mut importer = Importer::open("memory://").await.unwrap();
    feed(&file[..], &mut importer)
        .await
        .expect("the export imports");
    let imported = importer.finish().unwrap();
    assert_eq!(imported, counts, "the import holds what the export counted");
    (counts, importer.stores().clone())
}

fn entry(payload: &'static [u8]) -> NewLogEntry {
    NewLogEntry::new(LogKind::Incoming, "user", "text", payload)
}

/// An append landing between the exporter's reads of a session's log and
/// record used to give a record saying N+1 entries followed by N: the
/// import refused it as a conflict every time. The record and its log now
/// agree (the late entry is left out). Found by review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_a_session_appended_to_meanwhile_imports() {
    let inner = stowage_backends::open("memory://").await.unwrap();
    inner.sessions.create_session("s", json!({})).await.unwrap();
    for payload in [&b"one"[..], b"two"] {
        inner
            .sessions
            .append_log("s", entry(payload))
            .await
            .unwrap();
    }
    for op in [Operation::SessionsLoadSession, Operation::SessionsReadLog] {
        let stores = racing(&inner, op, |s| {
            async move {
                s.sessions.append_log("s", entry(b"late")).await.unwrap();
            }
            .boxed()
        });
        let (counts, target) = export_and_import(&stores).await;
        let session = target.sessions.load_session("s").await.unwrap().unwrap();
        assert_eq!(session.log_len, counts.log_entries, "after {op}");
    }
}

/// A log replaced while the exporter reads it is read again: the file
/// holds the new log with the record that names it. Found by review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_of_a_session_whose_log_is_replaced_meanwhile_imports() {
    let inner = stowage_backends::open("memory://").await.unwrap();
    inner.sessions.create_session("s", json!({})).await.unwrap();
    inner.sessions.append_log("s", entry(b"old")).await.unwrap();
    let stores = racing(&inner, Operation::SessionsReadLog, |s| {
        async move {
            let new = vec![entry(b"new"), entry(b"newer")];
            s.sessions.replace_log("s", new, None).await.unwrap();
        }
        .boxed()
    });
    let (counts, target) = export_and_import(&stores).await;
    assert_eq!(counts.log_entries, 2);
    let log = target.sessions.read_log("s", None, 10).await.unwrap();
    assert_eq!(log[0].payload, Bytes::from_static(b"new"));
}

/// A session deleted (by prune-sessions, say) after it was listed used to
/// fail the whole export with NotFound; it is left out. Found by review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_skips_a_session_deleted_meanwhile() {
    for op in [Operation::SessionsLoadSession, Operation::SessionsReadLog] {
        let inner = stowage_backends::open("memory://").await.unwrap();
        for id in ["gone", "kept"] {
            inner.sessions.create_session(id, json!({})).await.unwrap();
            inner.sessions.append_log(id, entry(b"hi")).await.unwrap();
        }
        let stores = racing(&inner, op, |s| {
            async move {
                s.sessions.delete_session("gone").await.unwrap();
            }
            .boxed()
        });
        let (counts, target) = export_and_import(&stores).await;
        assert_eq!((counts.sessions, counts.log_entries), (1, 1), "after {op}");
        assert!(target
            .sessions
            .load_session("kept")
            .await
            .unwrap()
            .is_some());
    }
}

/// Runs pruned after they were listed are left out too, rather than
/// failing the export (before the run's record or its first events are
/// read). Found by review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_skips_a_run_deleted_meanwhile() {
    for op in [Operation::RunsGetRun, Operation::RunsReadEvents] {
        let inner = stowage_backends::open("memory://").await.unwrap();
        let spec = inner.cas.put(Bytes::from_static(b"spec")).await.unwrap();
        let mut runs = Vec::new();
        for _ in 0..2 {
            let run = inner
                .runs
                .create_run(spec, RunMetadata::new("a"))
                .await
                .unwrap();
            let event = NewEvent::new("tool", json!({}));
            inner.runs.append_event(run, event).await.unwrap();
            let summary = RunSummary::new("done");
            inner.runs.complete_run(run, summary).await.unwrap();
            runs.push(run);
        }
        let first = *runs.iter().min().unwrap();
        let stores = racing(&inner, op, move |s| {
            async move {
                let deleted = s.lifecycle.delete_run(first, IfRunning::Keep).await;
                assert!(deleted.unwrap());
            }
            .boxed()
        });
        let (counts, _) = export_and_import(&stores).await;
        assert_eq!((counts.runs, counts.events), (1, 1), "after {op}");
    }
}

/// Blobs collected after they were listed are left out too. Found by
/// review.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_skips_a_blob_deleted_meanwhile() {
    for op in [Operation::CasStat, Operation::CasGetStream] {
        let inner = stowage_backends::open("memory://").await.unwrap();
        for blob in [&b"one"[..], b"two"] {
            inner.cas.put(Bytes::from_static(blob)).await.unwrap();
        }
        let first = inner.cas.list(None, 1).await.unwrap()[0];
        let stores = racing(&inner, op, move |s| {
            async move {
                assert!(s.cas.delete(&first).await.unwrap());
            }
            .boxed()
        });
        let (counts, _) = export_and_import(&stores).await;
        assert_eq!((counts.blobs, counts.blob_bytes), (1, 3), "after {op}");
    }
}
