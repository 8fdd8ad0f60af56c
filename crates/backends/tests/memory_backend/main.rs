//! Tests of the memory backend: fork, the integrity hooks (through the
//! conformance [`Harness`]), URL handling, streaming, the ordering and
//! idempotency rules it must get right; races on the subtle paths are in
//! `races.rs`. The full conformance suite runs separately.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use serde_json::json;
use stowage_backends::memory::MemoryBackend;
use stowage_conformance::{Harness, Tamper};
use stowage_core::{
    AgentKey, Clock, Digest, ErrorKind, IdGenerator, LogKind, NewEvent, NewLogEntry, PutOutcome,
    ReleaseMetadata, Result, RunFilter, RunId, RunMetadata, RunStatus, RunSummary, SigningKey,
    StoreEnv, Stores, Supersession, SupersessionDraft, SupersessionKind, Timestamp,
};

/// A clock that advances one millisecond per reading.
#[derive(Debug, Default)]
struct TickClock(AtomicU64);

impl Clock for TickClock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(1_000 + self.0.fetch_add(1, Ordering::SeqCst))
    }
}

/// Run ids from a counter.
#[derive(Debug, Default)]
struct CountingIds(AtomicU64);

impl IdGenerator for CountingIds {
    fn new_run_id(&self, now: Timestamp) -> RunId {
        RunId::new_v7(now, u128::from(self.0.fetch_add(1, Ordering::SeqCst)))
    }
}

/// The harness the conformance suite uses for this backend: tampering goes
/// through the `corrupt_*` hooks.
struct MemoryHarness(MemoryBackend);

#[async_trait]
impl Harness for MemoryHarness {
    async fn open(&self) -> Result<Stores> {
        Ok(self.0.stores())
    }

    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        stowage_conformance::tamper_engine(self.0.engine(), target).await
    }
}

fn env() -> StoreEnv {
    StoreEnv::new(
        Arc::new(TickClock::default()),
        Arc::new(CountingIds::default()),
    )
}

fn backend() -> MemoryBackend {
    MemoryBackend::new(env())
}

async fn new_run(stores: &Stores, agent: &str) -> RunId {
    let runs = &stores.runs;
    runs.create_run(Digest::of(b"spec"), RunMetadata::new(agent))
        .await
        .unwrap()
}

fn meta() -> ReleaseMetadata {
    ReleaseMetadata::new("v", "ci")
}

fn entry(key: Option<&str>, payload: &'static [u8]) -> NewLogEntry {
    let mut e = NewLogEntry::new(LogKind::Incoming, "user", "text", payload);
    e.idempotency_key = key.map(str::to_owned);
    e
}

fn superseding(key: &SigningKey, target: &[u8], by: Option<&[u8]>, ms: u64) -> Supersession {
    let draft = SupersessionDraft::new(
        Digest::of(target),
        by.map(Digest::of),
        SupersessionKind::Correction,
        "test",
        Timestamp::from_millis(ms),
    );
    Supersession::sign(key, draft)
}

fn kind<T: std::fmt::Debug>(r: Result<T>) -> ErrorKind {
    r.unwrap_err().kind()
}

mod races;

#[tokio::test]
async fn open_accepts_only_bare_memory_urls() {
    let stores = stowage_backends::open("memory://").await.unwrap();
    let caps = &stores.capabilities;
    assert_eq!(*caps, MemoryBackend::capabilities());
    assert_eq!(caps.max_blob_size, 256 * 1024 * 1024);
    assert!(caps.streaming && !caps.survives_kill() && !caps.shared);
    for bad in ["memory://host", "memory:///tmp/x", "memory://?prefix=a"] {
        let err = stowage_backends::open(bad).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{bad}");
    }
}

#[tokio::test]
async fn blobs_stream_in_chunks_and_reject_oversize() {
    let cas = backend().stores().cas;
    let empty = cas.put(Bytes::new()).await.unwrap();
    assert_eq!(empty, Digest::of(b""));
    assert!(cas.get(&empty).await.unwrap().is_empty());
    assert_eq!(cas.get_stream(&empty).await.unwrap().count().await, 0);

    // Stored (and streamed) in chunks of 1 MiB.
    let big = Bytes::from((0..2_600_000u32).map(|i| i as u8).collect::<Vec<_>>());
    let d = cas.put(big.clone()).await.unwrap();
    let stream = cas.get_stream(&d).await.unwrap();
    let chunks: Vec<Bytes> = stream.map(Result::unwrap).collect().await;
    assert_eq!(chunks.len(), 3);
    assert_eq!(chunks.concat(), big.to_vec());
    cas.verify(&d).await.unwrap();

    let reader = Box::pin(std::io::Cursor::new(b"streamed".to_vec()));
    assert_eq!(
        cas.put_stream(reader).await.unwrap(),
        Digest::of(b"streamed")
    );
    // Zeroed allocations are lazy, so this costs no real memory.
    let too_big = Bytes::from(vec![0u8; 256 * 1024 * 1024 + 1]);
    assert_eq!(kind(cas.put(too_big).await), ErrorKind::InvalidInput);
    assert_eq!(cas.list(None, 10).await.unwrap().len(), 3);
}

#[tokio::test]
async fn tampering_is_reported_as_corrupted_never_returned() {
    let harness = MemoryHarness(backend());
    let stores = harness.open().await.unwrap();
    let (cas, runs, sessions) = (&stores.cas, &stores.runs, &stores.sessions);
    let mut blobs = Vec::new();
    for bytes in [&b""[..], b"some bytes"] {
        blobs.push(cas.put(Bytes::copy_from_slice(bytes)).await.unwrap());
    }
    let run = new_run(&stores, "agent").await;
    for n in 0..3 {
        let e = NewEvent::new("step", json!({ "n": n }));
        runs.append_event(run, e).await.unwrap();
    }
    let id = "chat/../🚀";
    sessions.create_session(id, json!({})).await.unwrap();
    for payload in [&b""[..], b"hello"] {
        sessions.append_log(id, entry(None, payload)).await.unwrap();
    }
    assert_eq!(runs.verify_run(run).await.unwrap().len, 3);
    assert_eq!(sessions.verify_log(id).await.unwrap().len, 2);

    for d in &blobs {
        harness.tamper(&stores, Tamper::Blob(*d)).await.unwrap();
        assert_eq!(kind(cas.get(d).await), ErrorKind::Corrupted);
        assert_eq!(kind(cas.verify(d).await), ErrorKind::Corrupted);
        let streamed = match cas.get_stream(d).await {
            Ok(stream) => stream.try_collect::<Vec<_>>().await.map(drop),
            Err(e) => Err(e),
        };
        assert_eq!(kind(streamed), ErrorKind::Corrupted);
        assert!(cas.contains(d).await.unwrap());
    }
    harness
        .tamper(&stores, Tamper::RunEvent { run, seq: 1 })
        .await
        .unwrap();
    let err = runs.verify_run(run).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    assert!(err.message().contains("seq 1"), "{err}");
    let session = id.to_owned();
    let log_entry = Tamper::LogEntry { session, seq: 0 };
    harness.tamper(&stores, log_entry).await.unwrap();
    let err = sessions.verify_log(id).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted);
    assert!(err.message().contains("seq 0"), "{err}");

    let backend = &harness.0;
    assert!(!backend.corrupt_blob(&Digest::of(b"never stored")));
    assert!(!backend.corrupt_run_event(run, 3));
    assert!(!backend.corrupt_log_entry("other", 0));
    assert!(!backend.corrupt_log_entry(id, 2));
}

#[tokio::test]
async fn fork_is_a_deep_independent_copy() {
    let backend = backend();
    let stores = backend.stores();
    let (s, r) = (&stores.sessions, &stores.releases);
    let d = stores.cas.put(Bytes::from_static(b"x")).await.unwrap();
    s.create_session("s", json!({"v": 1})).await.unwrap();
    s.append_log("s", entry(Some("m1"), b"a")).await.unwrap();
    r.promote("r", d, meta(), None).await.unwrap();

    let fork = backend.fork_with(env());
    let forked = fork.stores();
    let (fs, fr) = (&forked.sessions, &forked.releases);
    stores.cas.delete(&d).await.unwrap();
    s.append_log("s", entry(None, b"b")).await.unwrap();
    fr.promote("r", d, meta(), None).await.unwrap();
    assert!(fork.corrupt_log_entry("s", 0));

    assert!(forked.cas.contains(&d).await.unwrap());
    // The fork's entry 0 was damaged above: its reads say so (the memory
    // engine keeps no checksum, so each entry's hash is checked), and the
    // original, untouched, reads both of its entries.
    let damaged = fs.read_log("s", None, 10).await.unwrap_err();
    assert_eq!(damaged.kind(), ErrorKind::Corrupted, "{damaged}");
    assert_eq!(s.read_log("s", None, 10).await.unwrap().len(), 2);
    assert_eq!(r.history("r", None, 10).await.unwrap().len(), 1);
    assert_eq!(fr.history("r", None, 10).await.unwrap().len(), 2);
    s.verify_log("s").await.unwrap();
    // The fork kept the idempotency keys too: a retry of "m1" finds the
    // (damaged) entry 0 instead of appending a new one.
    let retried = fs.append_log("s", entry(Some("m1"), b"a")).await;
    assert!(retried.is_err(), "{retried:?}");
    let session = fs.load_session("s").await.unwrap().unwrap();
    assert_eq!(session.log_len, 1, "the retry appended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fork_is_a_point_in_time_snapshot_under_writers() {
    // The writer always promotes "a" before "b", so at any instant
    // len(a) is len(b) or len(b) + 1; a copy taken entity by entity while
    // the writer runs would eventually see b ahead of a, or a two ahead.
    let backend = backend();
    let releases = backend.stores().releases;
    let writer = tokio::spawn(async move {
        for _ in 0..5_000 {
            for name in ["a", "b"] {
                let d = Digest::of(name.as_bytes());
                releases.promote(name, d, meta(), None).await.unwrap();
            }
        }
    });
    let mut forks = 0;
    while !writer.is_finished() {
        let snapshot = backend.fork().stores().releases;
        let mut len = [0; 2];
        for (n, name) in len.iter_mut().zip(["a", "b"]) {
            *n = snapshot.current(name).await.map_or(0, |c| c.seq + 1);
        }
        let [a, b] = len;
        assert!(a == b || a == b + 1, "fork saw a={a} b={b}");
        forks += 1;
        tokio::task::yield_now().await;
    }
    writer.await.unwrap();
    assert!(forks > 0);
}

#[tokio::test]
async fn run_idempotency_wins_over_status_and_expected_seq() {
    let stores = backend().stores();
    let runs = &stores.runs;
    let run = new_run(&stores, "agent").await;
    let mut e = NewEvent::new("step", json!(1));
    e.idempotency_key = Some("k".into());
    let first = runs.append_event(run, e.clone()).await.unwrap();
    runs.complete_run(run, RunSummary::new("done"))
        .await
        .unwrap();
    e.expected_seq = Some(7);
    assert_eq!(runs.append_event(run, e).await.unwrap(), first);
    let fresh = NewEvent::new("step", json!(2));
    assert_eq!(
        kind(runs.append_event(run, fresh).await),
        ErrorKind::Conflict
    );
    assert_eq!(runs.get_run(run).await.unwrap().event_count, 1);
}

#[tokio::test]
async fn list_runs_is_newest_first_with_exclusive_cursor() {
    let stores = backend().stores();
    let runs = &stores.runs;
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(new_run(&stores, if i % 2 == 0 { "even" } else { "odd" }).await);
    }
    runs.fail_run(ids[4], RunSummary::new("x")).await.unwrap();
    let listed = |page: Vec<stowage_core::Run>| page.iter().map(|r| r.id).collect::<Vec<_>>();
    let all = RunFilter::default();
    let page = runs.list_runs(&all, None, 2).await.unwrap();
    assert_eq!(listed(page), [ids[5], ids[4]]);
    let next = runs.list_runs(&all, Some(ids[4]), 10).await.unwrap();
    let want: Vec<RunId> = ids[..4].iter().rev().copied().collect();
    assert_eq!(listed(next), want);
    let even = RunFilter::all().agent("even").status(RunStatus::Running);
    let got = runs.list_runs(&even, None, 10).await.unwrap();
    assert_eq!(listed(got), [ids[2], ids[0]]);
}

#[tokio::test]
async fn releases_roll_back_step_by_step_and_hide_failed_first_promotes() {
    let reg = backend().stores().releases;
    for spec in [b"A", b"B", b"C"] {
        reg.promote("planner", Digest::of(spec), meta(), None)
            .await
            .unwrap();
    }
    for back_to in [b"B", b"A"] {
        let record = reg.rollback("planner", "oncall").await.unwrap();
        assert_eq!(record.spec_digest, Digest::of(back_to));
    }
    assert_eq!(
        kind(reg.rollback("planner", "oncall").await),
        ErrorKind::Conflict
    );
    let to = reg.rollback_to("planner", 2, "oncall").await.unwrap();
    assert_eq!((to.seq, to.restored), (5, Some(2)));
    let hist = reg.history("planner", Some(5), 2).await.unwrap();
    assert_eq!(hist.iter().map(|r| r.seq).collect::<Vec<_>>(), [4, 3]);
    let missing = reg.rollback_to("planner", 99, "x").await;
    assert_eq!(kind(missing), ErrorKind::NotFound);

    let ghost = reg
        .promote("ghost", Digest::of(b"g"), meta(), Some(3))
        .await;
    assert_eq!(kind(ghost), ErrorKind::Conflict);
    assert_eq!(reg.list_names(None, 10).await.unwrap(), ["planner"]);
    assert_eq!(kind(reg.current("ghost").await), ErrorKind::NotFound);
    assert_eq!(kind(reg.rollback("ghost", "x").await), ErrorKind::NotFound);
    assert!(reg.history("ghost", None, 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_a_session_removes_log_and_keys_together() {
    let s = backend().stores().sessions;
    s.create_session("s", json!({})).await.unwrap();
    let first = s.append_log("s", entry(Some("m"), b"1")).await.unwrap();
    let retry = s.append_log("s", entry(Some("m"), b"1")).await.unwrap();
    assert_eq!(retry, first);
    let reused = s.append_log("s", entry(Some("m"), b"other")).await;
    assert_eq!(kind(reused), ErrorKind::Conflict);
    assert!(s.delete_session("s").await.unwrap());
    assert!(!s.delete_session("s").await.unwrap());
    assert_eq!(kind(s.read_log("s", None, 10).await), ErrorKind::NotFound);
    s.create_session("s", json!({})).await.unwrap();
    let fresh = s.append_log("s", entry(Some("m"), b"2")).await.unwrap();
    assert_eq!((fresh.seq, &fresh.payload[..]), (0, &b"2"[..]));
}

#[tokio::test]
async fn supersessions_by_agent_newest_first_inclusive_and_limited() {
    let store = backend().stores().supersessions;
    let key = SigningKey::from_bytes(&[9; 32]);
    let other = SigningKey::from_bytes(&[8; 32]);
    let records = [
        (&b"t1"[..], 10),
        (b"t2", 20),
        (b"t3", 20),
        (b"t4", 30),
        (b"t5", 40),
    ];
    for (target, ms) in records {
        let s = superseding(&key, target, None, ms);
        assert_eq!(store.put(s.clone()).await.unwrap(), PutOutcome::Stored);
        assert_eq!(store.put(s).await.unwrap(), PutOutcome::AlreadyPresent);
    }
    store
        .put(superseding(&other, b"o", None, 20))
        .await
        .unwrap();
    let conflicting = superseding(&key, b"t1", None, 11);
    assert_eq!(kind(store.put(conflicting).await), ErrorKind::Conflict);

    let agent = AgentKey::of(&key);
    let (from, to) = (Timestamp::from_millis(20), Timestamp::from_millis(30));
    let got = store
        .by_agent(&agent, from, Some(to), None, 2)
        .await
        .unwrap();
    let stamps: Vec<u64> = got.iter().map(|s| s.timestamp.as_millis()).collect();
    assert_eq!(stamps, [30, 20]);
    let all = store
        .by_agent(&agent, Timestamp::ZERO, None, None, 100)
        .await
        .unwrap();
    let mut sorted = all.clone();
    stowage_core::supersession::sort_newest_first(&mut sorted);
    assert_eq!(all.len(), 5);
    assert_eq!(all, sorted);
}

/// SPEC §7: `resolve` reports an over-long chain instead of following it.
/// Core's algorithm, run here once: 1025 signed puts are too slow for the
/// conformance suite on every backend (see its SPEC table).
#[tokio::test]
async fn resolve_reports_a_chain_over_max_resolve_hops() {
    let stores = stowage_backends::open("memory://").await.unwrap();
    let key = SigningKey::from_bytes(&[7; 32]);
    let n = u64::from(stowage_core::validate::MAX_RESOLVE_HOPS) + 1;
    let name = |i: u64| format!("hop {i}").into_bytes();
    // Oldest link first: each put's cycle check then walks one hop.
    for i in 0..n {
        let record = superseding(&key, &name(i), Some(&name(i + 1)), i);
        stores.supersessions.put(record).await.unwrap();
    }
    assert_eq!(
        stores
            .supersessions
            .resolve(&Digest::of(&name(1)))
            .await
            .unwrap(),
        stowage_core::Resolution::Current {
            hash: Digest::of(&name(n)),
            hops: stowage_core::validate::MAX_RESOLVE_HOPS,
        },
        "a chain of exactly MAX_RESOLVE_HOPS hops resolves"
    );
    let err = stores
        .supersessions
        .resolve(&Digest::of(&name(0)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Conflict, "{err}");
    assert!(err.message().contains("longer than"), "{err}");
}
