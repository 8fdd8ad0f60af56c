//! Simulated power loss at every I/O step of a small workload through the
//! real store layer (blobs, runs, releases, sessions) over the engine on
//! the simulated disk, with segment rotation, checkpoint and compaction.

use super::*;
use bytes::Bytes;
use serde_json::json;
use stowage_core::{
    Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, RunId, RunMetadata,
    RunStatus, RunSummary, Stores,
};

/// What the workload got acknowledged before the crash.
#[derive(Debug, Default, Clone)]
struct Acked {
    blob_a: bool,
    run: Option<RunId>,
    events: u64,
    finished: bool,
    promoted: bool,
    session: bool,
    entries: u64,
    blob_b: bool,
    /// The delete of blob a was called (it may be applied without an
    /// acknowledgement).
    deleting_a: bool,
    deleted_a: bool,
}

fn blob_a() -> Bytes {
    Bytes::from(vec![1u8; 1500])
}

fn blob_b() -> Bytes {
    Bytes::from((0..40_000u32).map(|i| (i % 251) as u8).collect::<Vec<u8>>())
}

fn stores_on(fs: &SimFs) -> Result<(Arc<FileKv>, Stores)> {
    let kv = Arc::new(open_sim(fs, small_opts())?);
    let stores = stores_over(&kv)?;
    Ok((kv, stores))
}

async fn workload(kv: &FileKv, s: &Stores, a: &mut Acked) -> Result<()> {
    s.cas.put(blob_a()).await?;
    a.blob_a = true;
    let run = s
        .runs
        .create_run(Digest::of(b"spec"), RunMetadata::new("agent"))
        .await?;
    a.run = Some(run);
    for i in 0..4 {
        s.runs
            .append_event(run, NewEvent::new("step", json!({ "i": i })))
            .await?;
        a.events += 1;
    }
    s.runs.complete_run(run, RunSummary::new("done")).await?;
    a.finished = true;
    let meta = ReleaseMetadata::new("v1", "ci");
    s.releases
        .promote("rel", Digest::of(b"spec"), meta, None)
        .await?;
    a.promoted = true;
    s.sessions.create_session("chat", json!({ "v": 1 })).await?;
    a.session = true;
    for i in 0..3u8 {
        let entry = NewLogEntry::new(LogKind::Incoming, "user", "text", vec![i; 300]);
        s.sessions.append_log("chat", entry).await?;
        a.entries += 1;
    }
    s.cas.put(blob_b()).await?;
    a.blob_b = true;
    kv.checkpoint()?;
    a.deleting_a = true;
    s.cas.delete(&Digest::of(&blob_a())).await?;
    a.deleted_a = true;
    kv.compact()?;
    Ok(())
}

async fn check(s: &Stores, a: &Acked, step: u64) {
    let ctx = format!("step {step}, acknowledged {a:?}");
    let got_a = s.cas.get(&Digest::of(&blob_a())).await;
    match (a.blob_a, a.deleted_a, got_a) {
        (_, true, Err(e)) | (false, _, Err(e)) => {
            assert_eq!(e.kind(), ErrorKind::NotFound, "{ctx}")
        }
        // A delete in flight at the crash may have reached the disk.
        (true, false, Err(e)) if a.deleting_a => {
            assert_eq!(e.kind(), ErrorKind::NotFound, "{ctx}")
        }
        (_, true, Ok(_)) => panic!("{ctx}: a deleted blob came back"),
        (_, _, Ok(b)) => assert_eq!(b, blob_a(), "{ctx}"),
        (true, false, Err(e)) => panic!("{ctx}: acknowledged blob lost: {e}"),
    }
    match s.cas.get(&Digest::of(&blob_b())).await {
        Ok(b) => assert_eq!(b, blob_b(), "{ctx}: partial blob visible"),
        Err(e) if !a.blob_b => assert_eq!(e.kind(), ErrorKind::NotFound, "{ctx}"),
        Err(e) => panic!("{ctx}: acknowledged blob lost: {e}"),
    }
    if let Some(run) = a.run {
        let r = s
            .runs
            .get_run(run)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert!(
            r.event_count >= a.events && r.event_count <= a.events + 1,
            "{ctx}: {r:?}"
        );
        assert!(
            !a.finished || r.status != RunStatus::Running,
            "{ctx}: finish lost"
        );
        s.runs
            .verify_run(run)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    }
    if a.promoted {
        let cur = s
            .releases
            .current("rel")
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        assert_eq!(cur.spec_digest, Digest::of(b"spec"), "{ctx}");
    }
    if a.session {
        let log = s
            .sessions
            .read_log("chat", None, 100)
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
        let n = log.len() as u64;
        assert!(n >= a.entries && n <= a.entries + 1, "{ctx}: {n} entries");
        s.sessions
            .verify_log("chat")
            .await
            .unwrap_or_else(|e| panic!("{ctx}: {e}"));
    }
}

#[test]
fn power_loss_at_every_io_step_of_a_store_workload_loses_nothing_acknowledged() {
    let rt = runtime();
    rt.block_on(async {
        let total = {
            let fs = SimFs::new();
            let (kv, s) = stores_on(&fs).unwrap();
            workload(&kv, &s, &mut Acked::default()).await.unwrap();
            fs.ops()
        };
        assert!(total > 50, "the workload is too small: {total} I/O steps");
        for step in 1..=total {
            for seed in Loss::all(step * 31 + 5) {
                let fs = SimFs::new();
                let (kv, s) = stores_on(&fs).unwrap();
                fs.crash_after(step);
                let mut acked = Acked::default();
                let _ = workload(&kv, &s, &mut acked).await;
                drop((kv, s));
                seed.strike(&fs);
                let (_kv, s) = stores_on(&fs).unwrap_or_else(|e| panic!("step {step}: {e}"));
                check(&s, &acked, step).await;
            }
        }
    });
}
