//! A simulated file system for tests: it remembers what was synced, so a
//! simulated power loss keeps only synced data (plus, with a seed, a
//! random prefix of the unsynced writes, the last one torn at a 512-byte
//! sector boundary). It can also crash at the n-th mutating call, fail an
//! fsync with EIO (dropping the dirty data, as Linux does), and run out of
//! space.

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::Mutex;
use stowage_core::Result;

use super::vfs::{locked_error, VFile, Vfs};

const SECTOR: u64 = 512;

#[derive(Debug, Clone)]
enum Pending {
    Write(u64, Vec<u8>),
    SetLen(u64),
}

#[derive(Debug, Default, Clone)]
struct Node {
    cur: Vec<u8>,
    durable: Vec<u8>,
    pending: Vec<Pending>,
}

#[derive(Debug, Default, Clone)]
struct St {
    nodes: Vec<Node>,
    names: BTreeMap<PathBuf, usize>,
    durable_names: BTreeMap<PathBuf, usize>,
    /// Directories made by `create_dir_all` (`/` always exists).
    dirs: BTreeSet<PathBuf>,
    /// Those whose entry in their parent was synced.
    durable_dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    generation: u64,
    ops: u64,
    crash_at: Option<u64>,
    crashed: bool,
    fail_next_sync: bool,
    fail_next_create: bool,
    capacity: Option<u64>,
}

fn crash_error() -> io::Error {
    io::Error::other("simulated crash: the process is dead")
}

impl St {
    /// Counts a mutating call; fails it (and everything after) at the crash point.
    fn tick(&mut self) -> io::Result<()> {
        if self.crashed {
            return Err(crash_error());
        }
        self.ops += 1;
        if self.crash_at.is_some_and(|at| self.ops >= at) {
            self.crashed = true;
            return Err(crash_error());
        }
        Ok(())
    }

    fn used(&self) -> u64 {
        self.names
            .values()
            .map(|&n| self.nodes[n].cur.len() as u64)
            .sum()
    }
}

fn apply(data: &mut Vec<u8>, p: &Pending) {
    match p {
        Pending::Write(off, bytes) => {
            let off = *off as usize;
            if data.len() < off + bytes.len() {
                data.resize(off + bytes.len(), 0);
            }
            data[off..off + bytes.len()].copy_from_slice(bytes);
        }
        Pending::SetLen(len) => data.resize(*len as usize, 0),
    }
}

/// The simulated disk. Clones share it.
#[derive(Debug, Clone, Default)]
pub(crate) struct SimFs {
    st: Arc<Mutex<St>>,
}

struct SimFile {
    st: Arc<Mutex<St>>,
    node: usize,
    generation: u64,
}

impl SimFile {
    fn with<T>(&self, f: impl FnOnce(&mut St, usize) -> io::Result<T>) -> io::Result<T> {
        let mut st = self.st.lock();
        if st.crashed || st.generation != self.generation {
            return Err(crash_error());
        }
        f(&mut st, self.node)
    }
}

impl VFile for SimFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        self.with(|st, n| {
            let data = &st.nodes[n].cur;
            let off = off as usize;
            match data.get(off..off + buf.len()) {
                Some(src) => {
                    buf.copy_from_slice(src);
                    Ok(())
                }
                None => Err(io::ErrorKind::UnexpectedEof.into()),
            }
        })
    }

    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        self.with(|st, n| {
            st.tick()?;
            let mut bytes = buf;
            let mut full = false;
            if let Some(cap) = st.capacity {
                let grow = (off + buf.len() as u64).saturating_sub(st.nodes[n].cur.len() as u64);
                let free = cap.saturating_sub(st.used());
                if grow > free {
                    let fits = (buf.len() as u64 - (grow - free)) as usize;
                    bytes = &buf[..fits];
                    full = true;
                }
            }
            let p = Pending::Write(off, bytes.to_vec());
            apply(&mut st.nodes[n].cur, &p);
            st.nodes[n].pending.push(p);
            if full {
                return Err(io::ErrorKind::StorageFull.into());
            }
            Ok(())
        })
    }

    fn len(&self) -> io::Result<u64> {
        self.with(|st, n| Ok(st.nodes[n].cur.len() as u64))
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.with(|st, n| {
            st.tick()?;
            let p = Pending::SetLen(len);
            apply(&mut st.nodes[n].cur, &p);
            st.nodes[n].pending.push(p);
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.with(|st, n| {
            st.tick()?;
            let fail = std::mem::take(&mut st.fail_next_sync);
            let node = &mut st.nodes[n];
            if fail {
                // Linux marks the dirty pages clean after a failed fsync:
                // the data stays readable now but is lost on power loss.
                node.pending.clear();
                return Err(io::Error::from_raw_os_error(5));
            }
            // Only what was written since the last sync reaches the disk:
            // pages a failed sync dropped stay lost although they read
            // back from the page cache (`cur`).
            for p in std::mem::take(&mut node.pending) {
                apply(&mut node.durable, &p);
            }
            Ok(())
        })
    }
}

struct SimLock {
    st: Arc<Mutex<St>>,
    path: PathBuf,
    generation: u64,
}

impl Drop for SimLock {
    fn drop(&mut self) {
        let mut st = self.st.lock();
        if st.generation == self.generation {
            st.locks.remove(&self.path);
        }
    }
}

impl SimFs {
    pub(crate) fn new() -> Self {
        SimFs::default()
    }

    fn alive(&self) -> io::Result<parking_lot::MutexGuard<'_, St>> {
        let st = self.st.lock();
        if st.crashed {
            return Err(crash_error());
        }
        Ok(st)
    }

    /// An independent copy of the whole disk (no locks held).
    pub(crate) fn fork(&self) -> SimFs {
        let mut st = self.st.lock().clone();
        st.locks.clear();
        SimFs {
            st: Arc::new(Mutex::new(st)),
        }
    }

    /// Mutating calls made so far.
    pub(crate) fn ops(&self) -> u64 {
        self.st.lock().ops
    }

    /// Crash (fail every call from then on) at the `n`-th mutating call from now.
    pub(crate) fn crash_after(&self, n: u64) {
        let mut st = self.st.lock();
        st.crash_at = Some(st.ops + n);
    }

    /// Fails the next fsync with EIO.
    pub(crate) fn fail_next_sync(&self) {
        self.st.lock().fail_next_sync = true;
    }

    /// Fails the next file creation with `ENOSPC`.
    pub(crate) fn fail_next_create(&self) {
        self.st.lock().fail_next_create = true;
    }

    /// Limits the total bytes of all files (`None`: unlimited).
    pub(crate) fn set_capacity(&self, cap: Option<u64>) {
        self.st.lock().capacity = cap;
    }

    /// Power loss: keeps only synced data and directory entries (a file
    /// or directory inside a directory whose own entry was never synced is
    /// lost with it). With a seed, a random prefix of each file's unsynced
    /// writes survives too, the last one torn at a sector boundary.
    /// Releases all locks.
    pub(crate) fn power_loss(&self, seed: Option<u64>) {
        let mut rng = seed.unwrap_or(0) | 1;
        let mut next = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        self.lose_power_with(|node| {
            let mut data = node.durable.clone();
            if seed.is_some() && !node.pending.is_empty() {
                let keep = (next() % (node.pending.len() as u64 + 1)) as usize;
                for p in &node.pending[..keep] {
                    apply(&mut data, p);
                }
                if let Some(Pending::Write(off, bytes)) = node.pending.get(keep) {
                    let first = (off / SECTOR + 1) * SECTOR;
                    let end = off + bytes.len() as u64;
                    if first < end {
                        let cuts = (end - first).div_ceil(SECTOR);
                        let cut = first + (next() % cuts) * SECTOR;
                        let torn = Pending::Write(*off, bytes[..(cut - off) as usize].to_vec());
                        apply(&mut data, &torn);
                    }
                }
            }
            data
        });
    }

    /// Power loss on a disk that reorders writes between syncs: every
    /// 512-byte sector of every unsynced write survives or not on its own
    /// (seeded), so an earlier write can be lost while a later one
    /// persists. Lost sectors past the durable end read as zeros. Keeps
    /// only synced directory entries; releases all locks.
    pub(crate) fn power_loss_reordered(&self, seed: u64) {
        let mut rng = seed | 1;
        let mut keep = move || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng & 1 == 0
        };
        self.lose_power_with(|node| {
            let mut data = node.durable.clone();
            for p in &node.pending {
                match p {
                    Pending::Write(off, bytes) => {
                        let end = off + bytes.len() as u64;
                        let mut at = *off;
                        while at < end {
                            let next = ((at / SECTOR + 1) * SECTOR).min(end);
                            if keep() {
                                let part = &bytes[(at - off) as usize..(next - off) as usize];
                                apply(&mut data, &Pending::Write(at, part.to_vec()));
                            } else if data.len() < next as usize {
                                data.resize(next as usize, 0);
                            }
                            at = next;
                        }
                    }
                    Pending::SetLen(_) => apply(&mut data, p),
                }
            }
            data
        });
    }

    /// Power loss that keeps every unsynced write except the bytes
    /// `lost` of `path`, which revert to what was synced (zeros past it):
    /// the disk persisted later writes but not those bytes.
    pub(crate) fn power_loss_losing(&self, path: &Path, lost: std::ops::Range<u64>) {
        let target = self.st.lock().names.get(path).copied();
        let mut n = 0;
        self.lose_power_with(|node| {
            let mut data = node.cur.clone();
            if Some(n) == target {
                let start = lost.start as usize;
                let end = (lost.end as usize).min(data.len());
                for (i, byte) in data.iter_mut().enumerate().take(end).skip(start) {
                    *byte = node.durable.get(i).copied().unwrap_or(0);
                }
            }
            n += 1;
            data
        });
    }

    /// A process crash (`kill -9`) without power loss: every file keeps
    /// what was written to it, synced or not (the page cache survives),
    /// and so do unsynced directory entries; locks are released and the
    /// dead process's handles stop working.
    pub(crate) fn kill(&self) {
        let mut st = self.st.lock();
        st.locks.clear();
        st.generation += 1;
        st.crashed = false;
        st.crash_at = None;
        st.fail_next_sync = false;
    }

    /// Power loss where `survive` picks each file's bytes after it.
    fn lose_power_with(&self, mut survive: impl FnMut(&Node) -> Vec<u8>) {
        let mut st = self.st.lock();
        for node in &mut st.nodes {
            let data = survive(node);
            node.cur = data.clone();
            node.durable = data;
            node.pending.clear();
        }
        // A directory survives if its entry and its parent's did.
        let durable = st.durable_dirs.clone();
        let survives = |d: &Path| {
            d.ancestors()
                .filter(|a| a.parent().is_some())
                .all(|a| durable.contains(a))
        };
        st.dirs = durable.iter().filter(|d| survives(d)).cloned().collect();
        let dirs = st.dirs.clone();
        st.durable_dirs = dirs.clone();
        st.names = st
            .durable_names
            .iter()
            .filter(|(p, _)| p.parent().is_some_and(|d| dirs.contains(d)))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        st.durable_names = st.names.clone();
        st.locks.clear();
        st.generation += 1;
        st.crashed = false;
        st.crash_at = None;
        st.fail_next_sync = false;
    }

    /// Applies `f` to the bytes of `path` (durable and current alike), for
    /// tampering and torn-tail tests.
    pub(crate) fn edit(&self, path: &Path, f: impl FnOnce(&mut Vec<u8>)) {
        let mut st = self.st.lock();
        if let Some(&n) = st.names.get(path) {
            let node = &mut st.nodes[n];
            f(&mut node.cur);
            node.durable = node.cur.clone();
            node.pending.clear();
        }
    }

    /// The current bytes of `path`.
    pub(crate) fn contents(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.st.lock();
        st.names.get(path).map(|&n| st.nodes[n].cur.clone())
    }

    /// Removes `path` durably (a "missing segment").
    pub(crate) fn delete(&self, path: &Path) {
        let mut st = self.st.lock();
        st.names.remove(path);
        st.durable_names.remove(path);
    }
}

impl Vfs for SimFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut st = self.alive()?;
        let mut made: Vec<PathBuf> = dir
            .ancestors()
            .filter(|d| d.parent().is_some() && !st.dirs.contains(*d))
            .map(Path::to_path_buf)
            .collect();
        if !made.is_empty() {
            st.tick()?;
        }
        made.reverse();
        st.dirs.extend(made.iter().cloned());
        Ok(made)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let st = self.alive()?;
        Ok(st
            .names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        let st = self.alive()?;
        let node = *st.names.get(path).ok_or(io::ErrorKind::NotFound)?;
        Ok(Arc::new(SimFile {
            st: self.st.clone(),
            node,
            generation: st.generation,
        }))
    }

    fn create(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        let mut st = self.alive()?;
        st.tick()?;
        if std::mem::take(&mut st.fail_next_create) {
            return Err(io::Error::from_raw_os_error(28));
        }
        st.nodes.push(Node::default());
        let node = st.nodes.len() - 1;
        st.names.insert(path.to_path_buf(), node);
        Ok(Arc::new(SimFile {
            st: self.st.clone(),
            node,
            generation: st.generation,
        }))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut st = self.alive()?;
        st.tick()?;
        let node = st.names.remove(from).ok_or(io::ErrorKind::NotFound)?;
        st.names.insert(to.to_path_buf(), node);
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut st = self.alive()?;
        st.tick()?;
        st.names.remove(path).ok_or(io::ErrorKind::NotFound)?;
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut st = self.alive()?;
        st.tick()?;
        if std::mem::take(&mut st.fail_next_sync) {
            return Err(io::Error::from_raw_os_error(5));
        }
        st.durable_names.retain(|p, _| p.parent() != Some(dir));
        let current: Vec<(PathBuf, usize)> = st
            .names
            .iter()
            .filter(|(p, _)| p.parent() == Some(dir))
            .map(|(p, n)| (p.clone(), *n))
            .collect();
        st.durable_names.extend(current);
        let subdirs: Vec<PathBuf> = st
            .dirs
            .iter()
            .filter(|d| d.parent() == Some(dir))
            .cloned()
            .collect();
        st.durable_dirs.retain(|d| d.parent() != Some(dir));
        st.durable_dirs.extend(subdirs);
        Ok(())
    }

    fn lock(&self, path: &Path) -> Result<Box<dyn Any + Send + Sync>> {
        let mut st = self.alive()?;
        if !st.locks.insert(path.to_path_buf()) {
            return Err(locked_error(path, ""));
        }
        Ok(Box::new(SimLock {
            st: self.st.clone(),
            path: path.to_path_buf(),
            generation: st.generation,
        }))
    }
}
