//! `stowage compact`: the space of deleted runs goes back to the file
//! system, what is kept stays intact, and the report says how much.

mod support;

use serde_json::{json, Value};
use stowage_core::lifecycle::IfRunning;
use stowage_core::{Digest, NewEvent, RunFilter, RunId, RunMetadata, Stores};
use support::*;

/// Runs with `events` events each, with payloads that compress.
async fn runs(stores: &Stores, count: usize, events: u64) -> Vec<RunId> {
    let mut ids = Vec::new();
    for r in 0..count {
        let id = stores
            .runs
            .create_run(Digest::of(&r.to_be_bytes()), RunMetadata::new("agent"))
            .await
            .unwrap();
        for i in 0..events {
            let payload = json!({"step": i, "note": "the tool call returned the same shape again"});
            stores
                .runs
                .append_event(id, NewEvent::new("step", payload))
                .await
                .unwrap();
        }
        ids.push(id);
    }
    ids
}

fn report(out: &str) -> Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compact_returns_the_space_of_deleted_runs_and_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(dir.path());
    let kept = with_store(&url, async |stores: &Stores| {
        let ids = runs(stores, 20, 200).await;
        for id in &ids[1..] {
            assert!(stores
                .lifecycle
                .delete_run(*id, IfRunning::Delete)
                .await
                .unwrap());
        }
        ids[0]
    })
    .await;

    let out = ok(&stowage(&["compact", &url, "--json"]));
    let r = report(&out);
    let before = r["bytes_before"]
        .as_u64()
        .expect("a local store is measured");
    let after = r["bytes_after"]
        .as_u64()
        .expect("a local store is measured");
    assert!(
        after * 4 < before,
        "19 of 20 runs were deleted, yet {before} → {after} bytes: {out}"
    );
    assert!(r["seconds"].as_f64().is_some(), "{out}");
    assert!(r["url"].as_str().unwrap().starts_with("file://"), "{out}");

    with_store(&url, async |stores: &Stores| {
        let all = stores
            .runs
            .list_runs(&RunFilter::all(), None, 100)
            .await
            .unwrap();
        assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![kept]);
        let events = stores.runs.read_events(kept, None, 1000).await.unwrap();
        assert_eq!(events.len(), 200);
        assert_eq!(stores.runs.verify_run(kept).await.unwrap().len, 200);
    })
    .await;
    ok(&stowage(&["verify", &url]));

    // Text output names the store and the sizes; a second run has
    // nothing left to reclaim and still succeeds.
    let text = ok(&stowage(&["compact", &url]));
    assert!(text.starts_with("compacted file://"), "{text}");
    assert!(text.contains("on disk"), "{text}");
}

#[test]
fn compact_refuses_a_store_that_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let url = file_url(&dir.path().join("missing"));
    let err = fails(&stowage(&["compact", &url]), 1);
    assert!(err.starts_with("error: not_found: "), "{err}");
    assert!(!dir.path().join("missing").exists(), "nothing was created");
}
