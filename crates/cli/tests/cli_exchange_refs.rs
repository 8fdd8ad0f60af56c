//! `stowage export` / `stowage import` of blob references (pins, the blobs
//! runs declared): carried as `blob_ref` lines and recreated, so garbage
//! collection in the target keeps what it kept in the source.

mod support;

use bytes::Bytes;
use serde_json::json;
use stowage_backends::memory::MemoryBackend;
use stowage_cli::export::{export, JsonlSink, SupersessionPolicy};
use stowage_cli::import::{feed, Importer};
use stowage_core::lifecycle::{BlobGc, Referrer};
use stowage_core::{Digest, ErrorKind, NewEvent, RunMetadata, RunSummary, StoreEnv, Stores};
use support::*;

/// The export of `stores`, in memory.
async fn export_bytes(stores: &Stores) -> Vec<u8> {
    let mut sink = JsonlSink::new(Vec::new());
    export(stores, &mut sink, SupersessionPolicy::Require)
        .await
        .unwrap();
    sink.finish().unwrap()
}

/// Imports `bytes` into a fresh memory store: the importer (holding the
/// target) and how the import ended.
async fn import_to_memory(bytes: &[u8]) -> (Importer, stowage_core::Result<()>) {
    let mut importer = Importer::open("memory://").await.unwrap();
    let fed = feed(bytes, &mut importer).await;
    let done = fed.and_then(|()| importer.finish().map(drop));
    (importer, done)
}

/// Collects every unreferenced blob of `s`, with no grace period.
async fn collect_all(s: &Stores) {
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    let mut after = None;
    loop {
        let sweep = s
            .lifecycle
            .gc_blobs(&BlobGc::grace(std::time::Duration::ZERO), after.as_ref())
            .await
            .unwrap();
        match sweep.next {
            Some(next) => after = Some(next),
            None => return,
        }
    }
}

/// Pins and the blobs a run's events declared are references only (not
/// part of any record); export carries them as `blob_ref` lines and
/// import recreates them, so garbage collection in the target keeps what
/// it kept in the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pins_and_declared_blob_references_survive_export_and_import() {
    let dir = tempfile::tempdir().unwrap();
    let source = file_url(&dir.path().join("source"));
    let (pinned, declared, run) = with_store(&source, async |s| {
        let pinned = s.cas.put(Bytes::from_static(b"golden set")).await.unwrap();
        let declared = s.cas.put(Bytes::from_static(b"tool output")).await.unwrap();
        s.cas.put(Bytes::from_static(b"litter")).await.unwrap();
        s.lifecycle.pin_blob(&pinned, "golden").await.unwrap();
        let run = s
            .runs
            .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
            .await
            .unwrap();
        let event = NewEvent::new("tool_call", json!({"n": 1})).with_blobs([declared]);
        s.runs.append_event(run, event).await.unwrap();
        (pinned, declared, run)
    })
    .await;
    let file = dir.path().join("refs.jsonl");
    ok(&stowage(&["export", &source, file.to_str().unwrap()]));
    let lines = std::fs::read_to_string(&file).unwrap();
    assert_eq!(lines.matches("\"type\":\"blob_ref\"").count(), 2, "{lines}");

    let target = file_url(&dir.path().join("target"));
    ok(&stowage(&["import", &target, file.to_str().unwrap()]));
    with_store(&target, async |s| {
        let referrers = s.lifecycle.blob_referrers(&pinned).await.unwrap();
        assert!(
            referrers.contains(&Referrer::Pin("golden".into())),
            "{referrers:?}"
        );
        let referrers = s.lifecycle.blob_referrers(&declared).await.unwrap();
        assert!(referrers.contains(&Referrer::Run(run)), "{referrers:?}");
        collect_all(s).await;
        assert!(
            s.cas.contains(&pinned).await.unwrap(),
            "the pinned blob is kept"
        );
        assert!(
            s.cas.contains(&declared).await.unwrap(),
            "the declared blob is kept"
        );
        assert!(!s.cas.contains(&Digest::of(b"litter")).await.unwrap());
    })
    .await;
}

/// Found by review: `blob_referrers` listed at most 10 000 index entries,
/// and a spec blob's runs sort before its pins, so a pin on the spec of an
/// agent version with 10 000 runs was not exported (nor shown by
/// `stowage referrers`), and the target's gc could delete the blob.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pin_on_a_popular_spec_is_exported() {
    let s = MemoryBackend::new(StoreEnv::default()).stores();
    let spec = s
        .cas
        .put(Bytes::from_static(b"planner spec"))
        .await
        .unwrap();
    for _ in 0..10_000 {
        let meta = RunMetadata::new("planner");
        s.runs.create_run(spec, meta).await.unwrap();
    }
    s.lifecycle.pin_blob(&spec, "golden").await.unwrap();
    let file = String::from_utf8(export_bytes(&s).await).unwrap();
    let pin = format!(r#""digest":"{spec}","referrer":{{"kind":"pin","label":"golden"}}"#);
    assert_eq!(file.matches(&pin).count(), 1, "the pin's blob_ref line");
    let (importer, done) = import_to_memory(file.as_bytes()).await;
    done.unwrap();
    let referrers = importer.stores().lifecycle.blob_referrers(&spec).await;
    assert_eq!(
        referrers.unwrap().last(),
        Some(&Referrer::Pin("golden".into()))
    );
}

/// Found by review: the importer declared a run's references on its
/// events, at most 1 024 each, counting its spec (which `create_run`
/// declares anyway), and dropped the rest silently: a run whose one event
/// declared 1 024 blobs lost one, and the target's gc deleted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_declared_blob_stays_referenced_after_import() {
    let s = MemoryBackend::new(StoreEnv::default()).stores();
    let mut blobs = Vec::new();
    for i in 0..1024u32 {
        let bytes = Bytes::from(format!("tool output {i}"));
        blobs.push(s.cas.put(bytes).await.unwrap());
    }
    // A spec that sorts below the largest event blob, so that one would
    // be the reference left over.
    let max = *blobs.iter().max().unwrap();
    let spec = (0..)
        .map(|i| Bytes::from(format!("spec {i}")))
        .find(|b| Digest::of(b) < max)
        .unwrap();
    let spec = s.cas.put(spec).await.unwrap();
    let run = s
        .runs
        .create_run(spec, RunMetadata::new("a"))
        .await
        .unwrap();
    let event = NewEvent::new("tool", json!({})).with_blobs(blobs.iter().copied());
    s.runs.append_event(run, event).await.unwrap();
    s.runs
        .complete_run(run, RunSummary::new("done"))
        .await
        .unwrap();

    let (importer, done) = import_to_memory(&export_bytes(&s).await).await;
    done.unwrap();
    let t = importer.stores();
    collect_all(t).await;
    for b in blobs.iter().chain([&spec]) {
        assert!(t.cas.contains(b).await.unwrap(), "run {run} references {b}");
    }
}

/// Found by review (with the test above): references a run's events
/// cannot declare are an error naming the run, before the run is created,
/// never dropped silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_references_its_events_cannot_declare_are_refused() {
    let s = MemoryBackend::new(StoreEnv::default()).stores();
    let spec = s.cas.put(Bytes::from_static(b"spec")).await.unwrap();
    let output = s.cas.put(Bytes::from_static(b"output")).await.unwrap();
    let run = s
        .runs
        .create_run(spec, RunMetadata::new("a"))
        .await
        .unwrap();
    // A run with no events, yet the file says it references `output`.
    let file = String::from_utf8(export_bytes(&s).await).unwrap();
    let spec_ref = format!(r#"{{"type":"blob_ref","digest":"{spec}","#);
    let line = file.lines().find(|l| l.starts_with(&spec_ref)).unwrap();
    let forged = line.replace(&spec.to_string(), &output.to_string());
    let file = file.replacen(line, &format!("{line}\n{forged}"), 1);
    let file = file.replace(r#""blob_refs":1"#, r#""blob_refs":2"#);

    let (importer, done) = import_to_memory(file.as_bytes()).await;
    let err = done.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.to_string().contains(&run.to_string()), "{err}");
    let created = importer.stores().runs.get_run(run).await;
    assert_eq!(created.unwrap_err().kind(), ErrorKind::NotFound);
}

/// Found by review (with the lost pin above): parity compared blobs by
/// size only, so `migrate` reported a target that had lost a pin as equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parity_compares_pins() {
    use stowage_cli::migrate::{fingerprint, ParityReport};
    let (a, b) = (
        MemoryBackend::new(StoreEnv::default()).stores(),
        MemoryBackend::new(StoreEnv::default()).stores(),
    );
    for s in [&a, &b] {
        s.cas.put(Bytes::from_static(b"golden set")).await.unwrap();
    }
    a.lifecycle
        .pin_blob(&Digest::of(b"golden set"), "golden")
        .await
        .unwrap();
    let report = ParityReport::compare(
        &fingerprint(&a).await.unwrap(),
        &fingerprint(&b).await.unwrap(),
    );
    assert_eq!(report.differences.len(), 1, "{report:?}");
    let source = report.differences[0].source.as_deref().unwrap();
    assert!(source.contains("golden"), "{source}");
}
