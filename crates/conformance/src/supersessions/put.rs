//! `put`: signatures, validation, append-only, cycles, races.

use stowage_core::validate::MAX_TEXT_BYTES;
use stowage_core::{
    AgentKey, ErrorKind, Hlc, PutOutcome, Signature, Supersession, SupersessionKind, Timestamp,
};

use crate::harness::Harness;
use crate::util::{
    assert_unchanged, assertion, draft, expect_kind, ok, open, oversized_text, race, signer,
    snapshot, superseding,
};

/// `put` stores a signed record: `get` returns it exactly, `is_superseded` is true; other targets are untouched.
pub async fn put_get_round_trip(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let kinds = [
        SupersessionKind::Invalidate,
        SupersessionKind::Correction,
        SupersessionKind::Outdated,
        SupersessionKind::Merged,
    ];
    for (i, kind) in kinds.into_iter().enumerate() {
        let mut d = draft(
            assertion(i as u64),
            Some(assertion(100 + i as u64)),
            1_000 + i as u64,
        );
        d.kind = kind;
        d.reason = format!("reason ü🚀 {{{i}}}\nline two");
        d.hlc = (i % 2 == 0).then_some(Hlc {
            physical_ms: 1_000 + i as u64,
            logical: i as u32,
            node: u64::MAX,
        });
        let rec = Supersession::sign(&key, d);
        assert_eq!(
            ok(s.supersessions.put(rec.clone()).await, "put"),
            PutOutcome::Stored,
            "a new record is Stored"
        );
        assert_eq!(
            ok(s.supersessions.get(&rec.target).await, "get"),
            Some(rec.clone()),
            "get returns the record exactly"
        );
        assert!(
            ok(
                s.supersessions.is_superseded(&rec.target).await,
                "is_superseded"
            ),
            "target is superseded"
        );
        assert!(
            !ok(
                s.supersessions
                    .is_superseded(&assertion(100 + i as u64))
                    .await,
                "is_superseded"
            ),
            "the replacement is not superseded"
        );
    }
    assert_eq!(
        ok(s.supersessions.get(&assertion(999)).await, "get"),
        None,
        "get of an unknown target is None"
    );
}

/// Putting the identical record again is a no-op (`AlreadyPresent`); a different record for the target is `Conflict` naming the target.
pub async fn put_idempotent_and_append_only(h: &dyn Harness) {
    let s = open(h).await;
    let rec = superseding(&signer(0), assertion(1), Some(assertion(2)), 10);
    assert_eq!(
        ok(s.supersessions.put(rec.clone()).await, "put"),
        PutOutcome::Stored,
        "first put"
    );
    assert_eq!(
        ok(s.supersessions.put(rec.clone()).await, "put"),
        PutOutcome::AlreadyPresent,
        "identical put is a no-op"
    );
    let agents = [AgentKey::of(&signer(0)), AgentKey::of(&signer(1))];
    let before = snapshot(&s, &agents, &[assertion(1)]).await;
    let others = [
        superseding(&signer(0), assertion(1), Some(assertion(3)), 10),
        superseding(&signer(0), assertion(1), None, 10),
        superseding(&signer(0), assertion(1), Some(assertion(2)), 11),
        superseding(&signer(1), assertion(1), Some(assertion(2)), 10),
    ];
    for other in others {
        let err = expect_kind(
            s.supersessions.put(other).await,
            ErrorKind::Conflict,
            "a different record for an already superseded target",
        );
        assert!(
            err.message().contains(assertion(1).short().as_str()),
            "the Conflict message names the target ({}): {err}",
            assertion(1).short()
        );
    }
    assert_unchanged(
        &before,
        &snapshot(&s, &agents, &[assertion(1)]).await,
        "a conflicting put",
    );
}

/// Forged, tampered, truncated or foreign signatures are `InvalidInput` and store nothing.
pub async fn bad_signatures_rejected(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let good = superseding(&key, assertion(1), Some(assertion(2)), 10);
    let mut forged = Vec::new();
    let mut flipped = good.clone();
    flipped.signature.0[0] ^= 1;
    forged.push((flipped, "a flipped signature bit"));
    let mut zero = good.clone();
    zero.signature = Signature([0; 64]);
    forged.push((zero, "an all-zero signature"));
    let mut foreign = good.clone();
    foreign.agent = AgentKey::of(&signer(1));
    forged.push((foreign, "another agent's key"));
    let mut weak = good.clone();
    weak.agent = AgentKey([0; 32]);
    forged.push((weak, "a small-order agent key"));
    let mut edits = Vec::new();
    let mut e = good.clone();
    e.reason.push('!');
    edits.push((e, "reason edited after signing"));
    let mut e = good.clone();
    e.timestamp = Timestamp::from_millis(11);
    edits.push((e, "timestamp edited after signing"));
    let mut e = good.clone();
    e.replacement = Some(assertion(3));
    edits.push((e, "replacement edited after signing"));
    let mut e = good.clone();
    e.replacement = None;
    edits.push((e, "replacement removed after signing"));
    let mut e = good.clone();
    e.kind = SupersessionKind::Merged;
    edits.push((e, "kind edited after signing"));
    let mut e = good.clone();
    e.hlc = Some(Hlc {
        physical_ms: 1,
        logical: 0,
        node: 0,
    });
    edits.push((e, "hlc added after signing"));
    let mut e = good.clone();
    e.target = assertion(9);
    edits.push((e, "target edited after signing"));
    forged.extend(edits);
    let agents = [AgentKey::of(&key), AgentKey::of(&signer(1))];
    let targets = [assertion(1), assertion(9)];
    let before = snapshot(&s, &agents, &targets).await;
    for (rec, why) in forged {
        expect_kind(
            s.supersessions.put(rec).await,
            ErrorKind::InvalidInput,
            &format!("put with {why}"),
        );
    }
    assert_unchanged(
        &before,
        &snapshot(&s, &agents, &targets).await,
        "a badly signed put",
    );
    let hex = good.signature.to_string();
    expect_kind(
        hex[..126].parse::<Signature>(),
        ErrorKind::InvalidInput,
        "parsing a truncated signature",
    );
    expect_kind(
        format!("{hex}00").parse::<Signature>(),
        ErrorKind::InvalidInput,
        "parsing an over-long signature",
    );
    expect_kind(
        good.agent.to_string()[..62].parse::<AgentKey>(),
        ErrorKind::InvalidInput,
        "parsing a truncated agent key",
    );
    assert_eq!(
        ok(s.supersessions.put(good).await, "put"),
        PutOutcome::Stored,
        "the genuine record is accepted"
    );
}

/// `target == replacement` and reasons over 4 KiB are `InvalidInput` and store nothing; 4 KiB exactly is fine.
pub async fn invalid_records_rejected(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let agents = [AgentKey::of(&key)];
    let before = snapshot(&s, &agents, &[assertion(1)]).await;
    let own = superseding(&key, assertion(1), Some(assertion(1)), 10);
    expect_kind(
        s.supersessions.put(own).await,
        ErrorKind::InvalidInput,
        "put with target == replacement",
    );
    let mut d = draft(assertion(1), None, 10);
    d.reason = oversized_text();
    expect_kind(
        s.supersessions.put(Supersession::sign(&key, d)).await,
        ErrorKind::InvalidInput,
        "put with a reason over 4 KiB",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &agents, &[assertion(1)]).await,
        "an invalid supersession",
    );
    let mut d = draft(assertion(1), None, 10);
    d.reason = "é".repeat(MAX_TEXT_BYTES / 2);
    let rec = Supersession::sign(&key, d);
    ok(
        s.supersessions.put(rec.clone()).await,
        "a reason of exactly 4 KiB",
    );
    assert_eq!(
        ok(s.supersessions.get(&assertion(1)).await, "get"),
        Some(rec),
        "long reason round trip"
    );
}

/// A replacement chain leading back to its target is `Conflict` (A→B then B→A; A→B→C then C→A).
pub async fn cycles_rejected(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let (a, b, c) = (assertion(1), assertion(2), assertion(3));
    ok(
        s.supersessions.put(superseding(&key, a, Some(b), 1)).await,
        "A→B",
    );
    let agents = [AgentKey::of(&key)];
    let before = snapshot(&s, &agents, &[a, b, c]).await;
    expect_kind(
        s.supersessions.put(superseding(&key, b, Some(a), 2)).await,
        ErrorKind::Conflict,
        "B→A after A→B (a cycle)",
    );
    assert_unchanged(
        &before,
        &snapshot(&s, &agents, &[a, b, c]).await,
        "a cyclic put",
    );
    ok(
        s.supersessions.put(superseding(&key, b, Some(c), 3)).await,
        "B→C",
    );
    expect_kind(
        s.supersessions.put(superseding(&key, c, Some(a), 4)).await,
        ErrorKind::Conflict,
        "C→A after A→B→C (a cycle)",
    );
    assert!(
        !ok(s.supersessions.is_superseded(&c).await, "is_superseded"),
        "the cyclic record was not stored"
    );
    ok(
        s.supersessions.put(superseding(&key, c, None, 5)).await,
        "withdrawing C is fine",
    );
}

/// 16 tasks putting different records for one target: exactly one `Stored`, the rest `Conflict`.
pub async fn racing_puts_one_stored(h: &dyn Harness) {
    let s = open(h).await;
    let store = s.supersessions.clone();
    let results = race(16, |t| {
        let store = store.clone();
        let rec = superseding(
            &signer(0),
            assertion(1),
            Some(assertion(100 + t as u64)),
            10,
        );
        async move { (rec.clone(), store.put(rec).await) }
    })
    .await;
    let mut winners = Vec::new();
    for (rec, r) in results {
        match r {
            Ok(PutOutcome::Stored) => winners.push(rec),
            Ok(PutOutcome::AlreadyPresent) => panic!("a different record cannot be AlreadyPresent"),
            Err(e) => assert_eq!(
                e.kind(),
                ErrorKind::Conflict,
                "racing put losers get Conflict: {e}"
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one of 16 racing different puts must be Stored"
    );
    assert_eq!(
        ok(s.supersessions.get(&assertion(1)).await, "get"),
        winners.pop(),
        "the winner is stored"
    );
}

/// 16 tasks putting the identical record: one `Stored`, the rest `AlreadyPresent`.
pub async fn racing_identical_puts(h: &dyn Harness) {
    let s = open(h).await;
    let rec = superseding(&signer(0), assertion(1), None, 10);
    let store = s.supersessions.clone();
    let results = race(16, |_| {
        let (store, rec) = (store.clone(), rec.clone());
        async move { store.put(rec).await }
    })
    .await;
    let stored = results
        .iter()
        .filter(|r| matches!(r, Ok(PutOutcome::Stored)))
        .count();
    for r in results {
        ok(r, "racing identical put");
    }
    assert_eq!(
        stored, 1,
        "exactly one racing identical put is Stored, the rest AlreadyPresent"
    );
    let by = ok(
        s.supersessions
            .by_agent(&rec.agent, Timestamp::ZERO, None, None, 10)
            .await,
        "by_agent",
    );
    assert_eq!(by, vec![rec], "stored once");
}

/// A→B racing B→A (20 rounds): never both stored, so no cycle ever gets in.
pub async fn racing_cycle_rejected(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    for round in 0..20u64 {
        let (a, b) = (assertion(1000 + 2 * round), assertion(1001 + 2 * round));
        let pair = [
            superseding(&key, a, Some(b), round),
            superseding(&key, b, Some(a), round),
        ];
        let store = s.supersessions.clone();
        let results = race(2, |t| {
            let (store, rec) = (store.clone(), pair[t].clone());
            async move { store.put(rec).await }
        })
        .await;
        let stored = results.iter().filter(|r| r.is_ok()).count();
        for r in &results {
            if let Err(e) = r {
                assert_eq!(
                    e.kind(),
                    ErrorKind::Conflict,
                    "the losing half of a racing cycle gets Conflict: {e}"
                );
            }
        }
        assert_eq!(
            stored, 1,
            "round {round}: of A→B racing B→A exactly one may be stored (else a cycle got in)"
        );
        ok(
            s.supersessions.resolve(&a).await,
            "resolve after a racing cycle",
        );
    }
}
