//! Regression tests from a review of da42e1d ("core: fixes from a review
//! of the shared store algorithms"): each failed against that change.
//!
//! Most tests run the stores over `Hooked`, a seam-conforming wrapper of
//! the memory engine that can run code before a read or write job, defer
//! the commit of one write job (what an engine that serializes only
//! overlapping scopes, such as the KV engines with per-entity locks, may
//! do), and count the blob bytes a write job reads.

#![cfg(feature = "memory")]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::BoxFuture;
use stowage_core::engine::{
    stores, Direction, Durable, Engine, Entry, MemoryEngine, RangeSize, ReadJob, Reader, Scope,
    Staging, StoreCache, Table, Txn, Visit, Write, WriteJob,
};
use stowage_core::lifecycle::BlobGc;
use stowage_core::{
    Capabilities, Digest, ErrorKind, LogKind, NewLogEntry, RandomIds, ReleaseMetadata, Result,
    StoreEnv, Stores, Timestamp,
};
use tokio::sync::oneshot;

// ---- a clock the test moves ---------------------------------------------------

const T0: u64 = 1_700_000_000_000;

#[derive(Debug)]
struct Clock(AtomicU64);

impl stowage_core::Clock for Clock {
    fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.0.load(Ordering::SeqCst))
    }
}

impl Clock {
    fn advance(&self, ms: u64) {
        self.0.fetch_add(ms, Ordering::SeqCst);
    }
}

// ---- the hooked engine ------------------------------------------------------------

type ReadHook = Box<dyn FnMut(u64) -> Option<BoxFuture<'static, ()>> + Send>;
type WriteHook = Box<dyn FnMut(&Scope) -> Option<BoxFuture<'static, ()>> + Send>;

/// One write job whose commit waits: its reads and staging run at once,
/// then `staged` fires, then its writes are applied once `go` fires.
struct Deferral {
    matches: Box<dyn Fn(&Scope) -> bool + Send>,
    staged: oneshot::Sender<()>,
    go: oneshot::Receiver<()>,
}

#[derive(Default)]
struct Hooks {
    /// Bytes of values of at least 1 KiB (blob chunks) read from
    /// `Table::Blobs` inside write jobs.
    blob_bytes_read_in_writes: AtomicU64,
    reads: AtomicU64,
    /// Set while a hook runs: its own jobs pass straight through.
    in_hook: AtomicBool,
    before_read: Mutex<Option<ReadHook>>,
    before_write: Mutex<Option<WriteHook>>,
    after_write: Mutex<Option<WriteHook>>,
    defer: Mutex<Option<Deferral>>,
}

struct Hooked {
    inner: MemoryEngine,
    hooks: Arc<Hooks>,
}

struct Counting<'a> {
    txn: &'a mut dyn Txn,
    hooks: &'a Hooks,
}

impl Counting<'_> {
    fn count(&self, table: Table, len: usize) {
        if table == Table::Blobs && len >= 1024 {
            self.hooks
                .blob_bytes_read_in_writes
                .fetch_add(len as u64, Ordering::SeqCst);
        }
    }
}

impl Reader for Counting<'_> {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let value = self.txn.get(table, key)?;
        self.count(table, value.as_ref().map_or(0, Vec::len));
        Ok(value)
    }
    fn get_bytes(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>> {
        let value = self.txn.get_bytes(table, key)?;
        self.count(table, value.as_ref().map_or(0, Bytes::len));
        Ok(value)
    }
    fn checks_values(&self) -> bool {
        self.txn.checks_values()
    }
    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<Entry>> {
        self.txn.scan(table, start, end, direction, limit)
    }
    fn scan_each(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
        visit: Visit<'_>,
    ) -> Result<()> {
        self.txn
            .scan_each(table, start, end, direction, limit, visit)
    }
    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<RangeSize> {
        self.txn.measure(table, start, end)
    }
}

impl Txn for Counting<'_> {
    fn put(&mut self, table: Table, key: Vec<u8>, value: Vec<u8>) -> Result<()> {
        self.txn.put(table, key, value)
    }
    fn delete(&mut self, table: Table, key: Vec<u8>) -> Result<()> {
        self.txn.delete(table, key)
    }
    fn delete_range(&mut self, table: Table, start: Vec<u8>, end: Vec<u8>) -> Result<()> {
        self.txn.delete_range(table, start, end)
    }
}

fn replay(txn: &mut dyn Txn, writes: &[Write]) -> Result<()> {
    for write in writes.iter().cloned() {
        match write {
            Write::Put { table, key, value } => txn.put(table, key, value)?,
            Write::Delete { table, key } => txn.delete(table, key)?,
            Write::DeleteRange { table, start, end } => txn.delete_range(table, start, end)?,
            other => panic!("unknown write {other:?}"),
        }
    }
    Ok(())
}

#[async_trait]
impl Engine for Hooked {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn read(&self, job: ReadJob) -> Result<()> {
        if !self.hooks.in_hook.load(Ordering::SeqCst) {
            let n = self.hooks.reads.fetch_add(1, Ordering::SeqCst);
            let hook = self
                .hooks
                .before_read
                .lock()
                .unwrap()
                .as_mut()
                .and_then(|h| h(n));
            if let Some(hook) = hook {
                self.hooks.in_hook.store(true, Ordering::SeqCst);
                hook.await;
                self.hooks.in_hook.store(false, Ordering::SeqCst);
            }
        }
        self.inner.read(job).await
    }

    async fn write(&self, scope: Scope, mut job: WriteJob) -> Result<Durable> {
        let hook = self
            .hooks
            .before_write
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|h| h(&scope));
        if let Some(hook) = hook {
            hook.await;
        }
        let deferral = {
            let mut slot = self.hooks.defer.lock().unwrap();
            match slot.as_ref() {
                Some(d) if (d.matches)(&scope) => slot.take(),
                _ => None,
            }
        };
        let written = if let Some(Deferral { staged, go, .. }) = deferral {
            // Run the job now against the committed state, commit later.
            let writes = Arc::new(Mutex::new(Vec::new()));
            let slot = Arc::clone(&writes);
            self.inner
                .read(Box::new(move |reader: &dyn Reader| {
                    let mut staging = Staging::new(reader);
                    job(&mut staging)?;
                    *slot.lock().unwrap() = staging.into_writes();
                    Ok(())
                }))
                .await?;
            let _ = staged.send(());
            let _ = go.await;
            let writes = writes.lock().unwrap().clone();
            self.inner
                .write(
                    scope.clone(),
                    Box::new(move |txn: &mut dyn Txn| replay(txn, &writes)),
                )
                .await
        } else {
            let hooks = Arc::clone(&self.hooks);
            self.inner
                .write(
                    scope.clone(),
                    Box::new(move |txn: &mut dyn Txn| {
                        let mut counting = Counting { txn, hooks: &hooks };
                        job(&mut counting)
                    }),
                )
                .await
        };
        let after = self
            .hooks
            .after_write
            .lock()
            .unwrap()
            .as_mut()
            .and_then(|h| h(&scope));
        if let Some(after) = after {
            after.await;
        }
        written
    }

    fn cache(&self) -> Option<&StoreCache> {
        None
    }
}

fn hooked(env: StoreEnv) -> (Stores, Arc<Hooks>, MemoryEngine) {
    let hooks = Arc::new(Hooks::default());
    let inner = MemoryEngine::new();
    let engine = Hooked {
        inner: inner.clone(),
        hooks: Arc::clone(&hooks),
    };
    (stores(Arc::new(engine), env), hooks, inner)
}

fn clocked() -> (Arc<Clock>, StoreEnv) {
    let clock = Arc::new(Clock(AtomicU64::new(T0)));
    let env = StoreEnv::new(clock.clone(), Arc::new(RandomIds::default()));
    (clock, env)
}

async fn raw_put(engine: &dyn Engine, table: Table, key: Vec<u8>, value: Vec<u8>) {
    engine
        .write(
            Scope::Unshared,
            Box::new(move |txn: &mut dyn Txn| txn.put(table, key.clone(), value.clone())),
        )
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
}

async fn raw_scan(engine: &dyn Engine, table: Table) -> Vec<Entry> {
    let out = Arc::new(Mutex::new(Vec::new()));
    let slot = Arc::clone(&out);
    engine
        .read(Box::new(move |reader: &dyn Reader| {
            *slot.lock().unwrap() = reader.scan(table, &[], None, Direction::Forward, 10_000)?;
            Ok(())
        }))
        .await
        .unwrap();
    let entries = out.lock().unwrap().clone();
    entries
}

fn entry(n: u8) -> NewLogEntry {
    NewLogEntry::new(LogKind::Incoming, "user", "text", Bytes::from(vec![n; 8]))
}

// ---- GC: the referrer's own entry is written outside the blob's scope ----------

/// docs/lifecycle.md: "GC always finds one of the two" (the call's entry
/// or the referrer's). `promote` now writes the release's own entry in the
/// release's scope, not the blob's, so a collector's job (blob scope) may
/// run beside it. When the index holds a stale entry with the very same
/// key (a refused promote of the previous version left one: the bug
/// `a_refused_compare_and_promote_references_nothing` fixed), the
/// collector reads it as stale, the promote commits the record and
/// re-puts the entry, then the collector's delete of the stale entry
/// lands and removes the release's only entry. Later the blob is
/// collected although a committed release record names it.
///
/// The interleaving is one the seam allows: the two jobs' scopes do not
/// overlap. (Before the change the entry was written in a job in the
/// blob's scope, serialized with the collector.)
#[tokio::test]
async fn gc_racing_promote_drops_the_release_entry_and_collects_its_spec() {
    let (clock, env) = clocked();
    let (s, hooks, inner) = hooked(env);
    let grace = BlobGc::grace(Duration::from_secs(1));
    // The index is complete (a first sweep marks it).
    s.lifecycle.gc_blobs(&grace, None).await.unwrap();
    let spec = s
        .cas
        .put(Bytes::from_static(b"the planner's spec"))
        .await
        .unwrap();
    // A stale entry release "planner" -> spec, as an earlier version's
    // refused promote left it: digest ++ 0x02 ++ raw name -> recorded at.
    let mut key = spec.as_bytes().to_vec();
    key.push(0x02);
    key.extend_from_slice(b"planner");
    raw_put(&inner, Table::BlobRefs, key, T0.to_be_bytes().to_vec()).await;
    clock.advance(10_000);

    // When the promote's write (release scope) is about to run, a
    // collector's job for the spec (blob scope) runs its reads; it commits
    // right after the promote's write.
    let go_slot: Arc<Mutex<Option<oneshot::Sender<()>>>> = Arc::default();
    let gc_slot: Arc<Mutex<Option<tokio::task::JoinHandle<()>>>> = Arc::default();
    let armed = Arc::new(AtomicBool::new(true));
    {
        let (s, hooks2, go_slot, gc_slot, armed) = (
            s.clone(),
            Arc::clone(&hooks),
            Arc::clone(&go_slot),
            Arc::clone(&gc_slot),
            Arc::clone(&armed),
        );
        *hooks.before_write.lock().unwrap() = Some(Box::new(move |scope: &Scope| {
            let is_release =
                matches!(scope, Scope::Entity { table, .. } if *table == Table::Releases);
            if !is_release || !armed.swap(false, Ordering::SeqCst) {
                return None;
            }
            let (staged_tx, staged_rx) = oneshot::channel();
            let (go_tx, go_rx) = oneshot::channel();
            let header_of = spec;
            *hooks2.defer.lock().unwrap() = Some(Deferral {
                matches: Box::new(move |scope| {
                    matches!(scope, Scope::Entity { table, key }
                        if *table == Table::Blobs && key.ends_with(header_of.as_bytes()))
                }),
                staged: staged_tx,
                go: go_rx,
            });
            *go_slot.lock().unwrap() = Some(go_tx);
            let s = s.clone();
            let grace = BlobGc::grace(Duration::from_secs(1));
            *gc_slot.lock().unwrap() = Some(tokio::spawn(async move {
                s.lifecycle.gc_blobs(&grace, None).await.unwrap();
            }));
            Some(Box::pin(async move {
                staged_rx.await.unwrap();
            }))
        }));
    }
    {
        let (go_slot, gc_slot) = (Arc::clone(&go_slot), Arc::clone(&gc_slot));
        *hooks.after_write.lock().unwrap() = Some(Box::new(move |scope: &Scope| {
            let is_release =
                matches!(scope, Scope::Entity { table, .. } if *table == Table::Releases);
            let go = go_slot.lock().unwrap().take().filter(|_| is_release)?;
            let gc = gc_slot.lock().unwrap().take()?;
            Some(Box::pin(async move {
                go.send(()).unwrap();
                gc.await.unwrap();
            }))
        }));
    }

    let record = s
        .releases
        .promote("planner", spec, ReleaseMetadata::new("v1", "ci"), None)
        .await
        .unwrap();
    assert_eq!(record.spec_digest, spec);
    *hooks.before_write.lock().unwrap() = None;
    *hooks.after_write.lock().unwrap() = None;

    let referrers = s.lifecycle.blob_referrers(&spec).await.unwrap();
    clock.advance(10_000);
    let mut after: Option<Digest> = None;
    loop {
        let sweep = s.lifecycle.gc_blobs(&grace, after.as_ref()).await.unwrap();
        match sweep.next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    let current = s.releases.current("planner").await.unwrap();
    let got = s.cas.get(&spec).await;
    assert!(
        got.is_ok(),
        "release \"planner\" is current at {current:?} with spec {}, but gc collected it: \
         get answered {:?} (referrers after the promote: {referrers:?})",
        spec.short(),
        got.map_err(|e| e.kind())
    );
}

// ---- verify_log: an append and a compaction make a false `Corrupted` -----------

/// SPEC §2: `Corrupted` means damage, never a race. `verify_log` now
/// fails when it saw an entry past the recorded length and a re-read of
/// the length still shows that length. An append followed by a
/// `replace_log` (compaction back to the same length) between those two
/// reads fits that test: nothing was edited behind the store's back, yet
/// the answer is `Corrupted` — on every one of the four walks when the
/// writer keeps doing it. Before the change the same interleaving
/// verified.
#[tokio::test]
async fn verify_log_racing_append_and_compaction_is_not_corrupted() {
    let (s, hooks, _inner) = hooked(StoreEnv::default());
    s.sessions
        .create_session("chat", serde_json::json!({}))
        .await
        .unwrap();
    s.sessions.append_log("chat", entry(0)).await.unwrap();
    s.sessions.append_log("chat", entry(1)).await.unwrap();

    // A walk of a 2-entry log reads: the session (0), the page (1), the
    // page after the recorded end (2), the session again (3).
    hooks.reads.store(0, Ordering::SeqCst);
    {
        let s = s.clone();
        *hooks.before_read.lock().unwrap() = Some(Box::new(move |n| {
            let s = s.clone();
            match n % 4 {
                // Before the read past the end: an append lands.
                2 => Some(Box::pin(async move {
                    s.sessions.append_log("chat", entry(2)).await.unwrap();
                })),
                // Before the length is read again: compaction to 2 entries.
                3 => Some(Box::pin(async move {
                    s.sessions
                        .replace_log("chat", vec![entry(7), entry(8)], None)
                        .await
                        .unwrap();
                })),
                _ => None,
            }
        }));
    }
    let verified = s.sessions.verify_log("chat").await;
    *hooks.before_read.lock().unwrap() = None;
    assert!(
        verified.is_ok(),
        "verify_log raced only an append and a replace_log, yet answered {:?}",
        verified.map_err(|e| e.to_string())
    );
}

// ---- CAS: a dedup put reads the whole blob back inside its write job -----------

/// Performance trap: a `put` of bytes already stored used to read only
/// the blob's header inside its write job. `intact_blob` now reads (and,
/// without an engine checksum, CRC-checks) every chunk there: a dedup put
/// of a 48 MiB blob reads 48 MiB while holding the write — on the memory
/// engine its one exclusive lock, inline on a runtime worker (the hashing
/// was moved off the runtime for blobs over 64 KiB for this reason); on
/// SQLite the database's write lock; on the file engine it reads the blob
/// from disk. Every writer waits meanwhile, for as long as the blob takes
/// to read (`put_stream` of multi-GiB blobs: seconds to minutes).
#[tokio::test]
async fn a_dedup_put_does_not_read_the_whole_blob_inside_its_write() {
    let (s, hooks, _inner) = hooked(StoreEnv::default());
    let big = Bytes::from(vec![0x5a; 48 << 20]);
    let digest = s.cas.put(big.clone()).await.unwrap();
    hooks.blob_bytes_read_in_writes.store(0, Ordering::SeqCst);
    assert_eq!(s.cas.put(big.clone()).await.unwrap(), digest);
    let by_put = hooks.blob_bytes_read_in_writes.swap(0, Ordering::SeqCst);
    let reader: stowage_core::BlobReader = Box::pin(std::io::Cursor::new(big.to_vec()));
    assert_eq!(s.cas.put_stream(reader).await.unwrap(), digest);
    let by_stream = hooks.blob_bytes_read_in_writes.load(Ordering::SeqCst);
    assert!(
        by_put < (1 << 20) && by_stream < (1 << 20),
        "a dedup put of a {} MiB blob read {by_put} bytes of it inside its write job, \
         a dedup put_stream {by_stream}",
        big.len() >> 20
    );
}

// ---- Keyed: fork_release copies a record that sits under another's key ---------

/// The change's rule: "every record read by key or scan is checked to sit
/// under its own key ... never another run's record or event served as
/// this one's". `history` of a release whose record was moved in from
/// another name is now `Corrupted`, but `fork_release` reads the history
/// with a plain decode, copies the foreign record under the new name
/// (rewriting its name, so it then sits under its own key) and answers
/// `Ok`: the copy serves another release's spec as this one's history,
/// with nothing left to detect it.
#[tokio::test]
async fn fork_release_refuses_a_record_stored_under_another_name() {
    let (s, _hooks, inner) = hooked(StoreEnv::default());
    let meta = || ReleaseMetadata::new("v", "ci");
    let (mine, theirs) = (Digest::of(b"mine"), Digest::of(b"theirs"));
    s.releases.promote("src", mine, meta(), None).await.unwrap();
    s.releases.promote("src", mine, meta(), None).await.unwrap();
    s.releases
        .promote("other", theirs, meta(), None)
        .await
        .unwrap();
    // Release record keys: tag ++ u16 length ++ name ++ seq(8); the head
    // keys hold 8 bytes (the seq), the records more.
    let records: Vec<Entry> = raw_scan(&inner, Table::Releases)
        .await
        .into_iter()
        .filter(|(key, value)| value.len() > 8 && key.len() > 8)
        .collect();
    let find = |name: &[u8], seq: u64| {
        records
            .iter()
            .find(|(key, _)| {
                key.windows(name.len()).any(|w| w == name)
                    && key.ends_with(&seq.to_be_bytes())
                    && key.len() == 1 + 2 + name.len() + 8
            })
            .cloned()
            .unwrap()
    };
    let (src0, _) = find(b"src", 0);
    let (_, other0) = find(b"other", 0);
    raw_put(&inner, Table::Releases, src0, other0).await;
    assert_eq!(
        s.releases
            .history("src", None, 10)
            .await
            .unwrap_err()
            .kind(),
        ErrorKind::Corrupted
    );
    let forked = s.lifecycle.fork_release("src", "dst").await;
    let history = s.releases.history("dst", None, 10).await;
    assert_eq!(
        forked.as_ref().map_err(|e| e.kind()).err(),
        Some(ErrorKind::Corrupted),
        "fork_release copied a record stored under another name: history of the copy {:?}",
        history.map(|h| h
            .iter()
            .map(|r| (r.seq, r.spec_digest.short().to_owned()))
            .collect::<Vec<_>>())
    );
}
