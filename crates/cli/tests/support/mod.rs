//! Shared test support: a populated store, running the built binary.
#![allow(dead_code, unreachable_pub)]

use std::path::Path;
use std::process::{Command, Output};

use bytes::Bytes;
use serde_json::json;
use stowage_core::{
    AgentKey, Digest, LogKind, NewEvent, NewLogEntry, ReleaseMetadata, RunId, RunMetadata,
    RunSummary, SessionState, SigningKey, Stores, Supersession, SupersessionDraft,
    SupersessionKind, Timestamp,
};

#[cfg(feature = "redis")]
pub mod redis_server;

/// What [`populate`] created, for assertions.
#[derive(Debug, Clone)]
pub struct Populated {
    pub completed_run: RunId,
    pub running_run: RunId,
    pub big_blob: Digest,
    pub agent: AgentKey,
}

/// Bytes of the big blob (several export chunks, not a multiple of one).
pub const BIG_BLOB: usize = 200_000;

/// Fills every store with a bit of everything the traits can hold.
pub async fn populate(stores: &Stores) -> Populated {
    let cas = &stores.cas;
    cas.put(Bytes::new()).await.unwrap();
    cas.put(Bytes::from_static(b"prompt v1")).await.unwrap();
    let big: Vec<u8> = (0..BIG_BLOB).map(|i| (i * 7 % 251) as u8).collect();
    let big_blob = cas.put(Bytes::from(big)).await.unwrap();

    let reg = &stores.releases;
    let spec = |s: &str| Digest::of(s.as_bytes());
    let mut meta = ReleaseMetadata::new("v1", "ci");
    meta.notes = "first".into();
    reg.promote("planner", spec("a"), meta, None).await.unwrap();
    reg.promote("planner", spec("b"), ReleaseMetadata::new("v2", "ci"), None)
        .await
        .unwrap();
    reg.promote("planner", spec("c"), ReleaseMetadata::new("v3", "ci"), None)
        .await
        .unwrap();
    reg.rollback("planner", "oncall").await.unwrap();
    reg.rollback_to("planner", 2, "oncall").await.unwrap();
    reg.promote(
        "router/éü 🚀",
        spec("r"),
        ReleaseMetadata::new("r1", "bob"),
        None,
    )
    .await
    .unwrap();

    let runs = &stores.runs;
    let mut md = RunMetadata::new("planner");
    md.git_sha = Some("abc123".into());
    md.tags = json!({"team": "core", "n": 3});
    let completed_run = runs.create_run(spec("a"), md).await.unwrap();
    for i in 0..5 {
        let mut e = NewEvent::new("step", json!({ "i": i, "note": format!("TAMPERME{i}") }));
        if i % 2 == 0 {
            e.idempotency_key = Some(format!("k{i}"));
        }
        if i == 3 {
            e.timestamp = Some(Timestamp::from_millis(1_234));
        }
        runs.append_event(completed_run, e).await.unwrap();
    }
    let mut summary = RunSummary::new("done");
    summary.output = json!({"ok": true});
    runs.complete_run(completed_run, summary).await.unwrap();
    let running_run = runs
        .create_run(spec("b"), RunMetadata::new("router"))
        .await
        .unwrap();
    runs.append_event(running_run, NewEvent::new("start", json!(null)))
        .await
        .unwrap();
    let failed = runs
        .create_run(spec("c"), RunMetadata::new("planner"))
        .await
        .unwrap();
    let mut s = RunSummary::new("boom");
    s.finished_at = Some(Timestamp::from_millis(99));
    runs.fail_run(failed, s).await.unwrap();

    let ss = &stores.sessions;
    ss.create_session("chat-1", json!({"user": "ann"}))
        .await
        .unwrap();
    for i in 0..4u8 {
        let mut e = NewLogEntry::new(LogKind::Incoming, "user", "text", vec![i; 10 + i as usize]);
        if i == 1 {
            e.idempotency_key = Some("msg-1".into());
        }
        ss.append_log("chat-1", e).await.unwrap();
    }
    ss.save_session("chat-1", json!({"user": "ann", "turn": 2}), None)
        .await
        .unwrap();
    ss.create_session("done session", json!({})).await.unwrap();
    ss.append_log(
        "done session",
        NewLogEntry::new(
            LogKind::Checkpoint,
            "agent",
            "summary",
            &b"\x00\xff binary"[..],
        ),
    )
    .await
    .unwrap();
    ss.save_session("done session", json!({"final": true}), Some(1))
        .await
        .unwrap();
    ss.set_session_state("done session", SessionState::Suspended, None)
        .await
        .unwrap();
    ss.set_session_state("done session", SessionState::Resolved, None)
        .await
        .unwrap();
    ss.create_session("empty", json!(null)).await.unwrap();

    let key = SigningKey::from_bytes(&[7; 32]);
    let record = Supersession::sign(
        &key,
        SupersessionDraft::new(
            spec("claim-1"),
            Some(spec("claim-2")),
            SupersessionKind::Correction,
            "fixed a typo",
            Timestamp::from_millis(1_700_000_000_000),
        ),
    );
    stores.supersessions.put(record).await.unwrap();
    Populated {
        completed_run,
        running_run,
        big_blob,
        agent: AgentKey::of(&key),
    }
}

/// Runs the built `stowage` binary.
pub fn stowage(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stowage"))
        .args(args)
        .output()
        .expect("run the stowage binary")
}

/// stdout as text.
pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// stderr as text.
pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts success and returns stdout.
pub fn ok(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// Asserts exit code `code` with one `error: ` line on stderr; returns it.
pub fn fails(o: &Output, code: i32) -> String {
    let err = stderr(o);
    assert_eq!(
        o.status.code(),
        Some(code),
        "stdout:\n{}\nstderr:\n{err}",
        stdout(o)
    );
    if code == 1 {
        assert_eq!(err.lines().count(), 1, "one line: {err}");
        assert!(err.starts_with("error: "), "{err}");
        assert!(!err.contains("Error {"), "no Debug dump: {err}");
    }
    err
}

/// A `file://` URL for `dir` (no checkpoint on close, so records stay in
/// the log where tests may look at them).
pub fn file_url(dir: &Path) -> String {
    format!("file://{}?checkpoint_interval=0", dir.display())
}

/// Opens `url` in-process, runs `f`, and closes it again.
pub async fn with_store<T>(url: &str, f: impl AsyncFnOnce(&Stores) -> T) -> T {
    let stores = stowage_backends::open(url).await.unwrap();
    let out = f(&stores).await;
    drop(stores);
    out
}

/// Rewrites `needle` as `replacement` (same length) inside the file
/// engine's log and re-seals the frame's CRC32C, as an attacker with
/// access to the directory could: only the hash chains and digests can
/// tell. Returns how many frames were changed.
pub fn tamper_wal(dir: &Path, needle: &[u8], replacement: &[u8]) -> usize {
    assert_eq!(needle.len(), replacement.len());
    let mut changed = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        // Checkpoints keep each value's CRC32C: one who rewrites the log
        // behind the store's back removes them too, forcing a replay.
        if path.extension().and_then(|e| e.to_str()) == Some("ckp") {
            std::fs::remove_file(&path).unwrap();
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("wal") {
            continue;
        }
        let mut bytes = std::fs::read(&path).unwrap();
        let segment = u64::from_le_bytes(bytes[8..16].try_into().unwrap());
        let mut off = 24;
        // Frame header: length, CRC32C, seq, durable watermark (24 bytes).
        while off + 24 <= bytes.len() {
            let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
            if len == 0 {
                break; // the zero fill ahead of the tail
            }
            let seq = u64::from_le_bytes(bytes[off + 8..off + 16].try_into().unwrap());
            let synced = u64::from_le_bytes(bytes[off + 16..off + 24].try_into().unwrap());
            let body = off + 24..off + 24 + len;
            let payload = &mut bytes[body.clone()];
            let mut hit = false;
            while let Some(i) = payload.windows(needle.len()).position(|w| w == needle) {
                payload[i..i + needle.len()].copy_from_slice(replacement);
                hit = true;
            }
            if hit {
                let mut crc = crc32c::crc32c(&segment.to_le_bytes());
                crc = crc32c::crc32c_append(crc, &(len as u32).to_le_bytes());
                crc = crc32c::crc32c_append(crc, &seq.to_le_bytes());
                crc = crc32c::crc32c_append(crc, &synced.to_le_bytes());
                crc = crc32c::crc32c_append(crc, &bytes[body.clone()]);
                bytes[off + 4..off + 8].copy_from_slice(&crc.to_le_bytes());
                changed += 1;
            }
            off = body.end;
        }
        std::fs::write(&path, bytes).unwrap();
    }
    changed
}
