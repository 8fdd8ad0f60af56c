//! Blob references, pins and garbage collection.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stowage_core::lifecycle::{BlobGc, IfRunning, Referrer, Sweep};
use stowage_core::{Digest, ErrorKind, NewEvent, RunSummary, Stores};

use super::{open_timed, sweep_all, HOUR};
use crate::harness::Harness;
use crate::util::{expect_kind, meta, ok, race, rmeta, signer, superseding};

async fn put(s: &Stores, text: &str) -> Digest {
    ok(s.cas.put(Bytes::from(text.to_owned())).await, "cas.put")
}

async fn gc(s: &Stores, grace: Duration, batch: usize) -> Sweep<Digest> {
    let policy = BlobGc::grace(grace).batch(batch);
    sweep_all(|after: Option<Digest>| {
        let (s, policy) = (s.clone(), policy.clone());
        async move { s.lifecycle.gc_blobs(&policy, after.as_ref()).await }
    })
    .await
}

async fn present(s: &Stores, digest: &Digest) -> bool {
    ok(s.cas.contains(digest).await, "cas.contains")
}

/// GC deletes exactly the unreferenced blobs older than the grace period:
/// run specs, summary blobs, release specs, supersession digests and pins
/// are references; deleting a run or unpinning drops its references.
pub async fn gc_collects_only_unreferenced(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    let run_spec = put(&s, "run spec").await;
    let output = put(&s, "run output").await;
    let release_spec = put(&s, "release spec").await;
    let target = put(&s, "superseded").await;
    let replacement = put(&s, "replacement").await;
    let pinned = put(&s, "pinned").await;
    let garbage = put(&s, "garbage").await;
    let used = put(&s, "used by an event").await;
    let run = ok(s.runs.create_run(run_spec, meta("a")).await, "create_run");
    let event = NewEvent::new("tool_call", serde_json::json!({})).with_blobs([used]);
    ok(
        s.runs.append_event(run, event).await,
        "append_event declaring a blob",
    );
    let summary = RunSummary::new("done").with_blobs([output]);
    ok(s.runs.complete_run(run, summary).await, "complete_run");
    ok(
        s.releases
            .promote("prod", release_spec, rmeta("v1"), None)
            .await,
        "promote",
    );
    let record = superseding(&signer(1), target, Some(replacement), 1_000);
    ok(s.supersessions.put(record).await, "supersessions.put");
    ok(s.lifecycle.pin_blob(&pinned, "keep-me").await, "pin_blob");
    time.tick().await;

    let sweep = gc(&s, HOUR, 2).await;
    assert_eq!(sweep.affected, 0, "nothing is older than an hour");
    assert_eq!(sweep.examined, 8, "every blob examined across batches");
    let sweep = gc(&s, Duration::ZERO, 3).await;
    assert_eq!(sweep.affected, 1, "only the unreferenced blob is collected");
    assert_eq!(
        sweep.removed,
        "garbage".len() as u64,
        "removed counts its bytes"
    );
    assert!(!present(&s, &garbage).await, "the garbage blob is gone");
    for d in [
        run_spec,
        output,
        used,
        release_spec,
        target,
        replacement,
        pinned,
    ] {
        assert!(present(&s, &d).await, "a referenced blob was collected");
    }
    let referrers = ok(
        s.lifecycle.blob_referrers(&run_spec).await,
        "blob_referrers",
    );
    assert_eq!(referrers, vec![Referrer::Run(run)]);

    ok(
        s.lifecycle.delete_run(run, IfRunning::Keep).await,
        "delete_run",
    );
    assert!(ok(
        s.lifecycle.unpin_blob(&pinned, "keep-me").await,
        "unpin_blob"
    ));
    time.tick().await;
    assert_eq!(
        gc(&s, Duration::ZERO, 100).await.affected,
        4,
        "the run's three blobs and the unpinned one"
    );
    for d in [run_spec, output, used, pinned] {
        assert!(
            !present(&s, &d).await,
            "a blob whose references are gone stays"
        );
    }
    assert!(
        ok(
            s.lifecycle.blob_referrers(&run_spec).await,
            "blob_referrers"
        )
        .is_empty(),
        "collection drops the stale references"
    );
    for d in [release_spec, target, replacement] {
        assert!(
            present(&s, &d).await,
            "release and supersession references are permanent"
        );
    }
}

/// Every release record's spec is a reference, not only the current one's: after promotes of A, B, C and a rollback, GC (grace 0) keeps A, B and C — any of them can be restored by `rollback_to` — and collects only the loose blob.
pub async fn gc_keeps_every_release_spec(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    let specs = [
        put(&s, "release spec A").await,
        put(&s, "release spec B").await,
        put(&s, "release spec C").await,
    ];
    let loose = put(&s, "loose").await;
    for (i, d) in specs.iter().enumerate() {
        ok(
            s.releases
                .promote("g", *d, rmeta(&format!("v{i}")), None)
                .await,
            "promote",
        );
    }
    ok(s.releases.rollback("g", "ops").await, "rollback");
    time.tick().await;
    assert_eq!(
        gc(&s, Duration::ZERO, 2).await.affected,
        1,
        "only the loose blob is collected"
    );
    assert!(!present(&s, &loose).await, "the loose blob is gone");
    for (d, what) in specs.iter().zip([
        "A (two records back)",
        "B (current again)",
        "C (rolled back from)",
    ]) {
        assert!(
            present(&s, d).await,
            "the spec of release record {what} was collected: every record's spec is a reference"
        );
    }
    let restored = ok(
        s.releases.rollback_to("g", 0, "ops").await,
        "rollback_to(0)",
    );
    assert_eq!(restored.spec_digest, specs[0], "the oldest record restores");
    assert!(present(&s, &specs[0]).await, "its spec is still there");
}

/// A run call that fails references nothing (SPEC §2: all-or-nothing):
/// blobs declared by a compare-and-append that lost, by an idempotency key
/// reused with other content, by an append to a finished run and by a
/// second terminal transition get no referrer and are collected; blobs
/// declared by the calls that succeeded — an acknowledged idempotent retry
/// included — keep the run as their referrer.
pub async fn failed_run_calls_reference_nothing(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    let spec = put(&s, "spec").await;
    let kept = put(&s, "declared by an appended event").await;
    let output = put(&s, "declared by the summary").await;
    let retried = put(&s, "declared by an acknowledged retry").await;
    let mut lost = Vec::new();
    for text in [
        "lost compare-and-append",
        "lost idempotency",
        "append after finish",
        "second terminal transition",
    ] {
        lost.push(put(&s, text).await);
    }
    let run = ok(s.runs.create_run(spec, meta("a")).await, "create_run");
    let event = |blob: Digest| NewEvent::new("step", serde_json::json!({})).with_blobs([blob]);
    let first = event(kept).with_idempotency_key("k");
    ok(s.runs.append_event(run, first).await, "append_event");
    let plain = NewEvent::new("step", serde_json::json!({"n": 2})).with_idempotency_key("r");
    let original = ok(
        s.runs.append_event(run, plain.clone()).await,
        "append_event",
    );
    let retry = ok(
        s.runs.append_event(run, plain.with_blobs([retried])).await,
        "an idempotent retry declaring a blob",
    );
    assert_eq!(retry, original, "a retry returns the original event");
    expect_kind(
        s.runs
            .append_event(run, event(lost[0]).with_expected_seq(9))
            .await,
        ErrorKind::Conflict,
        "append expecting seq 9 of 2",
    );
    let reused = NewEvent::new("step", serde_json::json!({"other": true}))
        .with_idempotency_key("k")
        .with_blobs([lost[1]]);
    expect_kind(
        s.runs.append_event(run, reused).await,
        ErrorKind::Conflict,
        "an idempotency key reused with other content",
    );
    let summary = RunSummary::new("done").with_blobs([output]);
    ok(s.runs.complete_run(run, summary).await, "complete_run");
    expect_kind(
        s.runs.append_event(run, event(lost[2])).await,
        ErrorKind::Conflict,
        "append to a completed run",
    );
    let losing = RunSummary::new("lost").with_blobs([lost[3]]);
    expect_kind(
        s.runs.cancel_run(run, losing).await,
        ErrorKind::Conflict,
        "a second terminal transition",
    );
    for d in &lost {
        let referrers = ok(s.lifecycle.blob_referrers(d).await, "blob_referrers");
        assert!(
            referrers.is_empty(),
            "a blob declared only by a failed call has referrers {referrers:?}"
        );
    }
    for d in [spec, kept, output, retried] {
        let referrers = ok(s.lifecycle.blob_referrers(&d).await, "blob_referrers");
        assert_eq!(
            referrers,
            vec![Referrer::Run(run)],
            "one referrer, listed once"
        );
    }
    time.tick().await;
    let sweep = gc(&s, Duration::ZERO, 100).await;
    assert_eq!(sweep.affected, 4, "exactly the blobs of the failed calls");
    for d in &lost {
        assert!(!present(&s, d).await, "a blob of a failed call was kept");
    }
    for d in [spec, kept, output, retried] {
        assert!(
            present(&s, &d).await,
            "a blob the run references was collected"
        );
    }
}

/// A release or supersession call that fails references nothing: the spec
/// of a lost compare-and-promote, the replacement of a supersession refused
/// as a conflict and the specs of a fork into a name with a history get no
/// new referrer, and the blobs only they named are collected.
pub async fn failed_release_calls_reference_nothing(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    let (kept, lost_spec) = (put(&s, "promoted").await, put(&s, "never promoted").await);
    let (target, first, losing) = (
        put(&s, "superseded claim").await,
        put(&s, "its replacement").await,
        put(&s, "a conflicting replacement").await,
    );
    ok(
        s.releases.promote("src", kept, rmeta("v1"), None).await,
        "promote",
    );
    ok(
        s.releases.promote("dst", kept, rmeta("v1"), None).await,
        "promote",
    );
    expect_kind(
        s.releases
            .promote("fresh", lost_spec, rmeta("v1"), Some(0))
            .await,
        ErrorKind::Conflict,
        "promote expecting seq 0 of a name never promoted",
    );
    let key = signer(1);
    ok(
        s.supersessions
            .put(superseding(&key, target, Some(first), 1_000))
            .await,
        "supersessions.put",
    );
    expect_kind(
        s.supersessions
            .put(superseding(&key, target, Some(losing), 2_000))
            .await,
        ErrorKind::Conflict,
        "a second supersession of one target",
    );
    expect_kind(
        s.lifecycle.fork_release("src", "dst").await,
        ErrorKind::AlreadyExists,
        "fork_release into a name with a history",
    );
    for d in [lost_spec, losing] {
        let referrers = ok(s.lifecycle.blob_referrers(&d).await, "blob_referrers");
        assert!(
            referrers.is_empty(),
            "a blob named only by a failed call has referrers {referrers:?}"
        );
    }
    let referrers = ok(s.lifecycle.blob_referrers(&kept).await, "blob_referrers");
    assert_eq!(
        referrers,
        vec![
            Referrer::Release("dst".into()),
            Referrer::Release("src".into())
        ],
        "the refused fork named the spec under no new name"
    );
    time.tick().await;
    let sweep = gc(&s, Duration::ZERO, 100).await;
    assert_eq!(sweep.affected, 2, "exactly the blobs of the failed calls");
    for d in [kept, target, first] {
        assert!(present(&s, &d).await, "a referenced blob was collected");
    }
}

/// A `put` of an existing blob restarts its grace period: the digest a put
/// returned is never collected within the grace period.
pub async fn gc_spares_recent_puts(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    let old = put(&s, "put twice").await;
    let once = put(&s, "put once").await;
    time.pass(Duration::from_millis(1_500)).await;
    let started = time.start();
    assert_eq!(put(&s, "put twice").await, old);
    let fresh = put(&s, "fresh").await;
    let grace = Duration::from_secs(1);
    let sweep = gc(&s, grace, 100).await;
    if !time.within(started, grace, "gc_spares_recent_puts") {
        return;
    }
    assert_eq!(sweep.affected, 1, "only the blob put once, 1.5 s ago");
    assert!(!present(&s, &once).await);
    assert!(
        present(&s, &old).await,
        "a blob put again within the grace period was collected"
    );
    assert!(present(&s, &fresh).await, "a fresh blob was collected");
}

/// Pins: pinning an absent blob protects it once put; labels are
/// identifiers; unpinning twice answers false.
pub async fn pins(h: &dyn Harness) {
    let (s, time) = open_timed(h).await;
    let digest = Digest::of(b"not yet put");
    ok(
        s.lifecycle.pin_blob(&digest, "early").await,
        "pin_blob of an absent blob",
    );
    ok(
        s.lifecycle.pin_blob(&digest, "early").await,
        "pin_blob twice",
    );
    ok(
        s.lifecycle.pin_blob(&digest, "second").await,
        "a second label",
    );
    assert_eq!(put(&s, "not yet put").await, digest);
    time.tick().await;
    assert_eq!(gc(&s, Duration::ZERO, 10).await.affected, 0);
    let referrers: BTreeSet<Referrer> =
        ok(s.lifecycle.blob_referrers(&digest).await, "blob_referrers")
            .into_iter()
            .collect();
    let expected = [
        Referrer::Pin("early".into()),
        Referrer::Pin("second".into()),
    ];
    assert_eq!(referrers, expected.into_iter().collect());
    assert!(ok(
        s.lifecycle.unpin_blob(&digest, "early").await,
        "unpin_blob"
    ));
    assert!(!ok(
        s.lifecycle.unpin_blob(&digest, "early").await,
        "unpin_blob twice"
    ));
    assert_eq!(
        gc(&s, Duration::ZERO, 10).await.affected,
        0,
        "still pinned by the second label"
    );
    for bad in ["", "nul\0", "new\nline"] {
        expect_kind(
            s.lifecycle.pin_blob(&digest, bad).await,
            ErrorKind::InvalidInput,
            "pin_blob with a bad label",
        );
        expect_kind(
            s.lifecycle.unpin_blob(&digest, bad).await,
            ErrorKind::InvalidInput,
            "unpin_blob with a bad label",
        );
    }
}

/// Puts and references racing GC loops (grace 0): a blob referenced
/// before it was put (a pin, a run spec, a release) is never collected,
/// nor is one whose reference was acknowledged while it still existed;
/// unreferenced blobs are all collected in the end.
pub async fn gc_race_keeps_referenced(h: &dyn Harness) {
    const TASKS: usize = 6;
    const PER_TASK: usize = 12;
    let (s, time) = open_timed(h).await;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let collectors: Vec<_> = (0..2)
        .map(|_| {
            let (s, stop) = (s.clone(), stop.clone());
            tokio::spawn(async move {
                let mut collected = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    collected += gc(&s, Duration::ZERO, 4).await.affected;
                    tokio::task::yield_now().await;
                }
                collected
            })
        })
        .collect();
    let writer = s.clone();
    let outcomes = race(TASKS, move |t| {
        let s = writer.clone();
        async move {
            let (mut kept, mut garbage) = (Vec::new(), Vec::new());
            for i in 0..PER_TASK {
                let text = format!("task {t} blob {i}");
                let digest = Digest::of(text.as_bytes());
                match i % 4 {
                    0 => ok(s.lifecycle.pin_blob(&digest, "race").await, "pin_blob"),
                    1 => drop(ok(
                        s.runs.create_run(digest, meta("race")).await,
                        "create_run",
                    )),
                    2 => drop(ok(
                        s.releases
                            .promote(&format!("r{t}-{i}"), digest, rmeta("v"), None)
                            .await,
                        "promote",
                    )),
                    _ => {
                        garbage.push(put(&s, &text).await);
                        continue;
                    }
                }
                kept.push(put(&s, &text).await);
            }
            // Referenced after its put: protected once the reference is
            // acknowledged with the blob present.
            let late = put(&s, &format!("task {t} late")).await;
            ok(s.lifecycle.pin_blob(&late, "late").await, "pin_blob");
            if present(&s, &late).await {
                kept.push(late);
            }
            (kept, garbage)
        }
    })
    .await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for collector in collectors {
        if let Err(e) = collector.await {
            std::panic::resume_unwind(e.into_panic());
        }
    }
    time.tick().await;
    gc(&s, Duration::ZERO, 50).await;
    for (kept, garbage) in outcomes {
        for digest in kept {
            assert!(
                present(&s, &digest).await,
                "GC collected a referenced blob {}",
                digest.short()
            );
        }
        for digest in garbage {
            assert!(
                !present(&s, &digest).await,
                "an unreferenced blob survived GC"
            );
        }
    }
}
