//! Lifecycle rules that the conformance suite cannot reach through the
//! public API: a store written before the blob reference index existed.

use std::time::Duration;

use bytes::Bytes;

use super::{mem_stores, scan};
use crate::engine::{keys, Engine, Scope, Table};
use crate::lifecycle::BlobGc;
use crate::{ReleaseMetadata, RunMetadata, RunSummary};

/// Removes every reference entry and the index marker, as in a store
/// written before references were recorded.
async fn forget_references(engine: &crate::engine::MemoryEngine) {
    engine
        .write(
            Scope::Unshared,
            Box::new(|txn| {
                txn.delete_range(Table::BlobRefs, Vec::new(), vec![0xFF; 40])?;
                txn.delete(Table::Meta, keys::refs_indexed())
            }),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
}

#[tokio::test]
async fn collection_first_indexes_what_older_stores_reference() {
    let (s, engine) = mem_stores();
    let spec = s.cas.put(Bytes::from_static(b"spec")).await.unwrap();
    let output = s.cas.put(Bytes::from_static(b"output")).await.unwrap();
    let released = s.cas.put(Bytes::from_static(b"released")).await.unwrap();
    let garbage = s.cas.put(Bytes::from_static(b"garbage")).await.unwrap();
    let run = s
        .runs
        .create_run(spec, RunMetadata::new("a"))
        .await
        .unwrap();
    let summary = RunSummary::new("done").with_blobs([output]);
    s.runs.complete_run(run, summary).await.unwrap();
    let meta = ReleaseMetadata::new("v1", "ci");
    s.releases
        .promote("prod", released, meta, None)
        .await
        .unwrap();
    forget_references(&engine).await;
    assert!(scan(&engine, Table::BlobRefs, &[], None, 10)
        .await
        .is_empty());
    tokio::time::sleep(Duration::from_millis(5)).await;

    let sweep = s
        .lifecycle
        .gc_blobs(&BlobGc::grace(Duration::ZERO), None)
        .await
        .unwrap();
    assert_eq!(sweep.affected, 1, "only the unreferenced blob goes");
    for kept in [spec, output, released] {
        assert!(
            s.cas.contains(&kept).await.unwrap(),
            "an old reference was not honoured"
        );
    }
    assert!(!s.cas.contains(&garbage).await.unwrap());
    let marker = scan(&engine, Table::Meta, &keys::refs_indexed(), None, 1).await;
    assert_eq!(marker.len(), 1, "the index is marked complete");
}
