//! Engine tests on the simulated disk and on real temp dirs, with a
//! `BTreeMap` per table as the reference model.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use super::sim::SimFs;
use super::{FileKv, FileOptions};
use crate::kv::seam::{Batch, Direction, Op, OrderedKv, Table};
use stowage_core::Result;

mod basic;
mod close;
mod codec;
mod conformance;
mod crafted;
mod crash;
mod faults;
mod faulty_fs;
mod in_doubt;
mod maintenance;
mod packs;
mod races;
mod read_faults;
mod reads;
mod record_size;
mod salvage;
mod stopped_writes;
mod stores;

/// The reference model: (table, key) → value.
type Model = BTreeMap<(Table, Vec<u8>), Vec<u8>>;

const TABLES: [Table; 3] = [Table::Blobs, Table::SessionLog, Table::Meta];

fn sim_dir() -> PathBuf {
    PathBuf::from("/sim/store")
}

fn small_opts() -> FileOptions {
    FileOptions {
        segment_size: 4096,
        checkpoint_interval: 0,
        ..FileOptions::default()
    }
}

/// How the simulated disk loses power.
#[derive(Debug, Clone, Copy)]
enum Loss {
    /// Only synced data survives.
    Clean,
    /// A seeded prefix of each file's unsynced writes, the last one torn.
    Torn(u64),
    /// Each sector of each unsynced write survives on its own (a disk
    /// that reorders writes between syncs).
    Reordered(u64),
}

impl Loss {
    /// The three kinds, seeded with `seed`.
    fn all(seed: u64) -> [Loss; 3] {
        [Loss::Clean, Loss::Torn(seed), Loss::Reordered(seed)]
    }

    fn strike(self, fs: &SimFs) {
        match self {
            Loss::Clean => fs.power_loss(None),
            Loss::Torn(seed) => fs.power_loss(Some(seed)),
            Loss::Reordered(seed) => fs.power_loss_reordered(seed),
        }
    }
}

fn open_sim(fs: &SimFs, opts: FileOptions) -> Result<FileKv> {
    FileKv::open_on(Arc::new(fs.clone()), &sim_dir(), opts)
}

/// A 2-worker multi-thread runtime, for tests that drive the stores from
/// synchronous code.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap()
}

/// The real store layer over an engine on the simulated disk.
fn stores_over(kv: &Arc<FileKv>) -> Result<stowage_core::Stores> {
    crate::kv::kv_stores(
        Arc::clone(kv) as Arc<dyn crate::kv::seam::OrderedKv>,
        stowage_core::StoreEnv::default(),
        super::capabilities(kv.opts.durability, 1 << 30),
    )
}

fn apply_model(m: &mut Model, b: &Batch) {
    for op in &b.ops {
        match op {
            Op::Put { table, key, value } => {
                m.insert((*table, key.clone()), value.clone());
            }
            Op::Delete { table, key } => {
                m.remove(&(*table, key.clone()));
            }
            Op::DeleteRange { table, start, end } => {
                m.retain(|(t, k), _| !(t == table && k >= start && k < end));
            }
        }
    }
}

/// Everything the engine holds in the test tables.
fn dump(kv: &FileKv) -> Result<Model> {
    let mut m = Model::new();
    for t in Table::ALL {
        for (k, v) in kv.scan(t, &[], None, Direction::Forward, usize::MAX)? {
            m.insert((t, k), v);
        }
    }
    Ok(m)
}

/// A deterministic pseudo-random generator (xorshift).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// `n` batches of puts (values of 0..700 bytes), deletes and range
/// deletes over a few keys of three tables, so keys are overwritten and
/// segments of 4 KiB rotate often.
fn workload(seed: u64, n: usize) -> Vec<Batch> {
    let mut rng = Rng(seed | 1);
    let mut out = Vec::new();
    for i in 0..n {
        let mut b = Batch::default();
        for _ in 0..=rng.below(3) {
            let table = TABLES[rng.below(3) as usize];
            let key = vec![b'k', rng.below(12) as u8];
            match rng.below(10) {
                0 => b.delete(table, key),
                1 => b.delete_range(table, vec![b'k', 3], vec![b'k', 6]),
                _ => {
                    let len = rng.below(700) as usize;
                    let value: Vec<u8> = (0..len).map(|j| (i + j) as u8).collect();
                    b.put(table, key, value);
                }
            }
        }
        out.push(b);
    }
    out
}
