//! The sled backend (`sled:///abs/dir`): sled 0.34 supplies the seam.
//!
//! One sled tree per [`Table`]. A [`Batch`] is one sled transaction over
//! the trees (all-or-nothing, across trees) that flushes sled's log to the
//! OS before it returns, so an acknowledged write survives `kill -9`.
//! **Not power loss**: sled 0.34's flush calls `sync_file_range`, never
//! `fsync`, so neither the device cache nor file metadata is flushed; the
//! capabilities say [`DurabilityLevel::ProcessCrash`].
//!
//! **Honest failures** (sled on a full disk hangs in its flush, applies
//! writes it then reports as failed, and stays broken after one I/O
//! error): every batch is committed and flushed by the store's one
//! committer thread ([`Committer`]), which applies the queued batches
//! and then flushes once for all of them (group commit). A caller waits at
//! most [`flush_timeout`] (30 s, plus 1 s per 8 MiB of the batch); a
//! batch whose transaction or flush failed, or did not finish in time,
//! is `OutcomeUnknown` (sled may have applied it), never `StorageFull`,
//! and the store is **poisoned**: every later call fails with `Internal`
//! saying to reopen it (as the file engine does after a failed fsync).
//! sled's flush takes a process-wide lock, so a flush hung on a full disk
//! stalls other sled stores of the process too; their calls then time out
//! the same way instead of hanging.
//!
//! `DeleteRange` is resolved to keys inside the transaction's caller: the
//! KV layer holds the entity's lock, so no key in the range can appear or
//! vanish meanwhile. sled 0.34 is beta software; see `docs/kv.md` for what
//! that means for durability. sled itself refuses a second opener of the
//! same directory (a file lock), reported as `Unavailable`.

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use stowage_core::{
    Capabilities, Durability, DurabilityLevel, Error, ErrorKind, Result, StoreEnv, Stores,
};

use super::options::KvUrl;
use super::seam::{Batch, Direction, Op, OrderedKv, RangeSize, Table};

/// How long a caller waits for its batch to be committed and flushed
/// before it gives up with `OutcomeUnknown` and poisons the store, plus
/// the time its bytes take at [`SLOWEST_DISK`] (see [`flush_timeout`]).
pub(crate) const FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

/// The slowest write rate, in bytes per second, at which a large batch is
/// still waited for rather than taken for a hung flush.
const SLOWEST_DISK: u64 = 8 << 20;

/// How long the commit of `ops` may take: a 1 GiB blob is one batch, and
/// on a slow disk writing it alone takes longer than [`FLUSH_TIMEOUT`] —
/// giving up then would poison a healthy store.
fn flush_timeout(ops: &Ops) -> Duration {
    let bytes: u64 = ops
        .iter()
        .map(|(_, key, value)| (key.len() + value.as_ref().map_or(0, Vec::len)) as u64)
        .sum();
    FLUSH_TIMEOUT + Duration::from_secs(bytes / SLOWEST_DISK)
}

/// How long dropping the store waits for the committer to release sled's
/// handle (and so its lock). A committer stuck in a hung flush keeps it:
/// the directory then stays locked until the process exits.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// An open sled database with one tree per table.
pub(crate) struct SledKv {
    dir: PathBuf,
    /// Indexed by [`Table::id`], which follows [`Table::ALL`].
    trees: Arc<Vec<sled::Tree>>,
    /// Why the store refuses every call (a failed or hung commit).
    poison: Arc<RwLock<Option<String>>>,
    committer: Committer,
}

/// One batch for the committer: `(tree index, key, value or delete)`.
type Ops = Vec<(usize, Vec<u8>, Option<Vec<u8>>)>;

/// What the committer answers: `Err` carries the kind and the message.
type Reply = std::result::Result<(), (ErrorKind, String)>;

/// A batch and where to answer it.
type Job = (Ops, mpsc::SyncSender<Reply>);

/// The store's committer thread: applies queued batches as sled
/// transactions, then flushes once for all of them, then answers. Callers
/// wait with a timeout, so a flush that never returns fails the call
/// instead of hanging it.
struct Committer {
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    /// Signalled by the thread once it has released its database handle.
    done: Mutex<mpsc::Receiver<()>>,
}

impl Committer {
    fn start(
        db: sled::Db,
        trees: Arc<Vec<sled::Tree>>,
        poison: Arc<RwLock<Option<String>>>,
    ) -> Result<Committer> {
        let (tx, rx) = mpsc::channel::<Job>();
        let (done_tx, done_rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("stowage-sled-commit".into())
            .spawn(move || {
                while let Ok(first) = rx.recv() {
                    let mut jobs = vec![first];
                    jobs.extend(rx.try_iter());
                    commit_round(&db, &trees, &poison, jobs);
                }
                // Closing: flush what a failed round may have left, unless
                // poisoned (a poisoned sled may hang in its flush).
                if poison.read().is_none() {
                    let _ = db.flush();
                }
                drop((db, trees));
                let _ = done_tx.send(());
            })
            .map_err(|e| Error::internal(format!("starting the sled committer thread: {e}")))?;
        Ok(Committer {
            jobs: Mutex::new(Some(tx)),
            done: Mutex::new(done_rx),
        })
    }
}

/// Applies `jobs` in order, flushes once, and answers each. A failed
/// transaction or flush poisons the store: sled may have applied the
/// batch, and after an I/O error it stays broken until reopened.
fn commit_round(
    db: &sled::Db,
    trees: &[sled::Tree],
    poison: &RwLock<Option<String>>,
    jobs: Vec<Job>,
) {
    let mut answers: Vec<(mpsc::SyncSender<Reply>, Reply)> = Vec::with_capacity(jobs.len());
    let mut applied = false;
    for (ops, reply) in jobs {
        if let Some(why) = &*poison.read() {
            let refused = format!("unusable after a failed write ({why}); close and reopen it");
            answers.push((reply, Err((ErrorKind::Internal, refused))));
            continue;
        }
        let answer = match apply(trees, &ops) {
            Ok(()) => {
                applied = true;
                Ok(())
            }
            Err(TransactionError::Abort(())) => Err((
                ErrorKind::Internal,
                "a sled batch named a tree that is not open".to_owned(),
            )),
            Err(TransactionError::Storage(e)) => Err((
                ErrorKind::OutcomeUnknown,
                poison_with(poison, "a transaction", &e),
            )),
        };
        answers.push((reply, answer));
    }
    if applied {
        if let Err(e) = db.flush() {
            let why = poison_with(poison, "a flush", &e);
            for (_, answer) in &mut answers {
                if answer.is_ok() {
                    *answer = Err((ErrorKind::OutcomeUnknown, why.clone()));
                }
            }
        }
    }
    for (reply, answer) in answers {
        let _ = reply.send(answer);
    }
}

/// Records why the store is poisoned (the first reason wins) and returns
/// the message for the failed batch.
fn poison_with(poison: &RwLock<Option<String>>, what: &str, e: &sled::Error) -> String {
    let why = format!("sled failed in {what}: {e}");
    let mut p = poison.write();
    if p.is_none() {
        *p = Some(why.clone());
    }
    format!("{why}; sled may or may not have applied the write, and the store must be reopened")
}

/// One batch as one sled transaction across the trees.
fn apply(trees: &[sled::Tree], ops: &Ops) -> std::result::Result<(), TransactionError<()>> {
    trees.transaction(|trees| {
        for (tree, key, value) in ops {
            let Some(tree) = trees.get(*tree) else {
                return Err(ConflictableTransactionError::Abort(()));
            };
            match value {
                Some(value) => tree.insert(key.as_slice(), value.as_slice())?,
                None => tree.remove(key.as_slice())?,
            };
        }
        Ok(())
    })
}

/// Opens the store `parsed` describes (from a URL or typed options).
///
/// # Errors
/// As [`open`].
pub(crate) async fn open_parsed(parsed: KvUrl, env: StoreEnv) -> Result<Stores> {
    let capabilities = capabilities(&parsed);
    let engine = open(&parsed).await?;
    super::kv_stores(engine, env, capabilities)
}

/// What a sled store can do.
pub(crate) fn capabilities(parsed: &KvUrl) -> Capabilities {
    // sled 0.34's flush writes with `sync_file_range`, never `fsync`: an
    // acknowledged write survives `kill -9`, not power loss.
    Capabilities::new(
        "sled",
        DurabilityLevel::ProcessCrash,
        false,
        parsed.max_blob_size,
    )
}

/// Opens the engine on the blocking pool.
///
/// # Errors
/// `Unsupported` for `durability=buffered`; `Unavailable` when another
/// opener holds the directory; library errors mapped by kind.
pub(crate) async fn open(parsed: &KvUrl) -> Result<Arc<SledKv>> {
    if parsed.durability == Durability::Buffered {
        return Err(Error::unsupported(
            "sled:// supports only durability=sync: sled buffers writes in memory until a \
             flush, so acknowledging without one would lose writes on kill -9",
        ));
    }
    if parsed.read_only {
        return Err(Error::unsupported(format!(
            "sled store {}: mode=read_only is not supported: sled 0.34 has no read-only \
             open (it always takes its lock and may write on open); copy the directory to \
             writable storage to inspect it",
            parsed.dir.display()
        )));
    }
    let dir = parsed.dir.clone();
    tokio::task::spawn_blocking(move || SledKv::open(&dir))
        .await
        .map_err(|e| Error::internal(format!("opening sled failed: {e}")))?
}

impl SledKv {
    fn open(dir: &Path) -> Result<Arc<SledKv>> {
        let config = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            // Every batch flushes before it is acknowledged, so sled's
            // background flusher thread is not needed.
            .flush_every_ms(None);
        let db = super::retry_own_lock(|| match config.open() {
            Ok(db) => Ok(Ok(db)),
            // sled's lock is an `flock` too: one naming this process may be
            // a spawning child's inherited share of it.
            Err(e) if is_locked(&e) => {
                let held_here = super::held_nearby(&holder(dir));
                let err = locked_error(dir).with_source(e);
                if held_here {
                    Ok(Err(err))
                } else {
                    Err(err)
                }
            }
            Err(e) => Err(map_err(e).context(format_args!("opening sled at {}", dir.display()))),
        })?;
        // sled's lock records no holder: record ours beside it, so that the
        // next opener's error can name us (best effort: only a hint).
        let _ = std::fs::write(dir.join(HOLDER), format!("{}\n", std::process::id()));
        let trees = Arc::new(
            Table::ALL
                .iter()
                .map(|t| db.open_tree(t.name()).map_err(map_err))
                .collect::<Result<Vec<_>>>()?,
        );
        let poison = Arc::new(RwLock::new(None));
        let committer = Committer::start(db.clone(), Arc::clone(&trees), Arc::clone(&poison))?;
        Ok(Arc::new(SledKv {
            dir: dir.to_path_buf(),
            trees,
            poison,
            committer,
        }))
    }

    /// Fails once a failed or hung commit poisoned the store.
    fn check_poison(&self) -> Result<()> {
        match &*self.poison.read() {
            None => Ok(()),
            Some(why) => Err(Error::internal(format!(
                "sled store {} is unusable after a failed write ({why}); close and reopen it",
                self.dir.display()
            ))),
        }
    }

    /// Hands `ops` to the committer and waits at most [`flush_timeout`].
    fn commit(&self, ops: Ops) -> Result<()> {
        let timeout = flush_timeout(&ops);
        let (reply_tx, reply_rx) = mpsc::sync_channel(1);
        let sent = match &*self.committer.jobs.lock() {
            Some(jobs) => jobs.send((ops, reply_tx)).is_ok(),
            None => false,
        };
        if !sent {
            return Err(Error::internal(format!(
                "sled store {}: the committer thread is gone; close and reopen it",
                self.dir.display()
            )));
        }
        match reply_rx.recv_timeout(timeout) {
            Ok(Ok(())) => Ok(()),
            Ok(Err((kind, message))) => Err(Error::new(
                kind,
                format!("sled store {}: {message}", self.dir.display()),
            )),
            Err(_) => {
                let why = format!(
                    "a commit did not finish within {} s (sled's flush may hang on a full disk)",
                    timeout.as_secs()
                );
                let mut p = self.poison.write();
                if p.is_none() {
                    *p = Some(why.clone());
                }
                Err(Error::new(
                    ErrorKind::OutcomeUnknown,
                    format!(
                        "sled store {}: {why}; sled may or may not have applied the write, and \
                         the store must be reopened",
                        self.dir.display()
                    ),
                ))
            }
        }
    }

    fn tree(&self, table: Table) -> Result<&sled::Tree> {
        self.trees
            .get(usize::from(table.id()))
            .ok_or_else(|| Error::internal(format!("sled tree {} is not open", table.name())))
    }

    /// The keys of `[start, end)` in `table`.
    fn keys_in(&self, table: Table, start: &[u8], end: &[u8]) -> Result<Vec<sled::IVec>> {
        self.tree(table)?
            .range::<&[u8], _>((Bound::Included(start), Bound::Excluded(end)))
            .keys()
            .map(|k| k.map_err(map_err))
            .collect()
    }
}

/// The file, beside sled's own, naming the process that holds the store.
const HOLDER: &str = "stowage.holder";

/// Whether `err` is sled refusing a second opener.
fn is_locked(err: &sled::Error) -> bool {
    matches!(err, sled::Error::Io(io) if io.to_string().contains("could not acquire lock"))
}

/// The pid the last opener recorded in [`HOLDER`] (empty if none).
fn holder(dir: &Path) -> String {
    std::fs::read_to_string(dir.join(HOLDER))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

/// The error for a sled store another opener holds, naming the holder
/// when it recorded itself in [`HOLDER`].
fn locked_error(dir: &Path) -> Error {
    let who = match holder(dir).as_str() {
        "" => "another opener (this or another process)".to_owned(),
        pid if pid == std::process::id().to_string() => {
            format!("this process ({pid}): close or drop the other Stores first")
        }
        pid => format!("process {pid}"),
    };
    Error::new(
        ErrorKind::Unavailable,
        format!(
            "the sled store at {} is already open by {who}; only one opener at a time",
            dir.display()
        ),
    )
}

/// Maps a sled error into the stowage error kinds (keeping the source).
fn map_err(err: sled::Error) -> Error {
    let kind = match &err {
        sled::Error::Io(_) if is_locked(&err) => ErrorKind::Unavailable,
        sled::Error::Io(io) if io.kind() == std::io::ErrorKind::ReadOnlyFilesystem => {
            return Error::unsupported(
                "sled: the file system is read-only, so the store cannot be opened; sled 0.34 \
                 has no read-only mode (mode=read_only works for file:// stores): copy the \
                 directory to writable storage to inspect it",
            )
            .with_source(err);
        }
        sled::Error::Io(io) => Error::from(std::io::Error::new(io.kind(), io.to_string())).kind(),
        sled::Error::Corruption { .. } => ErrorKind::Corrupted,
        sled::Error::Unsupported(_) => ErrorKind::Unsupported,
        _ => ErrorKind::Internal,
    };
    Error::new(kind, format!("sled: {err}")).with_source(err)
}

impl OrderedKv for SledKv {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.check_poison()?;
        Ok(self
            .tree(table)?
            .get(key)
            .map_err(map_err)?
            .map(|v| v.to_vec()))
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.check_poison()?;
        if end.is_some_and(|end| end <= start) {
            return Ok(Vec::new());
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        let range = self
            .tree(table)?
            .range::<&[u8], _>((Bound::Included(start), upper));
        let pair = |item: sled::Result<(sled::IVec, sled::IVec)>| {
            item.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(map_err)
        };
        match direction {
            Direction::Forward => range.take(limit).map(pair).collect(),
            Direction::Reverse => range.rev().take(limit).map(pair).collect(),
        }
    }

    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<Option<RangeSize>> {
        self.check_poison()?;
        let mut size = RangeSize::default();
        if end.is_some_and(|end| end <= start) {
            return Ok(Some(size));
        }
        let upper = end.map_or(Bound::Unbounded, Bound::Excluded);
        // Values come back as shared page buffers: nothing is copied.
        for item in self
            .tree(table)?
            .range::<&[u8], _>((Bound::Included(start), upper))
        {
            let (_, value) = item.map_err(map_err)?;
            size.entries += 1;
            size.bytes += value.len() as u64;
        }
        Ok(Some(size))
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.check_poison()?;
        // Resolve range deletes to keys first (the caller holds the lock).
        let mut ops: Ops = Vec::new();
        for op in batch.ops {
            match op {
                Op::Put { table, key, value } => {
                    ops.push((usize::from(table.id()), key, Some(value)));
                }
                Op::Delete { table, key } => ops.push((usize::from(table.id()), key, None)),
                Op::DeleteRange { table, start, end } => {
                    let tree = usize::from(table.id());
                    let in_range = |key: &[u8]| start.as_slice() <= key && key < end.as_slice();
                    // Staged before the range delete, so deleted by it:
                    // what this batch put in the range, which the scan of
                    // committed keys below cannot see.
                    let staged: Vec<Vec<u8>> = ops
                        .iter()
                        .filter(|(t, key, value)| *t == tree && value.is_some() && in_range(key))
                        .map(|(_, key, _)| key.clone())
                        .collect();
                    ops.extend(staged.into_iter().map(|key| (tree, key, None)));
                    for key in self.keys_in(table, &start, &end)? {
                        ops.push((tree, key.to_vec(), None));
                    }
                }
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        self.commit(ops)
    }

    /// Every acknowledged batch was flushed by the committer already, so
    /// closing has nothing to flush: it reports a poisoned store (whose
    /// last writes may be lost), and dropping the engine right after
    /// stops the committer and releases sled's lock.
    fn close(&self) -> Result<()> {
        self.check_poison()
    }
}

impl Drop for SledKv {
    fn drop(&mut self) {
        // Closing the queue stops the committer, which flushes once more
        // (unless poisoned) and releases its handle; wait for it, bounded,
        // so that the directory's lock is free once the store is dropped.
        self.committer.jobs.lock().take();
        let _ = self.committer.done.lock().recv_timeout(CLOSE_TIMEOUT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A large batch is given time for its bytes (a 1 GiB blob gets 128 s
    /// more): on a slow disk it is no hung flush.
    #[test]
    fn a_large_batch_is_given_time_for_its_bytes() {
        let small: Ops = vec![(0, b"k".to_vec(), Some(vec![0; 100]))];
        assert_eq!(flush_timeout(&small), FLUSH_TIMEOUT);
        let chunk = || (0, b"c".to_vec(), Some(vec![0; 1 << 20]));
        let gib: Ops = (0..1024).map(|_| chunk()).collect();
        assert_eq!(
            flush_timeout(&gib),
            FLUSH_TIMEOUT + Duration::from_secs(128)
        );
    }
}
