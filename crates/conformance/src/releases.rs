//! Checks for [`ReleaseRegistry`](stowage_core::ReleaseRegistry) (SPEC §5).

use std::collections::BTreeSet;

use stowage_core::validate::MAX_PAGE;
use stowage_core::{ErrorKind, ReleaseMetadata, ReleaseRecord};

use crate::harness::Harness;
use crate::util::{
    assert_unchanged, expect_kind, invalid_ids, ok, open, oversized_text, race, rmeta, snapshot,
    spec, tricky_ids,
};

fn seqs(records: &[ReleaseRecord]) -> Vec<u64> {
    records.iter().map(|r| r.seq).collect()
}

/// `promote` appends a record that becomes current; metadata round-trips; seqs are gap-free with `previous` links.
pub async fn promote_current_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    let metadata = ReleaseMetadata {
        version_label: "v1.4.2 ü".into(),
        promoted_by: "ci:bot".into(),
        notes: "line1\nline2".into(),
    };
    let r0 = ok(
        s.releases
            .promote("planner", spec(0), metadata.clone(), None)
            .await,
        "promote",
    );
    assert_eq!(
        (r0.seq, r0.previous, r0.restored),
        (0, None, None),
        "first record"
    );
    assert_eq!(r0.name, "planner", "name stored");
    assert_eq!(r0.spec_digest, spec(0), "spec stored");
    assert_eq!(r0.metadata, metadata, "metadata stored exactly");
    assert_eq!(
        ok(s.releases.current("planner").await, "current"),
        r0,
        "current is the new record"
    );
    for i in 1..5 {
        let r = ok(
            s.releases
                .promote("planner", spec(i), rmeta("v"), None)
                .await,
            "promote",
        );
        assert_eq!(r.seq, i, "release seqs are gap-free");
        assert_eq!(
            r.previous,
            Some(i - 1),
            "each record remembers the one current before it"
        );
        assert_eq!(
            ok(s.releases.current("planner").await, "current"),
            r,
            "the newest record is current"
        );
    }
}

/// Unknown names: `current`, `rollback`, `rollback_to` are `NotFound`; `history` is empty.
pub async fn unknown_name_not_found(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.releases.promote("known", spec(0), rmeta("v"), None).await,
        "promote",
    );
    expect_kind(
        s.releases.current("unknown").await,
        ErrorKind::NotFound,
        "current of an unknown name",
    );
    expect_kind(
        s.releases.rollback("unknown", "ops").await,
        ErrorKind::NotFound,
        "rollback of an unknown name",
    );
    expect_kind(
        s.releases.rollback_to("unknown", 0, "ops").await,
        ErrorKind::NotFound,
        "rollback_to of an unknown name",
    );
    expect_kind(
        s.releases.rollback_to("known", 5, "ops").await,
        ErrorKind::NotFound,
        "rollback_to an unknown seq",
    );
    assert!(
        ok(s.releases.history("unknown", None, 10).await, "history").is_empty(),
        "history of an unknown name is empty"
    );
    assert_eq!(
        ok(s.releases.list_names(None, 10).await, "list_names"),
        vec!["known".to_owned()],
        "failed calls create no name"
    );
}

/// A, B, C → rollback → B → rollback → A → rollback → `Conflict`; each rollback is a new record.
pub async fn rollback_walks_back(h: &dyn Harness) {
    let s = open(h).await;
    for (i, label) in ["A", "B", "C"].iter().enumerate() {
        ok(
            s.releases
                .promote("svc", spec(i as u64), rmeta(label), None)
                .await,
            "promote",
        );
    }
    let back1 = ok(
        s.releases.rollback("svc", "oncall-1").await,
        "first rollback",
    );
    assert_eq!(back1.spec_digest, spec(1), "first rollback restores B");
    assert_eq!(
        (back1.seq, back1.restored, back1.previous),
        (3, Some(1), Some(2)),
        "first rollback record"
    );
    assert_eq!(
        back1.metadata.promoted_by, "oncall-1",
        "a rollback records its own actor"
    );
    assert_eq!(
        back1.metadata.version_label, "B",
        "a rollback carries the restored label"
    );
    let back2 = ok(
        s.releases.rollback("svc", "oncall-2").await,
        "second rollback",
    );
    assert_eq!(back2.spec_digest, spec(0), "second rollback restores A");
    assert_eq!(
        (back2.seq, back2.restored),
        (4, Some(0)),
        "second rollback record"
    );
    let before = snapshot(&s, &[], &[]).await;
    expect_kind(
        s.releases.rollback("svc", "oncall-3").await,
        ErrorKind::Conflict,
        "rollback with nothing earlier",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a rollback with nothing earlier",
    );
    assert_eq!(
        ok(s.releases.current("svc").await, "current"),
        back2,
        "current is the last rollback"
    );
    let history = ok(s.releases.history("svc", None, MAX_PAGE).await, "history");
    assert_eq!(
        seqs(&history),
        vec![4, 3, 2, 1, 0],
        "history is never rewritten"
    );
    let solo = ok(
        s.releases
            .promote("solo", spec(9), rmeta("only"), None)
            .await,
        "promote",
    );
    expect_kind(
        s.releases.rollback("solo", "ops").await,
        ErrorKind::Conflict,
        "rollback of a single record",
    );
    assert_eq!(
        ok(s.releases.current("solo").await, "current"),
        solo,
        "unchanged"
    );
}

/// `rollback_to(seq)` restores an explicit record; a later promote then rollback returns to it.
pub async fn rollback_to_explicit(h: &dyn Harness) {
    let s = open(h).await;
    for i in 0..4 {
        ok(
            s.releases
                .promote("svc", spec(i), rmeta(&format!("v{i}")), None)
                .await,
            "promote",
        );
    }
    let r = ok(
        s.releases.rollback_to("svc", 1, "ops").await,
        "rollback_to 1",
    );
    assert_eq!(
        (r.seq, r.spec_digest, r.restored, r.previous),
        (4, spec(1), Some(1), Some(3)),
        "rollback_to record"
    );
    assert_eq!(
        r.metadata.promoted_by, "ops",
        "rollback_to records its actor"
    );
    let again = ok(
        s.releases.rollback("svc", "ops").await,
        "rollback after rollback_to",
    );
    assert_eq!(
        again.spec_digest,
        spec(0),
        "rolling back from a restored record walks back from it"
    );
    expect_kind(
        s.releases.rollback_to("svc", 99, "ops").await,
        ErrorKind::NotFound,
        "rollback_to a missing seq",
    );
    let p = ok(
        s.releases.promote("svc", spec(7), rmeta("v7"), None).await,
        "promote",
    );
    let back = ok(s.releases.rollback("svc", "ops").await, "rollback");
    assert_eq!(
        back.restored,
        Some(again.seq),
        "rollback after a promote restores the record current before it"
    );
    assert_eq!(back.spec_digest, again.spec_digest, "restored spec");
    assert_eq!(p.seq + 1, back.seq, "seqs stay gap-free");
}

/// `history(before, limit)` is newest first, exclusive, and `limit` takes the newest.
pub async fn history_newest_first_paginated(h: &dyn Harness) {
    let s = open(h).await;
    for i in 0..12 {
        ok(
            s.releases.promote("svc", spec(i), rmeta("v"), None).await,
            "promote",
        );
    }
    let all = ok(s.releases.history("svc", None, MAX_PAGE).await, "history");
    assert_eq!(
        seqs(&all),
        (0..12).rev().collect::<Vec<_>>(),
        "history is newest first"
    );
    assert_eq!(
        seqs(&ok(s.releases.history("svc", None, 3).await, "history")),
        vec![11, 10, 9],
        "limit takes the newest"
    );
    assert_eq!(
        seqs(&ok(s.releases.history("svc", Some(5), 2).await, "history")),
        vec![4, 3],
        "before is exclusive"
    );
    assert!(
        ok(s.releases.history("svc", Some(0), 10).await, "history").is_empty(),
        "nothing before 0"
    );
    assert!(
        ok(s.releases.history("svc", None, 0).await, "history").is_empty(),
        "limit 0"
    );
    let mut paged = Vec::new();
    let mut before = None;
    loop {
        let page = ok(s.releases.history("svc", before, 5).await, "history page");
        let Some(last) = page.last() else { break };
        before = Some(last.seq);
        paged.extend(page);
    }
    assert_eq!(paged, all, "pages joined by the exclusive `before` cursor");
}

/// `list_names` is ascending by bytes with `after`/`limit`; tricky names round-trip and stay isolated.
pub async fn names_listed_and_isolated(h: &dyn Harness) {
    let s = open(h).await;
    let names = tricky_ids();
    for (i, name) in names.iter().enumerate() {
        ok(
            s.releases
                .promote(name, spec(i as u64), rmeta(name), None)
                .await,
            &format!("promote {name:?}"),
        );
    }
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(
        ok(s.releases.list_names(None, MAX_PAGE).await, "list_names"),
        sorted,
        "names ascending by UTF-8 bytes"
    );
    assert_eq!(
        ok(s.releases.list_names(None, 2).await, "list_names"),
        sorted[..2],
        "limit after ordering"
    );
    assert_eq!(
        ok(
            s.releases.list_names(Some(&sorted[3]), 2).await,
            "list_names"
        ),
        sorted[4..6],
        "after is exclusive"
    );
    for (i, name) in names.iter().enumerate() {
        let history = ok(s.releases.history(name, None, MAX_PAGE).await, "history");
        assert_eq!(
            history.len(),
            1,
            "release {name:?} must hold only its own record"
        );
        assert_eq!(
            history[0].spec_digest,
            spec(i as u64),
            "release {name:?} isolated from look-alikes"
        );
        assert_eq!(&history[0].name, name, "name round trip");
        assert_eq!(
            &ok(s.releases.current(name).await, "current")
                .metadata
                .version_label,
            name,
            "current of {name:?}"
        );
    }
}

/// `expected_next_seq` makes a compare-and-promote; a mismatch is `Conflict` and changes nothing.
pub async fn compare_and_promote(h: &dyn Harness) {
    let s = open(h).await;
    expect_kind(
        s.releases
            .promote("svc", spec(0), rmeta("v"), Some(1))
            .await,
        ErrorKind::Conflict,
        "expected_next_seq 1 for a new name",
    );
    assert!(
        ok(s.releases.list_names(None, 10).await, "list_names").is_empty(),
        "a failed compare-and-promote creates nothing"
    );
    ok(
        s.releases
            .promote("svc", spec(0), rmeta("v"), Some(0))
            .await,
        "expected_next_seq 0 for a new name",
    );
    ok(
        s.releases
            .promote("svc", spec(1), rmeta("v"), Some(1))
            .await,
        "expected_next_seq 1",
    );
    let before = snapshot(&s, &[], &[]).await;
    for wrong in [0, 1, 3] {
        expect_kind(
            s.releases
                .promote("svc", spec(2), rmeta("v"), Some(wrong))
                .await,
            ErrorKind::Conflict,
            &format!("expected_next_seq {wrong} when next is 2"),
        );
    }
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a mismatched compare-and-promote",
    );
}

/// 32 tasks × 5 promotes to one name: all 160 kept, seqs gap-free, `previous` links intact.
pub async fn concurrent_promotes_all_kept(h: &dyn Harness) {
    let s = open(h).await;
    let releases = s.releases.clone();
    let results = race(32, |t| {
        let releases = releases.clone();
        async move {
            let mut out = Vec::new();
            for i in 0..5 {
                out.push(
                    releases
                        .promote("hot", spec((t * 5 + i) as u64), rmeta("v"), None)
                        .await,
                );
            }
            out
        }
    })
    .await;
    let mut seen = BTreeSet::new();
    for r in results.into_iter().flatten() {
        assert!(
            seen.insert(ok(r, "concurrent promote").seq),
            "seq handed out twice"
        );
    }
    assert_eq!(
        seen,
        (0..160).collect(),
        "concurrent promotes get gap-free seqs"
    );
    let history = ok(s.releases.history("hot", None, MAX_PAGE).await, "history");
    assert_eq!(history.len(), 160, "no promote lost");
    let specs: BTreeSet<_> = history.iter().map(|r| r.spec_digest).collect();
    assert_eq!(specs.len(), 160, "every promoted spec is in the history");
    for r in &history {
        assert_eq!(
            r.previous,
            r.seq.checked_sub(1),
            "record {} links to the one before it",
            r.seq
        );
    }
}

/// 16 tasks racing a compare-and-promote with the same expected seq: exactly one wins.
pub async fn racing_compare_and_promote(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.releases
            .promote("svc", spec(100), rmeta("base"), None)
            .await,
        "promote",
    );
    let releases = s.releases.clone();
    let results = race(16, |t| {
        let releases = releases.clone();
        async move {
            releases
                .promote("svc", spec(t as u64), rmeta("v"), Some(1))
                .await
        }
    })
    .await;
    let wins = results.iter().filter(|r| r.is_ok()).count();
    for r in &results {
        if let Err(e) = r {
            assert_eq!(
                e.kind(),
                ErrorKind::Conflict,
                "compare-and-promote losers get Conflict: {e}"
            );
        }
    }
    assert_eq!(wins, 1, "exactly one compare-and-promote must win");
    assert_eq!(
        ok(s.releases.history("svc", None, 10).await, "history").len(),
        2,
        "one record added"
    );
}

/// Invalid names, actors, labels and notes are `InvalidInput` and change nothing.
pub async fn hostile_input_rejected(h: &dyn Harness) {
    let s = open(h).await;
    ok(
        s.releases.promote("svc", spec(0), rmeta("v0"), None).await,
        "promote",
    );
    ok(
        s.releases.promote("svc", spec(1), rmeta("v1"), None).await,
        "promote",
    );
    let before = snapshot(&s, &[], &[]).await;
    let bad_input = ErrorKind::InvalidInput;
    for (bad, why) in invalid_ids() {
        expect_kind(
            s.releases.promote(&bad, spec(2), rmeta("v"), None).await,
            bad_input,
            &format!("promote with a name {why}"),
        );
        let m = ReleaseMetadata::new("v", bad.clone());
        expect_kind(
            s.releases.promote("svc", spec(2), m, None).await,
            bad_input,
            &format!("promote with promoted_by {why}"),
        );
        expect_kind(
            s.releases.rollback("svc", &bad).await,
            bad_input,
            &format!("rollback by an actor {why}"),
        );
        expect_kind(
            s.releases.rollback_to("svc", 0, &bad).await,
            bad_input,
            &format!("rollback_to by an actor {why}"),
        );
    }
    let long_label = ReleaseMetadata::new(oversized_text(), "ci");
    expect_kind(
        s.releases.promote("svc", spec(2), long_label, None).await,
        bad_input,
        "version label over 4 KiB",
    );
    let mut long_notes = rmeta("v");
    long_notes.notes = oversized_text();
    expect_kind(
        s.releases.promote("svc", spec(2), long_notes, None).await,
        bad_input,
        "notes over 4 KiB",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "hostile release input",
    );
}
