//! Store statistics and compaction.

use bytes::Bytes;
use serde_json::json;
use stowage_core::lifecycle::{IfRunning, StoreStats};

use crate::harness::Harness;
use crate::util::{assertion, entry, event, meta, ok, open, rmeta, signer, spec, superseding};

/// `stats` counts what is stored, exactly, and follows deletions.
pub async fn stats_count_what_is_stored(h: &dyn Harness) {
    let s = open(h).await;
    let empty = ok(s.lifecycle.stats().await, "stats of an empty store");
    assert_eq!(
        (
            empty.runs,
            empty.run_events,
            empty.sessions,
            empty.log_entries,
            empty.blobs,
            empty.blob_bytes
        ),
        (0, 0, 0, 0, 0, 0),
        "an empty store counts nothing: {empty:?}"
    );
    let mut runs = Vec::new();
    for _ in 0..2 {
        let id = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
        for n in 0..3 {
            ok(
                s.runs.append_event(id, event("step", n)).await,
                "append_event",
            );
        }
        runs.push(id);
    }
    for id in ["s1", "s2"] {
        ok(
            s.sessions.create_session(id, json!(null)).await,
            "create_session",
        );
        ok(s.sessions.append_log(id, entry("x")).await, "append_log");
    }
    ok(s.sessions.append_log("s1", entry("y")).await, "append_log");
    for text in ["one", "two", "three"] {
        ok(s.cas.put(Bytes::from(text)).await, "put");
    }
    ok(
        s.releases.promote("prod", spec(1), rmeta("v1"), None).await,
        "promote",
    );
    ok(
        s.releases.promote("prod", spec(2), rmeta("v2"), None).await,
        "promote",
    );
    ok(
        s.releases.promote("dev", spec(2), rmeta("v1"), None).await,
        "promote",
    );
    ok(
        s.supersessions
            .put(superseding(&signer(1), assertion(1), None, 5))
            .await,
        "supersessions.put",
    );
    let stats: StoreStats = ok(s.lifecycle.stats().await, "stats");
    assert_eq!((stats.runs, stats.run_events), (2, 6), "{stats:?}");
    assert_eq!((stats.sessions, stats.log_entries), (2, 3), "{stats:?}");
    assert_eq!(
        (stats.release_names, stats.release_records),
        (2, 3),
        "{stats:?}"
    );
    assert_eq!(stats.supersessions, 1, "{stats:?}");
    assert_eq!(stats.blobs, 3, "{stats:?}");
    assert!(
        stats.blob_bytes >= 11,
        "blob bytes cover the content: {stats:?}"
    );
    assert!(stats.stored_bytes >= stats.blob_bytes, "{stats:?}");
    ok(
        s.lifecycle.delete_run(runs[0], IfRunning::Delete).await,
        "delete_run",
    );
    ok(s.sessions.delete_session("s1").await, "delete_session");
    let after = ok(s.lifecycle.stats().await, "stats after deletions");
    assert_eq!(
        (
            after.runs,
            after.run_events,
            after.sessions,
            after.log_entries
        ),
        (1, 3, 1, 1),
        "{after:?}"
    );
}

/// `compact` after deletions keeps every remaining record readable and
/// changes no count.
pub async fn compact_keeps_what_remains(h: &dyn Harness) {
    let s = open(h).await;
    let mut runs = Vec::new();
    for n in 0..6 {
        let id = ok(s.runs.create_run(spec(n), meta("a")).await, "create_run");
        for e in 0..20 {
            ok(
                s.runs.append_event(id, event("step", e)).await,
                "append_event",
            );
        }
        runs.push(id);
    }
    let mut blobs = Vec::new();
    for n in 0..6u8 {
        blobs.push(ok(s.cas.put(Bytes::from(vec![n; 10_000])).await, "put"));
    }
    for id in &runs[..3] {
        ok(
            s.lifecycle.delete_run(*id, IfRunning::Delete).await,
            "delete_run",
        );
    }
    for digest in &blobs[..3] {
        ok(s.cas.delete(digest).await, "cas.delete");
    }
    let before = ok(s.lifecycle.stats().await, "stats");
    ok(s.lifecycle.compact().await, "compact");
    ok(s.lifecycle.compact().await, "compact again");
    let after = ok(s.lifecycle.stats().await, "stats after compact");
    assert_eq!(
        (after.runs, after.run_events, after.blobs, after.blob_bytes),
        (
            before.runs,
            before.run_events,
            before.blobs,
            before.blob_bytes
        ),
        "compaction changes no count"
    );
    for id in &runs[3..] {
        let events = ok(
            s.runs.read_events(*id, None, 100).await,
            "read_events after compact",
        );
        assert_eq!(events.len(), 20);
        ok(s.runs.verify_run(*id).await, "verify_run after compact");
    }
    for (n, digest) in (3u8..).zip(&blobs[3..]) {
        assert_eq!(
            ok(s.cas.get(digest).await, "get after compact"),
            vec![n; 10_000]
        );
    }
    // Writes go on afterwards.
    ok(
        s.runs.append_event(runs[3], event("after", 0)).await,
        "append after compact",
    );
}
