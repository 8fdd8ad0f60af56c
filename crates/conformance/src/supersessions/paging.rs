//! `by_agent` cursors (exact while the agent keeps writing) and `list`.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use stowage_core::supersession::sort_newest_first;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{
    AgentKey, Digest, Hlc, Supersession, SupersessionCursor, SupersessionStore, Timestamp,
};

use crate::harness::Harness;
use crate::util::{assertion, draft, ok, open, signer, superseding};

fn targets(records: &[Supersession]) -> Vec<Digest> {
    records.iter().map(|r| r.target).collect()
}

/// Every record of `agent` in `[from, to]`, page by page of `limit`, each
/// page strictly after the previous page's last record.
async fn walk(
    store: &dyn SupersessionStore,
    agent: &AgentKey,
    from: u64,
    to: Option<u64>,
    limit: usize,
) -> Vec<Supersession> {
    let mut out: Vec<Supersession> = Vec::new();
    let mut after = None;
    for _ in 0..100_000 {
        let page = ok(
            store
                .by_agent(
                    agent,
                    Timestamp::from_millis(from),
                    to.map(Timestamp::from_millis),
                    after,
                    limit,
                )
                .await,
            "by_agent page",
        );
        assert!(page.len() <= limit, "a page holds at most `limit` records");
        let Some(last) = page.last() else {
            return out;
        };
        after = Some(SupersessionCursor::of(last));
        out.extend(page);
    }
    panic!("paging by_agent never ended (is the cursor ignored?)");
}

fn assert_each_once(got: &[Supersession], expected: &[Supersession], what: &str) {
    let unique: BTreeSet<Digest> = got.iter().map(|r| r.target).collect();
    assert_eq!(
        unique.len(),
        got.len(),
        "{what}: a record came back twice ({} returned, {} distinct)",
        got.len(),
        unique.len()
    );
    assert_eq!(
        targets(got),
        targets(expected),
        "{what}: every record exactly once, newest first by (hlc, timestamp, target)"
    );
}

/// More records at one timestamp than `limit` page exactly with the `after` cursor.
pub async fn by_agent_pages_one_timestamp(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let mut all = Vec::new();
    for i in 0..23u64 {
        let rec = superseding(&key, assertion(i), None, 77);
        ok(s.supersessions.put(rec.clone()).await, "put");
        all.push(rec);
    }
    let other = superseding(&key, assertion(100), None, 78);
    ok(s.supersessions.put(other).await, "put");
    sort_newest_first(&mut all);
    let agent = AgentKey::of(&key);
    for limit in [1, 5, 7, 22, 23] {
        let got = walk(&*s.supersessions, &agent, 77, Some(77), limit).await;
        assert_each_once(
            &got,
            &all,
            &format!("paging 23 records at one ms by {limit}"),
        );
    }
    let mut with_newer = walk(&*s.supersessions, &agent, 0, None, 4).await;
    assert_eq!(with_newer.remove(0).target, assertion(100), "newest first");
    assert_each_once(&with_newer, &all, "paging past a newer record");
}

/// Records with hybrid logical clocks page in hlc order, whatever their timestamps.
pub async fn by_agent_pages_with_hlc(h: &dyn Harness) {
    let s = open(h).await;
    let key = signer(0);
    let mut all = Vec::new();
    for i in 0..30u64 {
        let mut d = draft(assertion(i), None, 1000 - (i * 7) % 50);
        // Some without an hlc; the rest with a few equal physical/logical readings.
        d.hlc = (i % 4 != 0).then(|| Hlc {
            physical_ms: 500 + i % 3,
            logical: (i % 2) as u32,
            node: i % 5,
        });
        let rec = Supersession::sign(&key, d);
        ok(s.supersessions.put(rec.clone()).await, "put");
        all.push(rec);
    }
    sort_newest_first(&mut all);
    let agent = AgentKey::of(&key);
    for limit in [1, 2, 3, 29] {
        let got = walk(&*s.supersessions, &agent, 0, None, limit).await;
        assert_each_once(&got, &all, &format!("paging hlc records by {limit}"));
    }
    let window: Vec<_> = all
        .iter()
        .filter(|r| (960..=990).contains(&r.timestamp.as_millis()))
        .cloned()
        .collect();
    assert!(window.len() > 3, "the window holds several records");
    let got = walk(&*s.supersessions, &agent, 960, Some(990), 2).await;
    assert_each_once(&got, &window, "paging an inclusive window of hlc records");
}

/// A cursor is a position: one from another agent's record pages this agent's older records; one newer than the window changes nothing; one older than it gives an empty page; it survives JSON.
pub async fn by_agent_cursor_positions(h: &dyn Harness) {
    let s = open(h).await;
    let (k0, k1) = (signer(0), signer(1));
    let mut mine = Vec::new();
    for ms in [10u64, 20, 30, 40, 50] {
        let rec = superseding(&k0, assertion(ms), None, ms);
        ok(s.supersessions.put(rec.clone()).await, "put");
        mine.push(rec);
    }
    let foreign = superseding(&k1, assertion(1000), None, 35);
    ok(s.supersessions.put(foreign.clone()).await, "put");
    sort_newest_first(&mut mine);
    let agent = AgentKey::of(&k0);
    let page = |from: u64, to: Option<u64>, after: Option<SupersessionCursor>| {
        let store = s.supersessions.clone();
        async move {
            ok(
                store
                    .by_agent(
                        &agent,
                        Timestamp::from_millis(from),
                        to.map(Timestamp::from_millis),
                        after,
                        MAX_PAGE,
                    )
                    .await,
                "by_agent",
            )
        }
    };
    let stamps =
        |v: Vec<Supersession>| -> Vec<u64> { v.iter().map(|r| r.timestamp.as_millis()).collect() };
    let from_foreign = page(0, None, Some(SupersessionCursor::of(&foreign))).await;
    assert_eq!(
        stamps(from_foreign),
        vec![30, 20, 10],
        "a cursor from another agent's record at 35 ms: this agent's records older than it"
    );
    let newest = SupersessionCursor::of(&mine[0]);
    assert_eq!(
        stamps(page(10, Some(40), Some(newest)).await),
        vec![40, 30, 20, 10],
        "a cursor newer than the window leaves the window whole"
    );
    assert!(
        page(30, Some(50), Some(SupersessionCursor::of(&mine[4])))
            .await
            .is_empty(),
        "a cursor older than the window gives an empty page"
    );
    assert_eq!(
        stamps(page(20, Some(40), Some(SupersessionCursor::of(&mine[1]))).await),
        vec![30, 20],
        "the cursor is exclusive and the window inclusive"
    );
    let text = serde_json::to_string(&SupersessionCursor::of(&mine[2]))
        .unwrap_or_else(|e| panic!("a cursor serializes: {e}"));
    let back: SupersessionCursor =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("a cursor deserializes: {e}"));
    assert_eq!(
        stamps(page(0, None, Some(back)).await),
        vec![20, 10],
        "a cursor read back from JSON pages the same"
    );
}

/// `by_agent` over a fixed window while the same agent keeps adding newer records returns each record of the window exactly once (whole, by `limit`, and paged).
pub async fn by_agent_exact_while_agent_writes(h: &dyn Harness) {
    const IN_WINDOW: u64 = 600;
    let s = open(h).await;
    let key = signer(0);
    let mut window = Vec::new();
    for i in 0..IN_WINDOW {
        // 100..=399 ms, two records per millisecond.
        let rec = superseding(&key, assertion(i), None, 100 + i / 2);
        ok(s.supersessions.put(rec.clone()).await, "put");
        window.push(rec);
    }
    sort_newest_first(&mut window);
    let agent = AgentKey::of(&key);
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (store, stop, key) = (s.supersessions.clone(), stop.clone(), key.clone());
        tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::SeqCst) && n < 100_000 {
                let rec = superseding(&key, assertion(1_000_000 + n), None, 1000 + n);
                store.put(rec).await?;
                n += 1;
                if n.is_multiple_of(8) {
                    tokio::task::yield_now().await;
                }
            }
            Ok::<u64, stowage_core::Error>(n)
        })
    };
    for round in 0..3 {
        let whole = ok(
            s.supersessions
                .by_agent(
                    &agent,
                    Timestamp::from_millis(100),
                    Some(Timestamp::from_millis(399)),
                    None,
                    MAX_PAGE,
                )
                .await,
            "by_agent",
        );
        assert_each_once(&whole, &window, &format!("round {round}: the whole window"));
        let newest = ok(
            s.supersessions
                .by_agent(
                    &agent,
                    Timestamp::from_millis(100),
                    Some(Timestamp::from_millis(399)),
                    None,
                    450,
                )
                .await,
            "by_agent",
        );
        assert_each_once(
            &newest,
            &window[..450],
            &format!("round {round}: limit 450"),
        );
        let paged = walk(&*s.supersessions, &agent, 100, Some(399), 97).await;
        assert_each_once(&paged, &window, &format!("round {round}: paged by 97"));
        let open_ended: Vec<_> = walk(&*s.supersessions, &agent, 100, None, 211)
            .await
            .into_iter()
            .filter(|r| r.timestamp.as_millis() <= 399)
            .collect();
        assert_each_once(
            &open_ended,
            &window,
            &format!("round {round}: paged by 211 with the newer records in range"),
        );
    }
    stop.store(true, Ordering::SeqCst);
    let written = match writer.await {
        Ok(r) => ok(r, "concurrent put"),
        Err(e) => panic!("the writer task failed: {e}"),
    };
    assert!(written > 0, "the agent kept writing during the reads");
}

/// `list` returns every supersession of every agent ascending by target, paged exactly by the `after` target.
pub async fn list_ascending_paginated(h: &dyn Harness) {
    let s = open(h).await;
    assert!(
        ok(s.supersessions.list(None, 10).await, "list").is_empty(),
        "an empty store lists nothing"
    );
    let mut all = Vec::new();
    for i in 0..17u64 {
        let key = signer((i % 3) as u8);
        let rec = superseding(&key, assertion(i), Some(assertion(500 + i)), 10 + i % 4);
        ok(s.supersessions.put(rec.clone()).await, "put");
        all.push(rec);
    }
    all.sort_by_key(|r| r.target);
    let whole = ok(s.supersessions.list(None, MAX_PAGE).await, "list");
    assert_eq!(whole, all, "list: every record, ascending by target");
    for limit in [1, 4, 16] {
        let mut got = Vec::new();
        let mut after = None;
        loop {
            let page = ok(s.supersessions.list(after, limit).await, "list page");
            assert!(page.len() <= limit, "a page holds at most `limit`");
            let Some(last) = page.last() else { break };
            after = Some(last.target);
            got.extend(page);
        }
        assert_eq!(
            got, all,
            "list paged by {limit}: each record once, ascending"
        );
    }
    let between = Digest::of(b"not a stored target");
    let expected: Vec<_> = all.iter().filter(|r| r.target > between).cloned().collect();
    assert_eq!(
        ok(s.supersessions.list(Some(between), MAX_PAGE).await, "list"),
        expected,
        "`after` need not be stored: strictly greater targets"
    );
    assert!(
        ok(s.supersessions.list(None, 0).await, "list").is_empty(),
        "limit 0"
    );
}
