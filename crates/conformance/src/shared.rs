//! Checks for shared backends (SPEC §2 atomicity "also when many processes
//! call at once", §8): two independent handles onto one store see each
//! other's writes and stay linearizable when raced.
//!
//! They apply when `Capabilities::shared` is true and the harness
//! implements [`Harness::open_another`]; otherwise they print why not.

use std::collections::BTreeSet;

use bytes::Bytes;
use serde_json::json;
use stowage_core::{ErrorKind, PutOutcome, RunSummary, Stores};

use crate::harness::Harness;
use crate::util::{
    assertion, entry, event, meta, ok, open, race, rmeta, signer, skipped, spec, superseding,
};

/// Opens a second handle, or `None` (after printing why) when the check does not apply.
async fn second_handle(h: &dyn Harness, s: &Stores, check: &str) -> Option<Stores> {
    if !s.capabilities.shared {
        skipped(
            check,
            format!(
                "backend {:?} is not shared between processes",
                s.capabilities.backend
            ),
        );
        return None;
    }
    match h.open_another(s).await {
        Ok(other) => Some(other),
        Err(e) if e.kind() == ErrorKind::Unsupported => {
            skipped(
                check,
                format!("the backend is shared, but its harness does not implement Harness::open_another: {e}"),
            );
            None
        }
        Err(e) => panic!("{check}: harness: open_another failed: {e}"),
    }
}

/// Writes through one handle are visible through another, in every store.
pub async fn handles_see_each_other(h: &dyn Harness) {
    let a = open(h).await;
    let Some(b) = second_handle(h, &a, "shared::handles_see_each_other").await else {
        return;
    };
    let d = ok(
        a.cas.put(Bytes::from_static(b"shared")).await,
        "put via handle A",
    );
    assert_eq!(
        ok(b.cas.get(&d).await, "get via handle B").as_ref(),
        b"shared",
        "blob visible"
    );
    let run = ok(
        a.runs.create_run(spec(1), meta("a")).await,
        "create_run via A",
    );
    ok(
        b.runs.append_event(run, event("k", 0)).await,
        "append via B",
    );
    assert_eq!(
        ok(a.runs.get_run(run).await, "get_run via A").event_count,
        1,
        "event visible"
    );
    ok(
        a.releases.promote("svc", spec(1), rmeta("v"), None).await,
        "promote via A",
    );
    assert_eq!(
        ok(b.releases.current("svc").await, "current via B").spec_digest,
        spec(1),
        "release visible"
    );
    ok(
        b.sessions.create_session("s", json!({})).await,
        "create via B",
    );
    ok(
        a.sessions.append_log("s", entry("hi")).await,
        "append via A",
    );
    assert_eq!(
        ok(b.sessions.read_log("s", None, 10).await, "read via B").len(),
        1,
        "log visible"
    );
    let rec = superseding(&signer(0), assertion(1), None, 1);
    ok(a.supersessions.put(rec.clone()).await, "put via A");
    assert_eq!(
        ok(b.supersessions.put(rec).await, "put via B"),
        PutOutcome::AlreadyPresent,
        "record visible"
    );
}

/// Two handles racing: appends stay gap-free, one terminal transition and one create win.
pub async fn handles_race(h: &dyn Harness) {
    let a = open(h).await;
    let Some(b) = second_handle(h, &a, "shared::handles_race").await else {
        return;
    };
    let run = ok(a.runs.create_run(spec(1), meta("a")).await, "create_run");
    ok(a.sessions.create_session("s", json!({})).await, "create");
    let handles = [a.clone(), b.clone()];
    let appended = race(16, |t| {
        let s = handles[t % 2].clone();
        async move {
            let mut out = Vec::new();
            for i in 0..20 {
                out.push(s.runs.append_event(run, event("k", i)).await.map(|e| e.seq));
                out.push(
                    s.sessions
                        .append_log("s", entry(format!("{t}/{i}")))
                        .await
                        .map(|e| 1_000_000 + e.seq),
                );
            }
            out
        }
    })
    .await;
    let mut seen = BTreeSet::new();
    for r in appended.into_iter().flatten() {
        assert!(
            seen.insert(ok(r, "append through two handles")),
            "seq handed out twice across handles"
        );
    }
    let expected: BTreeSet<u64> = (0..320).chain(1_000_000..1_000_320).collect();
    assert_eq!(seen, expected, "seqs gap-free across two handles");
    ok(b.runs.verify_run(run).await, "verify_run");
    ok(a.sessions.verify_log("s").await, "verify_log");
    let outcomes = race(16, |t| {
        let s = handles[t % 2].clone();
        async move {
            let finished = s
                .runs
                .complete_run(run, RunSummary::new(format!("{t}")))
                .await
                .map(drop)
                .map_err(|e| e.kind());
            let created = s.sessions.create_session("contested", json!(t)).await;
            (finished, created.map_err(|e| e.kind()))
        }
    })
    .await;
    let finished = outcomes.iter().filter(|o| o.0.is_ok()).count();
    assert_eq!(
        finished, 1,
        "exactly one terminal transition wins across handles"
    );
    assert!(
        outcomes
            .iter()
            .all(|o| o.0.is_ok() || o.0 == Err(ErrorKind::Conflict)),
        "terminal transition losers get Conflict"
    );
    let created = outcomes.iter().filter(|o| o.1.is_ok()).count();
    assert_eq!(created, 1, "exactly one create_session wins across handles");
    assert!(
        outcomes
            .iter()
            .all(|o| o.1.is_ok() || o.1 == Err(ErrorKind::AlreadyExists)),
        "create_session losers get AlreadyExists"
    );
}
