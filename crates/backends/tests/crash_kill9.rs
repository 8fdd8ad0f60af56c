//! Crash test: a child process appends from many tasks and prints every
//! acknowledged write; the parent kills it with SIGKILL at a random moment,
//! reopens the store and checks that every acknowledged write is present
//! and intact and that no partial record is visible. Repeated for many
//! cycles against every durable embedded backend compiled in (file, RocksDB,
//! sled, SQLite).
//!
//! This is a `harness = false` test: `main` is the parent, and the same
//! binary re-executed with `STOWAGE_CRASH_CHILD=<url>` is the child.
//! [`crash_cycles`] takes the store URL, so any durable backend can reuse it.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::json;
use stowage_backends::open;
use stowage_core::{
    Digest, ErrorKind, LogKind, NewEvent, NewLogEntry, Result, RunId, RunMetadata, Stores,
};

const CHILD_ENV: &str = "STOWAGE_CRASH_CHILD";
const CYCLES: usize = 50;
const TASKS: usize = 8;

fn main() {
    if let Ok(url) = std::env::var(CHILD_ENV) {
        child(&url);
        return;
    }
    let backends: Vec<&str> = [
        ("rocksdb", cfg!(feature = "rocksdb")),
        ("sled", cfg!(feature = "sled")),
        ("file", cfg!(feature = "file")),
        ("sqlite", cfg!(feature = "sqlite")),
        // `synchronous=NORMAL` still promises to survive kill -9.
        ("sqlite-buffered", cfg!(feature = "sqlite")),
    ]
    .into_iter()
    .filter_map(|(scheme, on)| on.then_some(scheme))
    .collect();
    if backends.is_empty() {
        println!("crash_kill9: no durable embedded backend compiled in; nothing to check");
        return;
    }
    for scheme in backends {
        let dir = tempfile::tempdir().expect("temp dir");
        // SQLite stores are one file; the others are directories.
        let url = match scheme {
            "sqlite" => format!("sqlite://{}/store.db", dir.path().display()),
            "sqlite-buffered" => format!(
                "sqlite://{}/store.db?durability=buffered",
                dir.path().display()
            ),
            _ => format!("{scheme}://{}", dir.path().display()),
        };
        let started = Instant::now();
        let report = crash_cycles(&url, CYCLES);
        println!(
            "crash_kill9 {scheme}: {CYCLES} kill -9 cycles, {} acknowledged writes all present ({:.1}s)",
            report,
            started.elapsed().as_secs_f64()
        );
    }
}

/// What the child acknowledged, parsed from its stdout.
#[derive(Default)]
struct Acked {
    /// (run, seq) → (task, i).
    events: BTreeMap<(RunId, u64), (u64, u64)>,
    /// (session, seq) → payload.
    logs: BTreeMap<(String, u64), String>,
    blobs: BTreeSet<Digest>,
}

impl Acked {
    fn len(&self) -> usize {
        self.events.len() + self.logs.len() + self.blobs.len()
    }

    /// Parses one complete line; lines the child did not finish are dropped
    /// before this is called.
    fn record(&mut self, line: &str) {
        let parts: Vec<&str> = line.split(' ').collect();
        match parts.as_slice() {
            ["event", run, seq, task, i] => {
                let key = (run.parse().expect("run id"), seq.parse().expect("seq"));
                self.events
                    .insert(key, (task.parse().expect("task"), i.parse().expect("i")));
            }
            ["log", session, seq, payload] => {
                let key = (session.to_string(), seq.parse().expect("seq"));
                self.logs.insert(key, payload.to_string());
            }
            ["blob", digest] => {
                self.blobs.insert(digest.parse().expect("digest"));
            }
            _ => panic!("unexpected child output {line:?}"),
        }
    }
}

/// Runs `cycles` kill -9 cycles against the store at `url` and returns how
/// many acknowledged writes were checked. Panics on the first lost or
/// damaged write.
pub fn crash_cycles(url: &str, cycles: usize) -> usize {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut rng = Rng::from_time();
    println!("crash_kill9 {url}: seed {}", rng.0);
    let mut acked = Acked::default();
    let mut check_time = Duration::ZERO;
    for cycle in 0..cycles {
        let exe = std::env::current_exe().expect("own executable");
        let mut child = Command::new(exe)
            .env(CHILD_ENV, url)
            .env("STOWAGE_CRASH_CYCLE", cycle.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let (tx, rx) = mpsc::channel::<String>();
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    // A line without its newline was cut by the kill.
                    Ok(_) if line.last() == Some(&b'\n') => {
                        let text = String::from_utf8_lossy(&line[..line.len() - 1]).into_owned();
                        if tx.send(text).is_err() {
                            break;
                        }
                    }
                    Ok(_) => break,
                }
            }
        });
        // Kill at a random moment after the first acknowledgement.
        let first = rx.recv_timeout(Duration::from_secs(30));
        let first =
            first.unwrap_or_else(|_| panic!("cycle {cycle}: the child acknowledged nothing"));
        std::thread::sleep(Duration::from_millis(rng.below(100)));
        child.kill().expect("kill -9 the child");
        child.wait().expect("reap the child");
        reader.join().expect("stdout reader");
        let before = acked.len();
        let old_blobs = acked.blobs.clone();
        acked.record(&first);
        for line in rx.try_iter() {
            acked.record(&line);
        }
        let fresh: BTreeSet<Digest> = acked.blobs.difference(&old_blobs).copied().collect();
        let checked = Instant::now();
        runtime.block_on(check(url, &acked, &fresh, cycle));
        check_time += checked.elapsed();
        assert!(
            acked.len() > before,
            "cycle {cycle}: nothing new was acknowledged"
        );
    }
    println!(
        "crash_kill9 {url}: {:.1}s of the run spent reopening and checking",
        check_time.as_secs_f64()
    );
    acked.len()
}

/// Reopens the store and checks every acknowledged write.
async fn check(url: &str, acked: &Acked, fresh_blobs: &BTreeSet<Digest>, cycle: usize) {
    let stores = open_retrying(url).await.expect("reopen after kill -9");
    let ctx = |what: String| format!("cycle {cycle}: {what}");
    let runs: BTreeSet<RunId> = acked.events.keys().map(|(r, _)| *r).collect();
    for run in &runs {
        let report = stores.runs.verify_run(*run).await;
        let report = report.unwrap_or_else(|e| panic!("{}", ctx(format!("run {run}: {e}"))));
        // No event beyond the recorded count is visible (no partial append).
        let beyond = stores
            .runs
            .read_events(*run, report.len.checked_sub(1), 10)
            .await;
        assert!(
            beyond.expect("read").is_empty(),
            "{}",
            ctx(format!("run {run} has stray events"))
        );
    }
    for ((run, seq), (task, i)) in &acked.events {
        let got = stores
            .runs
            .read_events(*run, seq.checked_sub(1), 1)
            .await
            .expect("read");
        let event = got
            .first()
            .unwrap_or_else(|| panic!("{}", ctx(format!("lost {run}#{seq}"))));
        assert_eq!(event.seq, *seq);
        assert_eq!(
            event.payload,
            json!({"task": task, "i": i}),
            "{}",
            ctx(format!("{run}#{seq}"))
        );
    }
    let sessions: BTreeSet<&String> = acked.logs.keys().map(|(s, _)| s).collect();
    for session in sessions {
        stores
            .sessions
            .verify_log(session)
            .await
            .expect("session log verifies");
    }
    for ((session, seq), payload) in &acked.logs {
        let got = stores
            .sessions
            .read_log(session, seq.checked_sub(1), 1)
            .await
            .expect("read");
        let entry = got
            .first()
            .unwrap_or_else(|| panic!("{}", ctx(format!("lost {session}#{seq}"))));
        assert_eq!(&entry.payload[..], payload.as_bytes());
    }
    // Blobs acknowledged in earlier cycles were fully re-hashed then; here
    // they must still be present.
    for digest in &acked.blobs {
        let check = if fresh_blobs.contains(digest) {
            stores.cas.verify(digest).await
        } else {
            stores.cas.stat(digest).await.map(drop)
        };
        check.unwrap_or_else(|e| panic!("{}", ctx(format!("{e}"))));
    }
}

async fn open_retrying(url: &str) -> Result<Stores> {
    let mut last = None;
    for _ in 0..200 {
        match open(url).await {
            Err(e) if e.kind() == ErrorKind::Unavailable => {
                last = Some(e);
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            other => return other,
        }
    }
    Err(last.unwrap_or_else(|| stowage_core::Error::internal("unreachable")))
}

/// The child: writes from many tasks until killed, printing each
/// acknowledged write on its own line.
fn child(url: &str) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let stores = open_retrying(url).await.expect("child opens the store");
        let cycle: u64 = std::env::var("STOWAGE_CRASH_CYCLE")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        let session = format!("crash:{cycle}");
        stores
            .sessions
            .create_session(&session, json!({}))
            .await
            .expect("session");
        let mut runs = Vec::new();
        for _ in 0..2 {
            let meta = RunMetadata::new("crash");
            runs.push(
                stores
                    .runs
                    .create_run(Digest::of(b"spec"), meta)
                    .await
                    .expect("run"),
            );
        }
        let mut tasks = Vec::new();
        if url.starts_with("file:") {
            // Compaction (sealing the log and packing it) runs among the
            // writers, so some kills land inside it.
            let stores = stores.clone();
            tasks.push(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(std::time::Duration::from_millis(40)).await;
                    stores.lifecycle.compact().await.expect("compact");
                }
            }));
        }
        for task in 0..TASKS as u64 {
            let stores = stores.clone();
            let run = runs[task as usize % runs.len()];
            let session = session.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0u64.. {
                    let line = match (task + i) % 4 {
                        0 | 1 => {
                            let e = NewEvent::new("tick", json!({"task": task, "i": i}));
                            let e = stores.runs.append_event(run, e).await.expect("append");
                            format!("event {run} {} {task} {i}", e.seq)
                        }
                        2 => {
                            let payload = format!("{task}.{i}");
                            let e =
                                NewLogEntry::new(LogKind::Internal, "crash", "t", payload.clone());
                            let e = stores.sessions.append_log(&session, e).await.expect("log");
                            format!("log {session} {} {payload}", e.seq)
                        }
                        _ => {
                            // Mostly small; some span two 1 MiB chunks.
                            let len = if i % 32 == 3 {
                                (1 << 20) + 4096
                            } else {
                                1000 + ((task * 7919 + i * 104_729) % 60_000) as usize
                            };
                            let mut blob: Vec<u8> =
                                (0..len).map(|b| (b as u64 ^ task ^ i) as u8).collect();
                            // Unique per cycle, so every acknowledgement is new.
                            blob.extend_from_slice(format!("{cycle}/{task}/{i}").as_bytes());
                            // Large blobs are streamed: a kill mid-upload
                            // must leave no visible (or half) blob.
                            let d = if blob.len() > 1 << 20 {
                                let reader = Box::pin(std::io::Cursor::new(blob));
                                stores.cas.put_stream(reader).await.expect("put_stream")
                            } else {
                                stores.cas.put(Bytes::from(blob)).await.expect("put")
                            };
                            format!("blob {d}")
                        }
                    };
                    let mut out = std::io::stdout().lock();
                    writeln!(out, "{line}").expect("stdout");
                    out.flush().expect("flush");
                }
            }));
        }
        for t in tasks {
            let _ = t.await;
        }
    });
}

/// A tiny xorshift generator (the kill moments need not be cryptographic).
struct Rng(u64);

impl Rng {
    fn from_time() -> Self {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(1);
        Rng(nanos | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}
