//! Damage to the records beside the data: a lost run head, an edited
//! supersession, a blob header whose size its chunks cannot hold.

use bytes::Bytes;
use serde_json::json;
use stowage_core::{AgentKey, ErrorKind, NewEvent, Timestamp};

use super::{stream_corrupted, tampered};
use crate::harness::{Harness, Tamper};
use crate::util::{assertion, expect_kind, meta, ok, open, signer, spec, superseding};

/// A run whose head record (event count and chain head) was lost: `verify_run`, `get_run` and (after a reopen, on durable backends, since a store may keep heads in memory) `append_event` report `Corrupted` — an append never reuses a stored seq; other runs are fine.
pub async fn lost_run_head_corrupted(h: &dyn Harness) {
    let s = open(h).await;
    let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    let other = ok(s.runs.create_run(spec(2), meta("a")).await, "create_run");
    for id in [run, other] {
        for i in 0..3 {
            let e = NewEvent::new("step", json!({ "i": i }));
            ok(s.runs.append_event(id, e).await, "append_event");
        }
    }
    let target = Tamper::RunHeadLost { run };
    if !tampered(h, &s, "integrity::lost_run_head_corrupted", target).await {
        return;
    }
    expect_kind(
        s.runs.verify_run(run).await,
        ErrorKind::Corrupted,
        "verify_run of a run whose head was lost",
    );
    expect_kind(
        s.runs.get_run(run).await,
        ErrorKind::Corrupted,
        "get_run of a run whose head was lost (not a shorter log)",
    );
    let events = ok(s.runs.read_events(other, None, 10).await, "read_events");
    assert_eq!(events.len(), 3, "other runs unaffected");
    // A store that keeps run heads in memory learns of damage done behind
    // its back when it opens the data again.
    if !s.capabilities.survives_kill() {
        return;
    }
    let level = s.capabilities.durability;
    let s = match h.reopen(s).await {
        Ok(s) => s,
        Err(e) => panic!("the backend claims durability {level}, so its harness must reopen: {e}"),
    };
    expect_kind(
        s.runs
            .append_event(run, NewEvent::new("step", json!("more")))
            .await,
        ErrorKind::Corrupted,
        "append_event to a run whose head was lost (never overwriting seq 0)",
    );
    expect_kind(
        s.runs.verify_run(run).await,
        ErrorKind::Corrupted,
        "verify_run after the refused append",
    );
    let events = ok(s.runs.read_events(other, None, 10).await, "read_events");
    assert_eq!(events.len(), 3, "other runs unaffected");
    ok(
        s.runs.verify_run(other).await,
        "verify_run of an undamaged run",
    );
}

/// A supersession edited in storage (its signature no longer matches): `get`, `resolve` and `by_agent` report `Corrupted`, never follow it; other records are fine.
pub async fn tampered_supersession_corrupted(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(1);
    let (a, b, c) = (assertion(1), assertion(2), assertion(3));
    ok(
        s.supersessions
            .put(superseding(&key, a, Some(b), 1_000))
            .await,
        "put",
    );
    let bystander = superseding(&signer(2), c, None, 2_000);
    ok(s.supersessions.put(bystander.clone()).await, "put");
    if !tampered(
        h,
        &s,
        "integrity::tampered_supersession_corrupted",
        Tamper::Supersession { target: a },
    )
    .await
    {
        return;
    }
    expect_kind(
        s.supersessions.get(&a).await,
        ErrorKind::Corrupted,
        "get of an edited supersession",
    );
    expect_kind(
        s.supersessions.resolve(&a).await,
        ErrorKind::Corrupted,
        "resolve through an edited supersession",
    );
    let agent = AgentKey::of(&key);
    expect_kind(
        s.supersessions
            .by_agent(&agent, Timestamp::ZERO, None, None, 10)
            .await,
        ErrorKind::Corrupted,
        "by_agent listing an edited supersession",
    );
    assert_eq!(
        ok(s.supersessions.get(&c).await, "get of an undamaged record"),
        Some(bystander),
        "other records unaffected"
    );
}

/// A blob header whose size its chunks cannot hold: `get`, `stat`, `verify` and `get_stream` report `Corrupted` (never a panic, never wrong bytes); other blobs are fine.
pub async fn damaged_blob_header_corrupted(h: &dyn Harness) {
    let s = open(h).await;
    let bytes = Bytes::from((0..5000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let d = ok(s.cas.put(bytes).await, "put");
    let other = ok(s.cas.put(Bytes::from_static(b"bystander")).await, "put");
    let check = "integrity::damaged_blob_header_corrupted";
    if !tampered(h, &s, check, Tamper::BlobSize(d)).await {
        return;
    }
    expect_kind(s.cas.get(&d).await, ErrorKind::Corrupted, "cas.get");
    expect_kind(s.cas.stat(&d).await, ErrorKind::Corrupted, "cas.stat");
    expect_kind(s.cas.verify(&d).await, ErrorKind::Corrupted, "cas.verify");
    stream_corrupted(&s, &d).await;
    assert_eq!(
        ok(s.cas.get(&other).await, "get of an undamaged blob").as_ref(),
        b"bystander",
        "other blobs unaffected"
    );
}
