//! Rollbacks at their edges: `rollback_to` the current record, a rollback
//! record or the first record, rollbacks right after them, a rollback with
//! nothing earlier, and compare-and-promote over rollback records.
//!
//! Each record's rollback target is documented on
//! [`ReleaseRecord::rollback_target`]: `previous` for a promotion, the
//! restored record's own target for a rollback record (from `rollback` or
//! `rollback_to` alike), so repeated rollbacks walk further back (SPEC §5).
//! `restored` names the record whose spec was copied — the record asked
//! for by `rollback_to`, even when that record is itself a rollback.

use stowage_core::validate::MAX_PAGE;
use stowage_core::{ErrorKind, ReleaseRecord, Stores};

use crate::harness::Harness;
use crate::util::{assert_unchanged, expect_kind, ok, open, race, rmeta, snapshot, spec};

/// Promotes `labels` to `name` in order; spec `i` for the `i`-th label.
async fn promote_all(s: &Stores, name: &str, labels: &[&str]) -> Vec<ReleaseRecord> {
    let mut records = Vec::new();
    for (i, label) in labels.iter().enumerate() {
        records.push(ok(
            s.releases
                .promote(name, spec(i as u64), rmeta(label), None)
                .await,
            "promote",
        ));
    }
    records
}

/// Fails unless `record` restored `from` as the record after `head`, by `actor`.
#[track_caller]
fn assert_restores(
    record: &ReleaseRecord,
    from: &ReleaseRecord,
    head: u64,
    actor: &str,
    what: &str,
) {
    assert_eq!(
        (record.seq, record.previous, record.restored),
        (head + 1, Some(head), Some(from.seq)),
        "{what}: (seq, previous, restored) — a new record after the current one, naming the \
         seq it restored"
    );
    assert_eq!(
        record.spec_digest, from.spec_digest,
        "{what}: the restored record's spec"
    );
    assert_eq!(
        record.metadata.version_label, from.metadata.version_label,
        "{what}: a rollback carries the restored label"
    );
    assert_eq!(
        record.metadata.promoted_by, actor,
        "{what}: a rollback records its own actor"
    );
}

/// Fails unless `current` and the whole history are exactly `records`, newest first.
async fn assert_history(s: &Stores, name: &str, records: &[ReleaseRecord], what: &str) {
    let mut expected = records.to_vec();
    expected.reverse();
    assert_eq!(
        ok(s.releases.history(name, None, MAX_PAGE).await, "history"),
        expected,
        "{what}: the history is every record as it was returned, newest first (never rewritten)"
    );
    if let Some(last) = records.last() {
        assert_eq!(
            &ok(s.releases.current(name).await, "current"),
            last,
            "{what}: the newest record is current"
        );
    }
}

/// `rollback_to` the current seq appends a record restoring it (and a rollback from there walks back from it); `rollback_to` a rollback record restores that record's spec and names its seq; `rollback_to` the first record leaves nothing earlier (`Conflict`, nothing changed); history and `current` after each step are every record as returned.
pub async fn rollback_to_edges(h: &dyn Harness) {
    let s = open(h).await;
    let mut recs = promote_all(&s, "svc", &["A", "B", "C"]).await;

    // rollback_to the current record: a new record restoring C.
    let r = ok(
        s.releases.rollback_to("svc", 2, "ops-1").await,
        "rollback_to the current seq",
    );
    assert_restores(&r, &recs[2], 2, "ops-1", "rollback_to the current seq");
    recs.push(r);
    assert_history(&s, "svc", &recs, "after rollback_to the current seq").await;

    // Its rollback target is C's: a rollback now restores B, then A.
    let r = ok(
        s.releases.rollback("svc", "ops-2").await,
        "rollback after rollback_to the current seq",
    );
    let b = recs[1].clone();
    assert_restores(
        &r,
        &b,
        3,
        "ops-2",
        "rollback after rollback_to the current seq",
    );
    recs.push(r);
    let r = ok(s.releases.rollback("svc", "ops-3").await, "second rollback");
    let a = recs[0].clone();
    assert_restores(&r, &a, 4, "ops-3", "second rollback");
    recs.push(r);
    assert_history(&s, "svc", &recs, "after two rollbacks").await;
    let before = snapshot(&s, &[], &[]).await;
    expect_kind(
        s.releases.rollback("svc", "ops").await,
        ErrorKind::Conflict,
        "rollback once A is restored (nothing earlier)",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a rollback with nothing earlier",
    );

    // rollback_to a rollback record (#4 restored B): restores #4's spec and
    // names #4; a rollback from there walks back from #4, to A.
    let four = recs[4].clone();
    let r = ok(
        s.releases.rollback_to("svc", 4, "ops-4").await,
        "rollback_to a rollback record",
    );
    assert_restores(&r, &four, 5, "ops-4", "rollback_to a rollback record");
    assert_eq!(r.spec_digest, spec(1), "rollback_to #4 restores B's spec");
    recs.push(r);
    let r = ok(
        s.releases.rollback("svc", "ops-5").await,
        "rollback after rollback_to a rollback record",
    );
    assert_restores(
        &r,
        &a,
        6,
        "ops-5",
        "rollback after rollback_to a rollback record",
    );
    recs.push(r);
    assert_history(&s, "svc", &recs, "after rollback_to a rollback record").await;

    // rollback_to the first record: nothing earlier than it.
    let r = ok(
        s.releases.rollback_to("svc", 0, "ops-6").await,
        "rollback_to the first record",
    );
    assert_restores(&r, &a, 7, "ops-6", "rollback_to the first record");
    recs.push(r);
    let before = snapshot(&s, &[], &[]).await;
    expect_kind(
        s.releases.rollback("svc", "ops").await,
        ErrorKind::Conflict,
        "rollback after rollback_to the first record",
    );
    expect_kind(
        s.releases.rollback_to("svc", 9, "ops").await,
        ErrorKind::NotFound,
        "rollback_to the seq the next record would take",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a failed rollback or rollback_to",
    );
    // rollback_to still reaches any record, later ones included.
    let c = recs[2].clone();
    let r = ok(
        s.releases.rollback_to("svc", 2, "ops-7").await,
        "rollback_to a later record",
    );
    assert_restores(
        &r,
        &c,
        8,
        "ops-7",
        "rollback_to a record newer than the restored one",
    );
    recs.push(r);
    assert_history(&s, "svc", &recs, "at the end").await;
}

/// A rollback right after a single promote is `Conflict` and changes nothing (no seq is used up: the next promote gets seq 1); `rollback_to(0)` there restores the record itself, and a rollback after it is `Conflict` again.
pub async fn rollback_of_first_promote_conflict(h: &dyn Harness) {
    let s = open(h).await;
    let mut recs = promote_all(&s, "one", &["A"]).await;
    ok(
        s.releases.promote("other", spec(5), rmeta("X"), None).await,
        "promote another name",
    );
    let before = snapshot(&s, &[], &[]).await;
    let e = expect_kind(
        s.releases.rollback("one", "ops").await,
        ErrorKind::Conflict,
        "rollback right after the first promote",
    );
    assert!(
        e.message().contains("one"),
        "the Conflict names the release: {e}"
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a rollback right after the first promote",
    );
    assert_history(&s, "one", &recs, "after the refused rollback").await;

    let r = ok(
        s.releases.rollback_to("one", 0, "ops").await,
        "rollback_to the only record",
    );
    let a = recs[0].clone();
    assert_restores(&r, &a, 0, "ops", "rollback_to the only record");
    recs.push(r);
    let before = snapshot(&s, &[], &[]).await;
    expect_kind(
        s.releases.rollback("one", "ops").await,
        ErrorKind::Conflict,
        "rollback after rollback_to the only record",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a rollback after rollback_to the only record",
    );
    let p = ok(
        s.releases.promote("one", spec(1), rmeta("B"), None).await,
        "promote after refused rollbacks",
    );
    assert_eq!(
        (p.seq, p.previous, p.restored),
        (2, Some(1), None),
        "refused rollbacks use up no seq"
    );
    recs.push(p);
    assert_history(&s, "one", &recs, "at the end").await;
    assert_eq!(
        ok(s.releases.history("other", None, MAX_PAGE).await, "history").len(),
        1,
        "another name is untouched"
    );
}

/// Compare-and-promote over rollback records: the expected seq is the current record's — the rollback record's own seq, not the seq it restored (that is `Conflict` and changes nothing); a rollback after such a promote restores the rollback record (naming its seq), and after a `rollback_to` the expected seq is the `rollback_to` record's.
pub async fn compare_and_promote_after_rollbacks(h: &dyn Harness) {
    let s = open(h).await;
    let mut recs = promote_all(&s, "svc", &["A", "B", "C"]).await;
    let back = ok(s.releases.rollback("svc", "ops").await, "rollback");
    assert_eq!(back.restored, Some(1), "the rollback restores B");
    recs.push(back.clone());

    let before = snapshot(&s, &[], &[]).await;
    for wrong in [1, 2, 4] {
        expect_kind(
            s.releases
                .promote("svc", spec(9), rmeta("D"), Some(wrong))
                .await,
            ErrorKind::Conflict,
            &format!(
                "compare-and-promote expecting seq {wrong} when rollback record #3 is current"
            ),
        );
    }
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a compare-and-promote expecting a seq other than the rollback record's",
    );
    let d = ok(
        s.releases
            .promote("svc", spec(9), rmeta("D"), Some(3))
            .await,
        "compare-and-promote expecting the rollback record's seq",
    );
    assert_eq!(
        (d.seq, d.previous, d.restored),
        (4, Some(3), None),
        "a promotion after a rollback record"
    );
    recs.push(d);

    let r = ok(
        s.releases.rollback("svc", "ops-2").await,
        "rollback after a compare-and-promote",
    );
    assert_restores(&r, &back, 4, "ops-2", "rollback to a rollback record");
    assert_eq!(r.spec_digest, spec(1), "the rollback record's spec is B's");
    recs.push(r);
    let r = ok(
        s.releases.rollback_to("svc", 4, "ops-3").await,
        "rollback_to after rollbacks",
    );
    let d = recs[4].clone();
    assert_restores(&r, &d, 5, "ops-3", "rollback_to D");
    recs.push(r);
    expect_kind(
        s.releases
            .promote("svc", spec(10), rmeta("E"), Some(5))
            .await,
        ErrorKind::Conflict,
        "compare-and-promote expecting the seq before the rollback_to record",
    );
    let e = ok(
        s.releases
            .promote("svc", spec(10), rmeta("E"), Some(6))
            .await,
        "compare-and-promote expecting the rollback_to record's seq",
    );
    assert_eq!(e.seq, 7, "seqs stay gap-free");
    recs.push(e);
    assert_history(&s, "svc", &recs, "at the end").await;
}

/// 8 tasks racing `rollback` on a history of 6 promotes: each successful rollback walks one step further back (the 5 winners restore seqs 4, 3, 2, 1, 0 in record order, each with that record's spec), the rest `Conflict`; the history stays gap-free.
pub async fn racing_rollbacks_walk_back(h: &dyn Harness) {
    let s = open(h).await;
    promote_all(&s, "rb", &["v0", "v1", "v2", "v3", "v4", "v5"]).await;
    let releases = s.releases.clone();
    let results = race(8, |t| {
        let releases = releases.clone();
        async move { releases.rollback("rb", &format!("ops{t}")).await }
    })
    .await;
    let mut wins = Vec::new();
    for r in results {
        match r {
            Ok(record) => wins.push(record),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Conflict,
                "a racing rollback with nothing left to restore is Conflict: {e}"
            ),
        }
    }
    wins.sort_by_key(|r| r.seq);
    assert_eq!(
        wins.iter().map(|r| (r.seq, r.restored)).collect::<Vec<_>>(),
        [
            (6, Some(4)),
            (7, Some(3)),
            (8, Some(2)),
            (9, Some(1)),
            (10, Some(0))
        ],
        "racing rollbacks each walk one step further back (seq, restored)"
    );
    for w in &wins {
        let restored = w.restored.unwrap_or_default();
        assert_eq!(
            w.spec_digest,
            spec(restored),
            "rollback record {} carries the spec of the record it restored",
            w.seq
        );
    }
    let history = ok(s.releases.history("rb", None, MAX_PAGE).await, "history");
    assert_eq!(
        history.iter().rev().map(|r| r.seq).collect::<Vec<_>>(),
        (0..11).collect::<Vec<_>>(),
        "6 promotes and 5 rollbacks, gap-free"
    );
    assert_eq!(
        history[..5],
        wins.iter().rev().cloned().collect::<Vec<_>>()[..],
        "history holds the rollbacks as returned"
    );
    expect_kind(
        s.releases.rollback("rb", "ops").await,
        ErrorKind::Conflict,
        "a rollback after the racers walked back to the first record",
    );
}
