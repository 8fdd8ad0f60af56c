//! Durability-level checks (SPEC §2): what a backend's
//! [`DurabilityLevel`](stowage_core::DurabilityLevel) claims, it keeps.
//!
//! * `None`: nothing is claimed; the reopen checks do not apply.
//! * `ProcessCrash`, `AsConfigured`: acknowledged data survives closing and
//!   reopening the store ([`crate::reopen`]; the harness must reopen).
//! * `PowerLoss`: acknowledged data also survives a simulated power loss
//!   ([`power_loss_keeps_what_was_acknowledged`], through
//!   [`Harness::lose_power`]); a harness that cannot simulate one skips it
//!   (the backend's own crash tests must then cover the claim).

use bytes::Bytes;
use stowage_core::Stores;

use crate::harness::Harness;
use crate::util::{entry, event, meta, ok, open, rmeta, skipped, snapshot, spec};

/// Writes a little of every store and returns the acknowledged state.
async fn acknowledged_writes(s: &Stores) -> String {
    ok(s.cas.put(Bytes::from_static(b"kept")).await, "cas.put");
    ok(s.cas.put(Bytes::from(vec![7u8; 100_000])).await, "cas.put");
    let run = ok(s.runs.create_run(spec(1), meta("a")).await, "create_run");
    for i in 0..3 {
        ok(
            s.runs.append_event(run, event("k", i)).await,
            "append_event",
        );
    }
    ok(
        s.releases.promote("rel", spec(1), rmeta("v1"), None).await,
        "promote",
    );
    ok(
        s.sessions
            .create_session("s", serde_json::json!({ "v": 1 }))
            .await,
        "create_session",
    );
    for i in 0..3u8 {
        ok(
            s.sessions.append_log("s", entry(vec![i; 10])).await,
            "append_log",
        );
    }
    snapshot(s, &[], &[]).await
}

/// A backend claiming `PowerLoss` keeps every acknowledged write across a
/// simulated power loss, and the store takes writes afterwards.
pub async fn power_loss_keeps_what_was_acknowledged(h: &dyn Harness) {
    const CHECK: &str = "durability::power_loss_keeps_what_was_acknowledged";
    let s = open(h).await;
    let level = s.capabilities.durability;
    if !level.survives_power_loss() {
        skipped(
            CHECK,
            format!(
                "backend {:?} claims durability {level}, which does not promise to survive power loss",
                s.capabilities.backend
            ),
        );
        return;
    }
    let before = acknowledged_writes(&s).await;
    let s = match h.lose_power(s).await {
        Ok(s) => s,
        Err(e) if e.kind() == stowage_core::ErrorKind::Unsupported => {
            skipped(
                CHECK,
                format!("{e}; the backend's own crash tests must cover it"),
            );
            return;
        }
        Err(e) => panic!("{CHECK}: reopening after a simulated power loss failed: {e}"),
    };
    assert_eq!(
        snapshot(&s, &[], &[]).await,
        before,
        "{CHECK}: the backend claims durability {level}, yet acknowledged writes were lost \
         at a simulated power loss"
    );
    ok(
        s.cas.put(Bytes::from_static(b"after")).await,
        "cas.put after power loss",
    );
}
