//! `by_agent` ordering and ranges, `resolve` chains.

use stowage_core::supersession::sort_newest_first;
use stowage_core::{AgentKey, Digest, Hlc, Resolution, Supersession, Timestamp};

use crate::harness::Harness;
use crate::util::{assertion, draft, ok, open, signer, superseding};

fn targets(records: &[Supersession]) -> Vec<Digest> {
    records.iter().map(|r| r.target).collect()
}

/// `by_agent` is newest first by (hlc, timestamp, target); `limit` takes the N newest; equal timestamps are both kept.
pub async fn by_agent_newest_first(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let times = [50u64, 10, 30, 30, 20, 40, 60, 5, 30, 45];
    let mut all = Vec::new();
    for (i, ms) in times.iter().enumerate() {
        let rec = superseding(&key, assertion(i as u64), None, *ms);
        ok(s.supersessions.put(rec.clone()).await, "put");
        all.push(rec);
    }
    let agent = AgentKey::of(&key);
    let got = ok(
        s.supersessions
            .by_agent(&agent, Timestamp::ZERO, None, None, 100)
            .await,
        "by_agent",
    );
    let mut expected = all.clone();
    sort_newest_first(&mut expected);
    assert_eq!(
        got.len(),
        times.len(),
        "by_agent keeps records with equal timestamps"
    );
    assert_eq!(
        targets(&got),
        targets(&expected),
        "by_agent must be newest first by (hlc, timestamp, target)"
    );
    let stamps: Vec<u64> = got.iter().map(|r| r.timestamp.as_millis()).collect();
    assert_eq!(
        stamps,
        vec![60, 50, 45, 40, 30, 30, 30, 20, 10, 5],
        "newest first by timestamp"
    );
    let top = ok(
        s.supersessions
            .by_agent(&agent, Timestamp::ZERO, None, None, 3)
            .await,
        "by_agent",
    );
    assert_eq!(
        top,
        expected[..3],
        "limit 3 must give the 3 newest, not the 3 oldest"
    );
    assert!(
        ok(
            s.supersessions
                .by_agent(&agent, Timestamp::ZERO, None, None, 0)
                .await,
            "by_agent"
        )
        .is_empty(),
        "limit 0"
    );
}

/// `by_agent(from, to)` is an inclusive range; records of other agents never show up.
pub async fn by_agent_inclusive_range_and_isolation(h: &dyn Harness) {
    let s = open(h).await;
    let (k0, k1) = (signer(0), signer(1));
    for ms in [10u64, 20, 30, 40, 50] {
        ok(
            s.supersessions
                .put(superseding(&k0, assertion(ms), None, ms))
                .await,
            "put",
        );
        ok(
            s.supersessions
                .put(superseding(&k1, assertion(1000 + ms), None, ms))
                .await,
            "put",
        );
    }
    let stamps = |v: Vec<Supersession>| {
        v.iter()
            .map(|r| r.timestamp.as_millis())
            .collect::<Vec<_>>()
    };
    let a0 = AgentKey::of(&k0);
    let range = |from: u64, to: Option<u64>| {
        let store = s.supersessions.clone();
        async move {
            store
                .by_agent(
                    &a0,
                    Timestamp::from_millis(from),
                    to.map(Timestamp::from_millis),
                    None,
                    100,
                )
                .await
        }
    };
    assert_eq!(
        stamps(ok(range(20, Some(40)).await, "by_agent")),
        vec![40, 30, 20],
        "from and to are inclusive"
    );
    assert_eq!(
        stamps(ok(range(30, Some(30)).await, "by_agent")),
        vec![30],
        "a one-instant range"
    );
    assert_eq!(
        stamps(ok(range(35, None).await, "by_agent")),
        vec![50, 40],
        "no upper bound when to is None"
    );
    assert!(
        ok(range(51, None).await, "by_agent").is_empty(),
        "nothing after the newest"
    );
    assert!(
        ok(range(41, Some(39)).await, "by_agent").is_empty(),
        "an empty range"
    );
    let theirs = ok(
        s.supersessions
            .by_agent(&AgentKey::of(&k1), Timestamp::ZERO, None, None, 100)
            .await,
        "by_agent",
    );
    assert!(
        theirs.iter().all(|r| r.agent == AgentKey::of(&k1)) && theirs.len() == 5,
        "by_agent returns only that agent's records"
    );
    let stranger = AgentKey::of(&signer(7));
    assert!(
        ok(
            s.supersessions
                .by_agent(&stranger, Timestamp::ZERO, None, None, 100)
                .await,
            "by_agent"
        )
        .is_empty(),
        "unknown agent"
    );
}

/// With hybrid logical clocks, `by_agent` orders by (physical, logical, node) before the timestamp.
pub async fn by_agent_hlc_ordering(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let hlc = |physical_ms, logical, node| {
        Some(Hlc {
            physical_ms,
            logical,
            node,
        })
    };
    let cases = [
        (1, 100, hlc(5, 0, 0)),
        (2, 50, hlc(6, 0, 0)),
        (3, 70, hlc(5, 1, 0)),
        (4, 60, hlc(5, 1, 1)),
        (5, 1000, None),
    ];
    for (n, ms, clock) in cases {
        let mut d = draft(assertion(n), None, ms);
        d.hlc = clock;
        ok(
            s.supersessions.put(Supersession::sign(&key, d)).await,
            "put",
        );
    }
    let got = ok(
        s.supersessions
            .by_agent(&AgentKey::of(&key), Timestamp::ZERO, None, None, 10)
            .await,
        "by_agent",
    );
    let expected: Vec<Digest> = [2, 4, 3, 1, 5].iter().map(|n| assertion(*n)).collect();
    assert_eq!(
        targets(&got),
        expected,
        "by_agent orders by hlc (physical, logical, node), records without an hlc last"
    );
    let top = ok(
        s.supersessions
            .by_agent(&AgentKey::of(&key), Timestamp::ZERO, None, None, 2)
            .await,
        "by_agent",
    );
    assert_eq!(
        targets(&top),
        expected[..2],
        "limit takes the newest by hlc"
    );
}

/// `resolve` follows replacements: `Current` at the chain's end, `Withdrawn` where a record has no replacement, with hop counts.
pub async fn resolve_chains(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let (a, b, c) = (assertion(1), assertion(2), assertion(3));
    let (d, e) = (assertion(4), assertion(5));
    ok(
        s.supersessions.put(superseding(&key, a, Some(b), 1)).await,
        "A→B",
    );
    ok(
        s.supersessions.put(superseding(&key, b, Some(c), 2)).await,
        "B→C",
    );
    ok(
        s.supersessions.put(superseding(&key, d, None, 3)).await,
        "D withdrawn",
    );
    ok(
        s.supersessions.put(superseding(&key, e, Some(d), 4)).await,
        "E→D",
    );
    let cases = [
        (a, Resolution::Current { hash: c, hops: 2 }),
        (b, Resolution::Current { hash: c, hops: 1 }),
        (c, Resolution::Current { hash: c, hops: 0 }),
        (d, Resolution::Withdrawn { hash: d, hops: 0 }),
        (e, Resolution::Withdrawn { hash: d, hops: 1 }),
        (
            assertion(99),
            Resolution::Current {
                hash: assertion(99),
                hops: 0,
            },
        ),
    ];
    for (start, expected) in cases {
        assert_eq!(
            ok(s.supersessions.resolve(&start).await, "resolve"),
            expected,
            "resolve({})",
            start.short()
        );
    }
    assert!(
        !ok(s.supersessions.is_superseded(&c).await, "is_superseded"),
        "the chain's end is not superseded"
    );
    let mut prev = c;
    for i in 0..30u64 {
        let next = assertion(500 + i);
        ok(
            s.supersessions
                .put(superseding(&key, prev, Some(next), 10 + i))
                .await,
            "extend the chain",
        );
        prev = next;
    }
    assert_eq!(
        ok(s.supersessions.resolve(&a).await, "resolve"),
        Resolution::Current {
            hash: prev,
            hops: 32
        },
        "a long chain resolves"
    );
}

/// Targets made of separator-like bytes (`0x00`, `:`, `/`, `0xff`) round-trip
/// and never collide: keys are not parsed by searching for a separator.
pub async fn binary_targets_isolated(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let mut mixed = [0u8; 32];
    mixed[..16].copy_from_slice(&[b':'; 16]);
    mixed[16..].copy_from_slice(&[0xff; 16]);
    let targets: Vec<Digest> = [[0u8; 32], [b':'; 32], [b'/'; 32], [0xff; 32], mixed]
        .into_iter()
        .map(Digest::from_array)
        .collect();
    let mut records = Vec::new();
    for (i, t) in targets.iter().enumerate() {
        let replacement = targets.get(i + 1).copied();
        let rec = superseding(&key, *t, replacement, 100 + i as u64);
        ok(
            s.supersessions.put(rec.clone()).await,
            "put with a separator-like target",
        );
        records.push(rec);
    }
    for rec in &records {
        assert_eq!(
            ok(s.supersessions.get(&rec.target).await, "get"),
            Some(rec.clone()),
            "the record of target {} round-trips",
            rec.target
        );
    }
    let all = ok(
        s.supersessions
            .by_agent(&AgentKey::of(&key), Timestamp::ZERO, None, None, 100)
            .await,
        "by_agent",
    );
    assert_eq!(
        all.len(),
        records.len(),
        "every separator-like target is listed once"
    );
    let last = targets[targets.len() - 1];
    assert_eq!(
        ok(s.supersessions.resolve(&targets[0]).await, "resolve"),
        Resolution::Withdrawn {
            hash: last,
            hops: 4
        },
        "resolve walks a chain of separator-like targets"
    );
}
