//! The I/O seam: every file-system call of the engine goes through [`Vfs`]
//! and [`VFile`], so tests can run the engine on a simulated disk that
//! loses unsynced writes, tears writes, fails fsync and runs out of space.
//!
//! Appends are `write_at` at the tail offset the engine tracks.

use std::any::Any;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stowage_core::{Error, Result};

/// An open file.
pub(crate) trait VFile: Send + Sync {
    /// Fills `buf` from offset `off`; `UnexpectedEof` when the file is shorter.
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()>;
    /// Writes all of `buf` at offset `off`.
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()>;
    /// The current length.
    fn len(&self) -> io::Result<u64>;
    /// Truncates or extends to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's data stable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// For a pack: the value bytes it was written with, which compaction
    /// weighs its live bytes against (`None` for other files).
    fn packed_value_bytes(&self) -> Option<u64> {
        None
    }
}

/// A directory of files.
pub(crate) trait Vfs: Send + Sync + fmt::Debug {
    /// Creates `dir` and its parents.
    /// Creates `dir` and its missing parents; returns the directories it
    /// created, outermost first. Their entries are not yet durable: the
    /// caller syncs each one's parent ([`create_dir_durably`]).
    fn create_dir_all(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// The names of the files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens an existing file for reading and writing (for reading only on
    /// a read-only file system).
    fn open(&self, path: &Path) -> io::Result<Arc<dyn VFile>>;
    /// Creates (or truncates) a file for reading and writing.
    fn create(&self, path: &Path) -> io::Result<Arc<dyn VFile>>;
    /// Renames a file, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes `dir`'s entries (creations, renames, removals) stable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes the exclusive lock of `path` for this opener, writing our pid
    /// into it; the guard releases it on drop. A held lock is an
    /// `Unavailable` error naming the holder.
    fn lock(&self, path: &Path) -> Result<Box<dyn Any + Send + Sync>>;
}

/// Creates `dir` (and missing parents) so that it survives power loss: the
/// parent of every directory created is fsynced, outermost first. Returns
/// whether `dir` itself was created.
pub(crate) fn create_dir_durably(vfs: &dyn Vfs, dir: &Path) -> io::Result<bool> {
    let created = vfs.create_dir_all(dir)?;
    for made in &created {
        if let Some(parent) = made.parent() {
            vfs.sync_dir(parent)?;
        }
    }
    Ok(created.iter().any(|d| d == dir))
}

/// Reads a whole file.
pub(crate) fn read_all(file: &dyn VFile) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.len()?)
        .map_err(|_| io::Error::new(io::ErrorKind::OutOfMemory, "file too large"))?;
    let mut buf = vec![0u8; len];
    file.read_at(&mut buf, 0)?;
    Ok(buf)
}

/// The real file system.
#[derive(Debug, Default)]
pub(crate) struct RealFs;

struct RealFile(std::fs::File);

#[cfg(unix)]
impl VFile for RealFile {
    fn read_at(&self, buf: &mut [u8], off: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, off)
    }
    fn write_at(&self, buf: &[u8], off: u64) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, buf, off)
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

#[cfg(windows)]
impl VFile for RealFile {
    fn read_at(&self, mut buf: &mut [u8], mut off: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_read(&self.0, buf, off)? {
                0 => return Err(io::ErrorKind::UnexpectedEof.into()),
                n => {
                    buf = &mut buf[n..];
                    off += n as u64;
                }
            }
        }
        Ok(())
    }
    fn write_at(&self, mut buf: &[u8], mut off: u64) -> io::Result<()> {
        while !buf.is_empty() {
            match std::os::windows::fs::FileExt::seek_write(&self.0, buf, off)? {
                0 => return Err(io::ErrorKind::WriteZero.into()),
                n => {
                    buf = &buf[n..];
                    off += n as u64;
                }
            }
        }
        Ok(())
    }
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }
}

fn open_options() -> std::fs::OpenOptions {
    let mut o = std::fs::OpenOptions::new();
    o.read(true).write(true);
    o
}

impl Vfs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        let mut missing: Vec<PathBuf> = dir
            .ancestors()
            .take_while(|d| !d.as_os_str().is_empty() && std::fs::metadata(d).is_err())
            .map(Path::to_path_buf)
            .collect();
        missing.reverse();
        std::fs::create_dir_all(dir)?;
        Ok(missing)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            if let Some(name) = entry?.file_name().to_str() {
                out.push(name.to_owned());
            }
        }
        Ok(out)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        match open_options().open(path) {
            Ok(file) => Ok(Arc::new(RealFile(file))),
            // A read-only medium (`mode=read_only`): reads work, and any
            // write would fail (EBADF) — the engine makes none in that mode.
            Err(e) if e.kind() == io::ErrorKind::ReadOnlyFilesystem => {
                Ok(Arc::new(RealFile(std::fs::File::open(path)?)))
            }
            Err(e) => Err(e),
        }
    }
    fn create(&self, path: &Path) -> io::Result<Arc<dyn VFile>> {
        let f = open_options().create(true).truncate(true).open(path)?;
        Ok(Arc::new(RealFile(f)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    #[cfg(unix)]
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
    #[cfg(not(unix))]
    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        Ok(())
    }
    fn lock(&self, path: &Path) -> Result<Box<dyn Any + Send + Sync>> {
        let file = open_options()
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| match (e.kind(), path.parent()) {
                (io::ErrorKind::ReadOnlyFilesystem, Some(dir)) => {
                    super::read_only_medium(dir).with_source(e)
                }
                _ => Error::from(e).context(format!("opening lock file {}", path.display())),
            })?;
        crate::kv::retry_own_lock(|| match file.try_lock() {
            Ok(()) => Ok(Ok(())),
            Err(std::fs::TryLockError::WouldBlock) => {
                let holder = std::fs::read_to_string(path).unwrap_or_default();
                let err = locked_error(path, holder.trim());
                // A lock naming this process or its parent may be a
                // child's inherited share of it (see `retry_own_lock`);
                // another's is final.
                if crate::kv::held_nearby(&holder) {
                    Ok(Err(err))
                } else {
                    Err(err)
                }
            }
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::from(e).context(format!("locking {}", path.display())))
            }
        })?;
        let pid = format!("{}\n", std::process::id());
        let f = RealFile(file);
        f.set_len(0)
            .and_then(|()| f.write_at(pid.as_bytes(), 0))
            .map_err(|e| Error::from(e).context(format!("writing lock file {}", path.display())))?;
        Ok(Box::new(f.0))
    }
}

/// The error for a store whose lock is held by `holder` (a pid, if known).
pub(crate) fn locked_error(path: &Path, holder: &str) -> Error {
    let who = if holder.is_empty() {
        "another opener".to_owned()
    } else {
        format!("process {holder}")
    };
    Error::new(
        stowage_core::ErrorKind::Unavailable,
        format!(
            "the file store is already open by {who} (lock file {}); only one opener at a time",
            path.display()
        ),
    )
}
