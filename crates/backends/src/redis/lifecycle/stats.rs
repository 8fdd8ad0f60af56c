//! Store statistics without decoding or scanning: entity counts are the
//! sizes of the listing indexes (`ZCARD`, one script on `{P:idx}`) and of
//! the supersession records hash (`HLEN`); the rest are counters kept in
//! `{P:stats}:counts` by the scripts that change them (see `docs/redis.md`,
//! "Statistics"). Three commands, each O(1).

use std::sync::Arc;

use stowage_core::lifecycle::StoreStats;
use stowage_core::Result;

use super::super::conn::{bytes, int, items, Op};
use super::super::Shared;

pub(super) async fn stats(sh: &Arc<Shared>) -> Result<StoreStats> {
    let what = "store statistics";
    let k = &sh.keys;
    let idx = [
        k.runs_all(),
        k.sessions_all(),
        k.releases_all(),
        k.blobs_all(),
    ];
    let idx_refs: Vec<&[u8]> = idx.iter().map(Vec::as_slice).collect();
    let mut counters = redis::cmd("HGETALL");
    counters.arg(k.stats());
    let mut sups = redis::cmd("HLEN");
    sups.arg(k.sup_records());
    let (sizes, counters, sups) = futures::try_join!(
        sh.conn
            .eval(&sh.scripts.life.index_sizes, &idx_refs, &[], Op::Read, what),
        sh.conn.query(&counters, Op::Read, what),
        sh.conn.query(&sups, Op::Read, what),
    )?;
    // Counters start when a store is first written by a version that keeps
    // them; deletes of older data may take them below zero: report 0.
    let n = |v: Option<i64>| v.and_then(|n| u64::try_from(n).ok()).unwrap_or(0);
    let sizes = items(sizes);
    let size = |i: usize| n(sizes.get(i).and_then(int));
    let mut stats = StoreStats::default();
    stats.runs = size(0);
    stats.sessions = size(1);
    stats.release_names = size(2);
    stats.blobs = size(3);
    stats.supersessions = n(int(&sups));
    let counters = match counters {
        redis::Value::Map(pairs) => pairs,
        other => {
            let flat = items(other);
            flat.chunks(2)
                .filter_map(|p| Some((p.first()?.clone(), p.get(1)?.clone())))
                .collect()
        }
    };
    for (field, value) in &counters {
        let value = n(int(value));
        match bytes(field).unwrap_or_default() {
            b"run_events" => stats.run_events = value,
            b"log_entries" => stats.log_entries = value,
            b"release_records" => stats.release_records = value,
            b"blob_bytes" => stats.blob_bytes = value,
            b"blob_references" => stats.blob_references = value,
            b"bytes" => stats.stored_bytes = value,
            _ => {}
        }
    }
    Ok(stats)
}
