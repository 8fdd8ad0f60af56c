//! The sled backend (`sled:///abs/dir`): sled 0.34 supplies the seam.
//!
//! One sled tree per [`Table`]. A [`Batch`] is one sled transaction over
//! the trees (all-or-nothing, across trees) that flushes sled's log to the
//! OS before it returns, so an acknowledged write survives `kill -9`.
//! **Not power loss**: sled 0.34's flush calls `sync_file_range`, never
//! `fsync`, so neither the device cache nor file metadata is flushed; the
//! capabilities say [`DurabilityLevel::ProcessCrash`].
//! `DeleteRange` is resolved to keys inside the transaction's caller: the
//! KV layer holds the entity's lock, so no key in the range can appear or
//! vanish meanwhile. sled 0.34 is beta software; see `docs/kv.md` for what
//! that means for durability. sled itself refuses a second opener of the
//! same directory (a file lock), reported as `Unavailable`.

use std::ops::Bound;
use std::path::Path;
use std::sync::Arc;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};
use stowage_core::{
    Capabilities, Durability, DurabilityLevel, Error, ErrorKind, Result, StoreEnv, Stores,
};

use super::options::KvUrl;
use super::seam::{Batch, Direction, Op, OrderedKv, Table};

/// An open sled database with one tree per table.
pub(crate) struct SledKv {
    db: sled::Db,
    /// Indexed by [`Table::id`], which follows [`Table::ALL`].
    trees: Vec<sled::Tree>,
}

/// Opens `sled:///abs/dir` (only `durability=sync`: see the module docs).
pub(crate) async fn open_url(url: &url::Url, env: StoreEnv) -> Result<Stores> {
    let parsed = KvUrl::parse(url)?;
    let capabilities = capabilities(&parsed);
    let engine = open(&parsed).await?;
    super::kv_stores(engine, env, capabilities)
}

/// What a sled store can do.
pub(crate) fn capabilities(parsed: &KvUrl) -> Capabilities {
    Capabilities {
        backend: "sled",
        // sled 0.34's flush writes with `sync_file_range`, never `fsync`:
        // an acknowledged write survives `kill -9`, not power loss.
        durability: DurabilityLevel::ProcessCrash,
        shared: false,
        max_blob_size: parsed.max_blob_size,
        streaming: true,
    }
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
    let dir = parsed.dir.clone();
    tokio::task::spawn_blocking(move || SledKv::open(&dir))
        .await
        .map_err(|e| Error::internal(format!("opening sled failed: {e}")))?
}

impl SledKv {
    fn open(dir: &Path) -> Result<Arc<SledKv>> {
        let db = sled::Config::new()
            .path(dir)
            .cache_capacity(64 * 1024 * 1024)
            // Every batch flushes before it is acknowledged, so sled's
            // background flusher thread is not needed.
            .flush_every_ms(None)
            .open()
            .map_err(|e| map_err(e).context(format_args!("opening sled at {}", dir.display())))?;
        let trees = Table::ALL
            .iter()
            .map(|t| db.open_tree(t.name()).map_err(map_err))
            .collect::<Result<Vec<_>>>()?;
        Ok(Arc::new(SledKv { db, trees }))
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

/// Maps a sled error into the stowage error kinds (keeping the source).
fn map_err(err: sled::Error) -> Error {
    let kind = match &err {
        sled::Error::Io(io) if io.to_string().contains("could not acquire lock") => {
            return Error::new(
                ErrorKind::Unavailable,
                "the sled store is already open (by this or another process); close it first",
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

    fn write(&self, batch: Batch) -> Result<()> {
        // Resolve range deletes to keys first (the caller holds the lock).
        let mut ops: Vec<(usize, Vec<u8>, Option<Vec<u8>>)> = Vec::new();
        for op in batch.ops {
            match op {
                Op::Put { table, key, value } => {
                    ops.push((usize::from(table.id()), key, Some(value)));
                }
                Op::Delete { table, key } => ops.push((usize::from(table.id()), key, None)),
                Op::DeleteRange { table, start, end } => {
                    for key in self.keys_in(table, &start, &end)? {
                        ops.push((usize::from(table.id()), key.to_vec(), None));
                    }
                }
            }
        }
        if ops.is_empty() {
            return Ok(());
        }
        let result = self.trees[..].transaction(|trees| {
            for (tree, key, value) in &ops {
                let Some(tree) = trees.get(*tree) else {
                    return Err(ConflictableTransactionError::Abort(()));
                };
                match value {
                    Some(value) => tree.insert(key.as_slice(), value.as_slice())?,
                    None => tree.remove(key.as_slice())?,
                };
            }
            if let Some(first) = trees.first() {
                first.flush();
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(()),
            Err(TransactionError::Abort(())) => Err(Error::internal(
                "a sled batch named a tree that is not open",
            )),
            Err(TransactionError::Storage(e)) => Err(map_err(e)),
        }
    }
}

impl Drop for SledKv {
    fn drop(&mut self) {
        // Nothing is left unflushed (every batch flushes), but flush once
        // more so that a close is clean even after a failed batch.
        let _ = self.db.flush();
    }
}
