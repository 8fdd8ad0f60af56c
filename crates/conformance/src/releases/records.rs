//! Promotion, `current`, rollbacks.

use stowage_core::validate::MAX_PAGE;
use stowage_core::{ErrorKind, ReleaseMetadata};

use super::seqs;
use crate::harness::Harness;
use crate::util::{assert_unchanged, expect_kind, ok, open, rmeta, snapshot, spec};

/// `promote` appends a record that becomes current; metadata round-trips; seqs are gap-free with `previous` links.
pub async fn promote_current_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    let mut metadata = ReleaseMetadata::new("v1.4.2 ü", "ci:bot");
    metadata.notes = "line1\nline2".into();
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
    let c = ok(s.releases.history("svc", Some(3), 1).await, "history");
    assert!(
        c.first().is_some_and(|c| back1.created_at >= c.created_at),
        "a rollback record has its own created_at, not the restored record's"
    );
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
