//! Test support: a fault-injecting wrapper around the simulated disk
//! (`SimFs` cannot fail reads, nor turn read-only mid-life). `FaultFs`
//! passes every call through to the `SimFs` it wraps unless a fault in
//! its [`Faults`] is switched on: EIO on the `pread`s of files whose name
//! ends with a suffix, EROFS on every mutating call (the medium was
//! remounted read-only), EIO on every `write_at` or `set_len`, and torn
//! large writes (the first half written, then EIO).

use std::any::Any;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use super::super::vfs::{VFile, Vfs};
use super::super::{FileKv, FileOptions};
use super::{sim_dir, SimFs};
use stowage_core::Result;

#[derive(Debug, Default)]
struct Faults {
    /// pread of files whose name ends with this fails with EIO.
    read_eio_suffix: parking_lot::Mutex<Option<String>>,
    /// Every mutating call fails with EROFS (the medium was remounted
    /// read-only); reads and fsyncs of clean files still work.
    erofs: AtomicBool,
    /// Every file creation fails with EROFS.
    create_erofs: AtomicBool,
    /// Every fsync of a file fails with EROFS.
    sync_erofs: AtomicBool,
    /// Every write_at fails with EIO.
    write_eio: AtomicBool,
    /// Every set_len fails with EIO.
    set_len_eio: AtomicBool,
    /// A write_at of at least this many bytes (0: none) writes its first
    /// half, then fails with EIO.
    tear_writes_from: AtomicUsize,
}

#[derive(Debug, Clone)]
pub(super) struct FaultFs {
    sim: SimFs,
    faults: Arc<Faults>,
}

struct FaultFile {
    inner: Arc<dyn VFile>,
    path: PathBuf,
    faults: Arc<Faults>,
}

fn erofs() -> io::Error {
    io::Error::from_raw_os_error(30)
}

impl FaultFs {
    pub(super) fn new(sim: &SimFs) -> FaultFs {
        FaultFs {
            sim: sim.clone(),
            faults: Arc::default(),
        }
    }

    /// Every `pread` of a file whose path ends with `suffix` fails with
    /// EIO from now on (`None`: reads work again).
    pub(super) fn fail_reads_of(&self, suffix: Option<&str>) {
        *self.faults.read_eio_suffix.lock() = suffix.map(str::to_string);
    }

    /// Every `write_at` fails with EIO from now on (`false`: writes work
    /// again).
    pub(super) fn fail_writes(&self, on: bool) {
        self.faults.write_eio.store(on, Ordering::SeqCst);
    }

    /// Every mutating call fails with EROFS from now on (`false`: the
    /// medium is writable again). Reads and fsyncs still work.
    pub(super) fn set_read_only(&self, on: bool) {
        self.faults.erofs.store(on, Ordering::SeqCst);
    }

    /// Every file creation fails with EROFS from now on, while files
    /// already open stay writable (the medium turned read-only between
    /// two calls; `false`: creations work again).
    pub(super) fn fail_creates(&self, on: bool) {
        self.faults.create_erofs.store(on, Ordering::SeqCst);
    }

    /// Every fsync of a file fails with EROFS from now on (an ext4 that
    /// aborted its journal answers so; `false`: fsyncs work again).
    pub(super) fn fail_syncs(&self, on: bool) {
        self.faults.sync_erofs.store(on, Ordering::SeqCst);
    }

    /// Every `set_len` fails with EIO from now on (`false`: it works
    /// again).
    pub(super) fn fail_set_len(&self, on: bool) {
        self.faults.set_len_eio.store(on, Ordering::SeqCst);
    }

    /// Every `write_at` of at least `bytes` bytes writes only its first
    /// half, then fails with EIO (`0`: writes are whole again).
    pub(super) fn tear_writes_from(&self, bytes: usize) {
        self.faults.tear_writes_from.store(bytes, Ordering::SeqCst);
    }

    fn ro(&self) -> io::Result<()> {
        if self.faults.erofs.load(Ordering::SeqCst) {
            return Err(erofs());
        }
        Ok(())
    }
    fn wrap(&self, path: &Path, inner: Arc<dyn VFile>) -> Arc<dyn VFile> {
        Arc::new(FaultFile {
            inner,
            path: path.to_path_buf(),
            faults: Arc::clone(&self.faults),
        })
    }
}

impl VFile for FaultFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        if let Some(s) = &*self.faults.read_eio_suffix.lock() {
            if self.path.to_string_lossy().ends_with(s.as_str()) {
                return Err(io::Error::from_raw_os_error(5));
            }
        }
        self.inner.read_at(buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        if self.faults.erofs.load(Ordering::SeqCst) {
            return Err(erofs());
        }
        if self.faults.write_eio.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        let tear = self.faults.tear_writes_from.load(Ordering::SeqCst);
        if tear > 0 && buf.len() >= tear {
            self.inner.write_at(&buf[..buf.len() / 2], off)?;
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.write_at(buf, off)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        if self.faults.erofs.load(Ordering::SeqCst) {
            return Err(erofs());
        }
        if self.faults.set_len_eio.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(5));
        }
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        if self.faults.sync_erofs.load(Ordering::SeqCst) {
            return Err(erofs());
        }
        self.inner.sync_data()
    }
    fn packed_value_bytes(&self) -> Option<u64> {
        self.inner.packed_value_bytes()
    }
}

impl Vfs for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.sim.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.sim.list(dir)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        let f = self.sim.open(path)?;
        Ok(self.wrap(path, f))
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        self.ro()?;
        if self.faults.create_erofs.load(Ordering::SeqCst) {
            return Err(erofs());
        }
        let f = self.sim.create(path)?;
        Ok(self.wrap(path, f))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.ro()?;
        self.sim.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.ro()?;
        self.sim.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sim.sync_dir(dir)
    }
    fn lock(&self, path: &Path) -> Result<Box<dyn Any + Send + Sync>> {
        self.sim.lock(path)
    }
}

/// Opens the store at [`sim_dir`] on `fs`.
pub(super) fn open_fault(fs: &FaultFs, opts: FileOptions) -> Result<FileKv> {
    FileKv::open_on(Arc::new(fs.clone()), &sim_dir(), opts)
}
