//! Histories, names, compare-and-promote, concurrency, hostile input.

use std::collections::BTreeSet;

use stowage_core::validate::MAX_PAGE;
use stowage_core::{ErrorKind, ReleaseMetadata};

use super::seqs;
use crate::harness::Harness;
use crate::util::{
    assert_unchanged, expect_kind, invalid_ids, ok, open, oversized_text, race, rmeta, snapshot,
    spec, tricky_ids,
};

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

/// An expected current seq makes a compare-and-promote; a mismatch (or any expectation on a name never promoted) is `Conflict` and changes nothing.
pub async fn compare_and_promote(h: &dyn Harness) {
    let s = open(h).await;
    for expected in [0, 1] {
        expect_kind(
            s.releases
                .promote("svc", spec(0), rmeta("v"), Some(expected))
                .await,
            ErrorKind::Conflict,
            &format!("expected current seq {expected} for a name never promoted"),
        );
    }
    assert!(
        ok(s.releases.list_names(None, 10).await, "list_names").is_empty(),
        "a failed compare-and-promote creates nothing"
    );
    ok(
        s.releases.promote("svc", spec(0), rmeta("v"), None).await,
        "first promote",
    );
    let second = ok(
        s.releases
            .promote("svc", spec(1), rmeta("v"), Some(0))
            .await,
        "expected current seq 0",
    );
    assert_eq!(
        second.seq, 1,
        "a compare-and-promote appends after the current record"
    );
    let before = snapshot(&s, &[], &[]).await;
    for wrong in [0, 2, 3] {
        expect_kind(
            s.releases
                .promote("svc", spec(2), rmeta("v"), Some(wrong))
                .await,
            ErrorKind::Conflict,
            &format!("expected current seq {wrong} when it is 1"),
        );
    }
    assert_unchanged(
        &before,
        &snapshot(&s, &[], &[]).await,
        "a mismatched compare-and-promote",
    );
    let back = ok(s.releases.rollback("svc", "ops").await, "rollback");
    let third = ok(
        s.releases
            .promote("svc", spec(3), rmeta("v"), Some(back.seq))
            .await,
        "compare-and-promote against a rollback record",
    );
    assert_eq!(third.seq, 3, "the rollback record is current");
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
                .promote("svc", spec(t as u64), rmeta("v"), Some(0))
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
