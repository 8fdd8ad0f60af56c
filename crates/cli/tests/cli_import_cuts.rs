//! An import of an export cut after *every* line (in-process, so each cut
//! is deterministic): it stores no partial blob, and importing the whole
//! file afterwards gives exactly the source. Regression test for blobs
//! whose truncated upload was committed as a blob of the bytes received
//! so far (an extra blob in the target). Also: a blob whose bytes do not
//! match its digest stores nothing.

mod support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use stowage_cli::export::{export, JsonlSink, SupersessionPolicy};
use stowage_cli::import::{feed, Importer};
use stowage_cli::migrate::fingerprint;
use stowage_core::ErrorKind;
use support::*;

/// Waits (bounded) until no more tasks are alive than `baseline`, so
/// whatever an abandoned import left running has finished before the
/// target is looked at.
async fn settle(baseline: usize) {
    let metrics = tokio::runtime::Handle::current().metrics();
    let deadline = Instant::now() + Duration::from_secs(10);
    while metrics.num_alive_tasks() > baseline && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn import(url: &str, bytes: &[u8]) -> (stowage_core::Result<()>, Importer) {
    let mut importer = Importer::open(url).await.unwrap();
    let fed = feed(bytes, &mut importer).await;
    (fed, importer)
}

/// Cuts the export of a populated file store after each line, imports
/// the part into `target(cut)`, then the whole file.
async fn every_cut_point(target: impl Fn(usize) -> String) {
    let dir = tempfile::tempdir().unwrap();
    let src = file_url(&dir.path().join("src"));
    let (full, source_print) = with_store(&src, async |s| {
        populate(s).await;
        let mut sink = JsonlSink::new(Vec::new());
        export(s, &mut sink, SupersessionPolicy::Require)
            .await
            .unwrap();
        (sink.finish().unwrap(), fingerprint(s).await.unwrap())
    })
    .await;
    let source_blobs: BTreeSet<&String> = source_print
        .entities
        .keys()
        .filter(|k| k.starts_with("blob "))
        .collect();
    let text = String::from_utf8(full.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines
            .iter()
            .filter(|l| l.contains("\"type\":\"chunk\""))
            .count()
            >= 5,
        "the export has a blob of several chunks"
    );
    for cut in 1..lines.len() {
        let url = target(cut);
        let part = format!("{}\n", lines[..cut].join("\n"));
        let baseline = tokio::runtime::Handle::current()
            .metrics()
            .num_alive_tasks();
        let (fed, importer) = import(&url, part.as_bytes()).await;
        fed.unwrap_or_else(|e| panic!("cut after line {cut}: {e}"));
        let err = importer.finish().unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "cut {cut}: {err}");
        drop(importer);
        settle(baseline).await;

        // Only whole source blobs, each intact, are in the target.
        with_store(&url, async |s| {
            for d in s.cas.list(None, 1000).await.unwrap() {
                assert!(
                    source_blobs.contains(&format!("blob {d}")),
                    "cut after line {cut} ({}): the target holds blob {d}, which is not in \
                     the source (a partial upload was stored)",
                    lines[cut - 1].get(..40).unwrap_or(lines[cut - 1])
                );
                s.cas.verify(&d).await.unwrap();
            }
        })
        .await;

        let (fed, importer) = import(&url, &full).await;
        fed.unwrap_or_else(|e| panic!("re-import after a cut at line {cut}: {e}"));
        importer.finish().unwrap();
        drop(importer);
        let print = with_store(&url, async |s| fingerprint(s).await.unwrap()).await;
        let differ: Vec<_> = print
            .entities
            .iter()
            .filter(|(k, v)| source_print.entities.get(*k) != Some(*v))
            .chain(
                source_print
                    .entities
                    .iter()
                    .filter(|(k, _)| !print.entities.contains_key(*k)),
            )
            .collect();
        assert!(
            differ.is_empty() && print == source_print,
            "cut after line {cut}: the finished import differs from the source: {differ:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_store_import_cut_after_any_line_stores_no_partial_blob() {
    let dir = tempfile::tempdir().unwrap();
    every_cut_point(|cut| file_url(&dir.path().join(format!("t{cut}")))).await;
}

#[cfg(feature = "redis")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_import_cut_after_any_line_stores_no_partial_blob() {
    every_cut_point(|cut| support::redis_server::fresh_url(&format!("cut{cut}"))).await;
}

/// Found by review: a blob whose chunks hash to another digest than its
/// line claims was refused only after the upload completed, so the bytes
/// were stored anyway. They are hashed as they pass, and a mismatch drops
/// the upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_with_the_wrong_bytes_stores_nothing() {
    use stowage_cli::format::{Coverage, Header, Record};
    let header = Record::Header(Header::new("memory", Coverage::Included));
    let claimed = stowage_core::Digest::of(b"a");
    let file = format!(
        "{}\n{{\"type\":\"blob\",\"digest\":\"{claimed}\",\"size\":1}}\n\
         {{\"type\":\"chunk\",\"data\":\"Yg==\"}}\n",
        header.to_line().unwrap()
    );
    let (fed, importer) = import("memory://", file.as_bytes()).await;
    let err = fed.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert!(err.to_string().contains("hash to"), "{err}");
    let stored = importer.stores().cas.list(None, 10).await.unwrap();
    assert!(stored.is_empty(), "the target holds {stored:?}");
}
