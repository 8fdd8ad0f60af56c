//! The peers of `benches/peers.rs` and the plumbing of its rounds: a
//! hand-written SQLite ledger (what a team would write instead of
//! stowage's run ledger), parallel callers, and resident-memory probes in
//! child processes.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use rusqlite::{params, Connection};

const CHILD_ROLE: &str = "STOWAGE_PEERS_CHILD";
const CHILD_TARGET: &str = "STOWAGE_PEERS_TARGET";

pub(crate) fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

pub(crate) fn temp_dir() -> tempfile::TempDir {
    match std::env::var_os("STOWAGE_BENCH_DIR") {
        Some(base) => tempfile::tempdir_in(base).expect("temp dir"),
        None => tempfile::tempdir().expect("temp dir"),
    }
}

pub(crate) fn file_url(dir: &Path, query: &str) -> String {
    let mut u = url::Url::from_file_path(dir).expect("absolute temp dir");
    if !query.is_empty() {
        u.set_query(Some(query));
    }
    u.to_string()
}

/// Runs `op(0..count)` spread over `callers` tasks; returns operations per
/// second.
pub(crate) async fn run_parallel<F, Fut>(callers: usize, count: usize, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let tasks: Vec<_> = (0..callers)
        .map(|c| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut i = c;
                while i < count {
                    op(i).await;
                    i += callers;
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("caller task");
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// A run ledger as a team would write it on SQLite: WAL,
/// `synchronous=FULL`, one connection behind a mutex, one transaction per
/// append that reads the run's next seq and inserts the event.
pub(crate) struct SqliteLedger {
    path: PathBuf,
    conn: Mutex<Connection>,
}

pub(crate) fn sqlite_ledger(path: &Path) -> SqliteLedger {
    let conn = Connection::open(path).expect("sqlite open");
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;
         CREATE TABLE IF NOT EXISTS events (
             run INTEGER NOT NULL, seq INTEGER NOT NULL, kind TEXT NOT NULL,
             payload TEXT NOT NULL, ts INTEGER NOT NULL,
             PRIMARY KEY (run, seq)) WITHOUT ROWID;",
    )
    .expect("sqlite schema");
    SqliteLedger {
        path: path.to_path_buf(),
        conn: Mutex::new(conn),
    }
}

impl SqliteLedger {
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    pub(crate) fn append(&self, run: u64, payload: &serde_json::Value) {
        let text = serde_json::to_string(payload).expect("json");
        let mut conn = self.conn.lock();
        let tx = conn.transaction().expect("begin");
        let next: i64 = tx
            .query_row(
                "SELECT COALESCE(MAX(seq) + 1, 0) FROM events WHERE run = ?1",
                params![run as i64],
                |r| r.get(0),
            )
            .expect("next seq");
        tx.execute(
            "INSERT INTO events (run, seq, kind, payload, ts) VALUES (?1, ?2, 'tool_call', ?3, 0)",
            params![run as i64, next, text],
        )
        .expect("insert");
        tx.commit().expect("commit");
    }

    /// Appends `n` events to `run` in one transaction (set-up, not measured).
    pub(crate) fn fill(&self, run: u64, n: usize, payload: impl Fn(usize) -> serde_json::Value) {
        let mut conn = self.conn.lock();
        let tx = conn.transaction().expect("begin");
        {
            let mut stmt = tx
                .prepare("INSERT INTO events (run, seq, kind, payload, ts) VALUES (?1, ?2, 'tool_call', ?3, 0)")
                .expect("prepare");
            for i in 0..n {
                let text = serde_json::to_string(&payload(i)).expect("json");
                stmt.execute(params![run as i64, i as i64, text])
                    .expect("insert");
            }
        }
        tx.commit().expect("commit");
    }

    /// Reads every event of `run` in pages of `page`, parsing each payload
    /// with `serde_json`; returns how many it read.
    pub(crate) fn read_all(&self, run: u64, page: usize) -> usize {
        let conn = self.conn.lock();
        let mut stmt = conn
            .prepare_cached(
                "SELECT seq, kind, payload, ts FROM events WHERE run = ?1 AND seq > ?2 ORDER BY seq LIMIT ?3",
            )
            .expect("prepare");
        let (mut after, mut read) = (-1i64, 0usize);
        loop {
            let rows: Vec<(i64, String, serde_json::Value, i64)> = stmt
                .query_map(params![run as i64, after, page as i64], |r| {
                    let text: String = r.get(2)?;
                    let value = serde_json::from_str(&text).expect("stored json");
                    Ok((r.get(0)?, r.get(1)?, value, r.get(3)?))
                })
                .expect("query")
                .collect::<Result<_, _>>()
                .expect("rows");
            let Some(last) = rows.last() else { return read };
            after = last.0;
            read += rows.len();
        }
    }

    pub(crate) fn checkpoint(&self) {
        self.conn
            .lock()
            .execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")
            .expect("checkpoint");
    }

    /// The database file plus its WAL.
    pub(crate) fn bytes(&self) -> u64 {
        let len = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
        let mut wal = self.path.clone().into_os_string();
        wal.push("-wal");
        len(self.path.clone()) + len(PathBuf::from(wal))
    }
}

/// Resident memory (bytes) of a child process that reopened `target` and
/// read one event, as `role` ("stowage": a store URL; "sqlite": a path).
pub(crate) fn child_rss(role: &str, target: &str) -> u64 {
    let out = std::process::Command::new(std::env::current_exe().expect("current exe"))
        .env(CHILD_ROLE, role)
        .env(CHILD_TARGET, target)
        .output()
        .expect("spawn child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("child prints its resident bytes")
}

fn resident_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .expect("VmRSS")
        * 1024
}

/// In a child spawned by [`child_rss`]: reopens the target, reads one
/// event, prints the resident bytes and returns `true`.
pub(crate) fn run_child_if_asked() -> bool {
    let (Ok(role), Ok(target)) = (std::env::var(CHILD_ROLE), std::env::var(CHILD_TARGET)) else {
        return false;
    };
    match role.as_str() {
        "stowage" => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("runtime");
            let stores = rt
                .block_on(stowage_backends::open(&target))
                .expect("reopen");
            let runs = rt
                .block_on(stores.runs.list_runs(&Default::default(), None, 1))
                .expect("list");
            let run = runs.first().expect("a run").id;
            rt.block_on(stores.runs.read_events(run, None, 1))
                .expect("read");
            println!("{}", resident_bytes());
            std::mem::forget(stores); // measured; skip the checkpoint on drop
        }
        _ => {
            let conn = Connection::open(&target).expect("sqlite reopen");
            let _: String = conn
                .query_row(
                    "SELECT payload FROM events WHERE run = 0 AND seq = 0",
                    [],
                    |r| r.get(0),
                )
                .expect("read");
            println!("{}", resident_bytes());
        }
    }
    true
}
