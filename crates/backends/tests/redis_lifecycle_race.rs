//! Blob garbage collection racing puts and references (SPEC §10: `gc`
//! never removes a blob that a concurrent put returned or a concurrent
//! write referenced), on a single node and on a 3-node cluster.
//!
//! Every blob is put long before the race, so all are past the grace
//! period; some carry stale reference entries (a promote that failed, a
//! run since deleted). Then writer clients (own connections) put most of
//! them again and reference them — a run's spec, a pin, a promote (also
//! under a name whose earlier promote failed), a supersession, a run
//! summary's blobs — while collector clients sweep in a loop, each pass
//! moving the clock on by a second (grace: 5 s). A blob whose reference
//! was recorded within the grace period after its `put` returned must
//! survive (a writer that held its digest longer, which the contract does
//! not cover, is counted and must be rare); every untouched one must be
//! collected.
//!
//! The second race references blobs that are already past the grace
//! period (no new put): there a reference protects a blob only if it was
//! recorded before the collector's decision, so every blob that still
//! existed after its writer's reference returned must survive.
#![cfg(feature = "redis")]

#[path = "support/redis_server.rs"]
mod redis_server;

#[path = "support/lifecycle.rs"]
mod lifecycle;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use stowage_core::lifecycle::BlobGc;
use stowage_core::{
    Digest, ErrorKind, ReleaseMetadata, RunMetadata, RunStatus, RunSummary, SigningKey, Stores,
    Supersession, SupersessionDraft, SupersessionKind, Timestamp,
};

use lifecycle::{open_at, Clock, T0};

const BLOBS: usize = 240;
const WRITERS: usize = 4;
const COLLECTORS: usize = 3;
const GRACE_MS: u64 = 5_000;

fn body(i: usize) -> Bytes {
    Bytes::from(format!("blob number {i}"))
}

fn sup(target: Digest, i: usize) -> Supersession {
    Supersession::sign(
        &SigningKey::from_bytes(&[5; 32]),
        SupersessionDraft::new(
            target,
            Some(Digest::of(format!("replacement {i}").as_bytes())),
            SupersessionKind::Correction,
            "r",
            Timestamp::from_millis(T0),
        ),
    )
}

/// Whether blob `i` is left alone by the writers (it must be collected).
fn untouched(i: usize) -> bool {
    i % 7 == 6
}

/// Puts blob `i` again and references it in the way `i` selects; whether
/// the reference was made within the grace period after the put.
async fn protect(s: &Stores, clock: &Clock, i: usize) -> bool {
    let put_at = clock.now_ms();
    let d = s.cas.put(body(i)).await.unwrap();
    tokio::task::yield_now().await;
    let meta = || ReleaseMetadata::new("v", "ci");
    match i % 7 {
        0 => drop(s.runs.create_run(d, RunMetadata::new("w")).await.unwrap()),
        1 => s.lifecycle.pin_blob(&d, "keep").await.unwrap(),
        2 | 4 => drop(
            s.releases
                .promote(&format!("rel-{i}"), d, meta(), None)
                .await
                .unwrap(),
        ),
        3 => {
            let r = s
                .runs
                .create_run(Digest::of(b"spec"), RunMetadata::new("w"))
                .await
                .unwrap();
            let summary = RunSummary::new("ok").with_blobs([d]);
            s.runs
                .finish_run(r, RunStatus::Completed, summary)
                .await
                .unwrap();
        }
        5 => drop(s.supersessions.put(sup(d, i)).await.unwrap()),
        _ => unreachable!("untouched"),
    }
    clock.now_ms() < put_at + GRACE_MS
}

async fn race(url: String) {
    let clock = Clock::at(T0);
    let setup = open_at(&url, &clock).await;
    let mut digests = Vec::new();
    for i in 0..BLOBS {
        digests.push(setup.cas.put(body(i)).await.unwrap());
    }
    // Stale entries: a promote that failed (4), a run since deleted (6).
    for (i, d) in digests.iter().enumerate() {
        if i % 7 == 4 {
            let failed = setup
                .releases
                .promote(
                    &format!("rel-{i}"),
                    *d,
                    ReleaseMetadata::new("v", "ci"),
                    Some(3),
                )
                .await;
            assert_eq!(failed.unwrap_err().kind(), ErrorKind::Conflict);
        } else if i % 7 == 6 {
            let r = setup
                .runs
                .create_run(*d, RunMetadata::new("gone"))
                .await
                .unwrap();
            setup
                .lifecycle
                .delete_run(r, stowage_core::lifecycle::IfRunning::Delete)
                .await
                .unwrap();
        }
    }
    clock.set(T0 + 600_000);
    let policy = BlobGc::grace(Duration::from_millis(GRACE_MS)).batch(8);
    let writing = Arc::new(AtomicBool::new(true));
    let passes = Arc::new(AtomicU64::new(0));
    let mut collectors = Vec::new();
    for _ in 0..COLLECTORS {
        let s = open_at(&url, &clock).await;
        let (writing, passes, policy) = (writing.clone(), passes.clone(), policy.clone());
        let clock = clock.clone();
        collectors.push(tokio::spawn(async move {
            while writing.load(Ordering::SeqCst) {
                lifecycle::gc_all(&s, &policy).await;
                passes.fetch_add(1, Ordering::SeqCst);
                clock.advance(1_000);
            }
        }));
    }
    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let s = open_at(&url, &clock).await;
        let clock = clock.clone();
        writers.push(tokio::spawn(async move {
            let mut late = Vec::new();
            for i in (w..BLOBS).step_by(WRITERS).filter(|i| !untouched(*i)) {
                if !protect(&s, &clock, i).await {
                    late.push(i);
                }
            }
            late
        }));
    }
    let mut late = Vec::new();
    for w in writers {
        late.extend(w.await.unwrap());
    }
    writing.store(false, Ordering::SeqCst);
    for c in collectors {
        c.await.unwrap();
    }
    assert!(
        passes.load(Ordering::SeqCst) > 0,
        "no collection ran during the writes"
    );
    assert!(
        late.len() < BLOBS / 20,
        "writers held {} digests too long",
        late.len()
    );
    // Past every put's grace period, one more pass: only references protect.
    clock.advance(600_000);
    lifecycle::gc_all(&setup, &policy).await;
    for (i, d) in digests.iter().enumerate() {
        if late.contains(&i) {
            continue;
        }
        if untouched(i) {
            assert!(
                !setup.cas.contains(d).await.unwrap(),
                "blob {i} was not collected"
            );
            assert!(setup.lifecycle.blob_referrers(d).await.unwrap().is_empty());
        } else {
            let got = setup.cas.get(d).await;
            assert_eq!(got.ok(), Some(body(i)), "referenced blob {i} was lost");
        }
    }
    let stats = setup.lifecycle.stats().await.unwrap();
    let kept = (0..BLOBS).filter(|i| !untouched(*i)).count() as u64;
    assert!(stats.blobs <= kept && stats.blobs + late.len() as u64 >= kept);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_never_loses_a_blob_a_racing_put_or_reference_protected() {
    for round in 0..3 {
        race(lifecycle::standalone(&format!("race{round}"))).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_gc_never_loses_a_blob_a_racing_put_or_reference_protected() {
    race(lifecycle::cluster("race")).await;
}

/// References old blob `d` (no new put) in the way `i` selects; with
/// `promote_only`, always by promoting (the name has a stale entry).
async fn reference_old(s: &Stores, i: usize, d: Digest, promote_only: bool) {
    let meta = ReleaseMetadata::new("v", "ci");
    match if promote_only { 2 } else { i % 4 } {
        0 => drop(s.runs.create_run(d, RunMetadata::new("w")).await.unwrap()),
        1 => s.lifecycle.pin_blob(&d, "keep").await.unwrap(),
        2 => drop(
            s.releases
                .promote(&format!("old-{i}"), d, meta, None)
                .await
                .unwrap(),
        ),
        _ => drop(s.supersessions.put(sup(d, i)).await.unwrap()),
    }
}

async fn race_old(url: String, promote_only: bool) {
    let clock = Clock::at(T0);
    let setup = open_at(&url, &clock).await;
    let mut digests = Vec::new();
    for i in 0..BLOBS {
        digests.push(setup.cas.put(body(i)).await.unwrap());
    }
    // Stale entries under the very field the writers record again: a
    // promote that failed (the engine drops such an entry only if it was
    // not recorded again since).
    let step = if promote_only { 1 } else { 4 };
    for i in ((2 % step)..BLOBS).step_by(step) {
        let meta = ReleaseMetadata::new("v", "ci");
        let failed = setup
            .releases
            .promote(&format!("old-{i}"), digests[i], meta, Some(3))
            .await;
        assert_eq!(failed.unwrap_err().kind(), ErrorKind::Conflict);
    }
    // Blob indexes in digest order: the order a sweep examines them.
    let mut order: Vec<usize> = (0..BLOBS).collect();
    order.sort_by_key(|i| digests[*i]);
    let order = Arc::new(order);
    clock.set(T0 + 600_000);
    let policy = BlobGc::grace(Duration::from_millis(GRACE_MS)).batch(1);
    // A collector examining one blob per call publishes where it is; the
    // writers reference the blob it is examining, so their steps interleave.
    let (at, watch) = tokio::sync::watch::channel(0usize);
    let claimed: Arc<Vec<AtomicBool>> =
        Arc::new((0..BLOBS).map(|_| AtomicBool::new(false)).collect());
    let chased = {
        let s = open_at(&url, &clock).await;
        let (order, digests, policy) = (order.clone(), digests.clone(), policy.clone());
        tokio::spawn(async move {
            for k in 0..BLOBS {
                at.send_replace(k);
                let after = k.checked_sub(1).map(|p| digests[order[p]]);
                s.lifecycle.gc_blobs(&policy, after.as_ref()).await.unwrap();
            }
            at.send_replace(BLOBS);
        })
    };
    let mut writers = Vec::new();
    for _ in 0..WRITERS {
        let s = open_at(&url, &clock).await;
        let (mut watch, order, digests, claimed) = (
            watch.clone(),
            order.clone(),
            digests.clone(),
            claimed.clone(),
        );
        writers.push(tokio::spawn(async move {
            let mut protected = Vec::new();
            loop {
                let k = *watch.borrow_and_update();
                if k >= BLOBS {
                    return protected;
                }
                let i = order[k];
                if claimed[i].swap(true, Ordering::SeqCst) {
                    // Taken: wait for the collector to move on.
                    if watch.changed().await.is_err() {
                        return protected;
                    }
                    continue;
                }
                // 0 to 5 round trips later, so the references land at every
                // step of the collector's examination.
                for _ in 0..(k % 6) {
                    s.cas.contains(&digests[i]).await.unwrap();
                }
                reference_old(&s, i, digests[i], promote_only).await;
                if s.cas.contains(&digests[i]).await.unwrap() {
                    protected.push(i);
                }
            }
        }));
    }
    let mut protected = Vec::new();
    for w in writers {
        protected.extend(w.await.unwrap());
    }
    chased.await.unwrap();
    lifecycle::gc_all(&setup, &policy).await;
    let referenced = claimed.iter().filter(|c| c.load(Ordering::SeqCst)).count();
    eprintln!(
        "{referenced} blobs referenced while examined, {} before removal",
        protected.len()
    );
    for i in &protected {
        let got = setup.cas.get(&digests[*i]).await;
        assert_eq!(
            got.ok(),
            Some(body(*i)),
            "blob {i} was collected after its reference"
        );
    }
    let stats = setup.lifecycle.stats().await.unwrap();
    assert_eq!(stats.blobs, protected.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gc_keeps_every_blob_referenced_before_its_decision() {
    for round in 0..2 {
        race_old(lifecycle::standalone(&format!("old{round}")), false).await;
    }
    race_old(lifecycle::standalone("stale"), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn cluster_gc_keeps_every_blob_referenced_before_its_decision() {
    race_old(lifecycle::cluster("old"), false).await;
    race_old(lifecycle::cluster("stale"), true).await;
}
