//! `stores.lifecycle` on Redis: forks and statistics (exact counts after
//! a workload and after deletes), statistics also on a 3-node cluster,
//! where the counters are kept by a second step. See `redis_lifecycle.rs`.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

#[path = "support/lifecycle.rs"]
mod lifecycle;

use bytes::Bytes;
use serde_json::json;
use stowage_core::lifecycle::{IfRunning, Referrer};
use stowage_core::{
    Digest, ErrorKind, NewEvent, ReleaseMetadata, RunMetadata, SessionState, Timestamp,
};

use lifecycle::{entry, open_at, standalone, sup, Clock, T0};

#[tokio::test]
async fn forks_copy_a_session_and_a_release_history() {
    let clock = Clock::at(T0);
    let s = open_at(&standalone("fork"), &clock).await;
    s.sessions
        .create_session("src", json!({"k": 1}))
        .await
        .unwrap();
    for n in 0..4 {
        let mut e = entry(n);
        if n == 2 {
            e = e.with_idempotency_key("m2");
        }
        s.sessions.append_log("src", e).await.unwrap();
    }
    s.sessions
        .set_session_state("src", SessionState::Suspended, None)
        .await
        .unwrap();
    clock.set(T0 + 5);
    let copy = s.lifecycle.fork_session("src", "dst").await.unwrap();
    assert_eq!(
        (copy.id.as_str(), copy.version, copy.log_len),
        ("dst", 1, 4)
    );
    assert_eq!(
        (copy.state, copy.created_at),
        (SessionState::Suspended, Timestamp::from_millis(T0 + 5))
    );
    assert_eq!(s.sessions.load_session("dst").await.unwrap().unwrap(), copy);
    assert_eq!(s.sessions.verify_log("dst").await.unwrap().len, 4);
    let (a, b) = (
        s.sessions.read_log("src", None, 10).await.unwrap(),
        s.sessions.read_log("dst", None, 10).await.unwrap(),
    );
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (&x.payload, x.timestamp, &x.idempotency_key),
            (&y.payload, y.timestamp, &y.idempotency_key)
        );
        assert_eq!(y.session_id, "dst");
    }
    // The copy keeps the idempotency keys and takes appends of its own.
    let again = s
        .sessions
        .append_log("dst", entry(2).with_idempotency_key("m2"))
        .await
        .unwrap();
    assert_eq!(again.seq, 2);
    s.sessions
        .set_session_state("dst", SessionState::Open, None)
        .await
        .unwrap();
    assert_eq!(s.sessions.append_log("dst", entry(9)).await.unwrap().seq, 4);
    assert_eq!(
        s.sessions
            .load_session("src")
            .await
            .unwrap()
            .unwrap()
            .log_len,
        4
    );
    assert!(s
        .sessions
        .list_sessions(None, 10)
        .await
        .unwrap()
        .iter()
        .any(|x| x.id == "dst"));
    fn kind<T: std::fmt::Debug>(r: stowage_core::Result<T>) -> ErrorKind {
        r.unwrap_err().kind()
    }
    assert_eq!(
        kind(s.lifecycle.fork_session("src", "dst").await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(s.lifecycle.fork_session("nope", "x").await),
        ErrorKind::NotFound
    );
    assert_eq!(
        kind(s.lifecycle.fork_session("src", "").await),
        ErrorKind::InvalidInput
    );

    let specs = [Digest::of(b"1"), Digest::of(b"2")];
    for (i, spec) in specs.iter().enumerate() {
        let meta = ReleaseMetadata::new(format!("v{i}"), "ci");
        s.releases.promote("prod", *spec, meta, None).await.unwrap();
    }
    s.releases.rollback("prod", "ops").await.unwrap();
    let current = s.lifecycle.fork_release("prod", "canary").await.unwrap();
    assert_eq!((current.name.as_str(), current.seq), ("canary", 2));
    let (a, b) = (
        s.releases.history("prod", None, 10).await.unwrap(),
        s.releases.history("canary", None, 10).await.unwrap(),
    );
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(
            (x.seq, x.spec_digest, x.restored),
            (y.seq, y.spec_digest, y.restored)
        );
    }
    assert_eq!(s.releases.current("canary").await.unwrap(), current);
    assert!(s
        .lifecycle
        .blob_referrers(&specs[0])
        .await
        .unwrap()
        .contains(&Referrer::Release("canary".into())));
    assert_eq!(
        kind(s.lifecycle.fork_release("prod", "canary").await),
        ErrorKind::AlreadyExists
    );
    assert_eq!(
        kind(s.lifecycle.fork_release("none", "x").await),
        ErrorKind::NotFound
    );
    let stats = s.lifecycle.stats().await.unwrap();
    assert_eq!((stats.release_names, stats.release_records), (2, 6));
    assert_eq!((stats.sessions, stats.log_entries), (2, 9));
}

async fn stats_count(url: String) {
    let clock = Clock::at(T0);
    let s = open_at(&url, &clock).await;
    let blob = s.cas.put(Bytes::from_static(b"hello")).await.unwrap();
    s.cas.put(Bytes::from_static(b"hello")).await.unwrap();
    let r = s
        .runs
        .create_run(blob, RunMetadata::new("a"))
        .await
        .unwrap();
    s.runs
        .append_event(r, NewEvent::new("k", json!(1)))
        .await
        .unwrap();
    s.sessions.create_session("s", json!({})).await.unwrap();
    s.sessions.append_log("s", entry(1)).await.unwrap();
    s.sessions
        .replace_log("s", vec![entry(1), entry(2), entry(3)], None)
        .await
        .unwrap();
    s.releases
        .promote("p", blob, ReleaseMetadata::new("v", "ci"), None)
        .await
        .unwrap();
    s.supersessions
        .put(sup(blob, Digest::of(b"x")))
        .await
        .unwrap();
    let stats = s.lifecycle.stats().await.unwrap();
    assert_eq!(
        (
            stats.runs,
            stats.run_events,
            stats.sessions,
            stats.log_entries
        ),
        (1, 1, 1, 3)
    );
    assert_eq!(
        (
            stats.release_names,
            stats.release_records,
            stats.supersessions
        ),
        (1, 1, 1)
    );
    assert_eq!(
        (stats.blobs, stats.blob_bytes, stats.blob_references),
        (1, 9, 4)
    );
    assert!(stats.stored_bytes > 9, "{stats:?}");
    s.sessions.delete_session("s").await.unwrap();
    s.lifecycle.delete_run(r, IfRunning::Delete).await.unwrap();
    s.cas.delete(&blob).await.unwrap();
    let after = s.lifecycle.stats().await.unwrap();
    assert_eq!(
        (
            after.runs,
            after.run_events,
            after.sessions,
            after.log_entries,
            after.blobs,
            after.blob_bytes
        ),
        (0, 0, 0, 0, 0, 0)
    );
    assert!(after.stored_bytes < stats.stored_bytes);
}

#[tokio::test]
async fn stats_count_every_store() {
    stats_count(standalone("stats")).await;
}

#[tokio::test]
async fn cluster_stats() {
    stats_count(lifecycle::cluster("stats")).await;
}
