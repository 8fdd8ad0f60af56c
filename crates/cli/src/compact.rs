//! `stowage compact`: gives the space that deletions freed back to the
//! file system (`Lifecycle::compact`) and, for a store in the local file
//! system, says how much it was.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::Serialize;
use stowage_core::{Error, Result};

use crate::args::StoreArg;
use crate::table::bytes;
use crate::{json_line, local_path, open, stdout_failed, Outcome};

/// What `stowage compact --json` prints.
#[derive(Debug, Serialize)]
struct Report {
    /// The store, as shown (no password).
    url: String,
    /// How long the compaction took.
    seconds: f64,
    /// Bytes the store's files took on disk before (`null` when the store
    /// is not in the local file system).
    bytes_before: Option<u64>,
    /// The same, after.
    bytes_after: Option<u64>,
}

/// Runs `stowage compact`.
pub(crate) async fn run(args: StoreArg) -> Result<Outcome> {
    let stores = open(&args.url).await?;
    let files = local_path(&args.url);
    let bytes_before = disk_usage(files.as_deref()).await?;
    let started = Instant::now();
    stores.lifecycle.compact().await?;
    let seconds = started.elapsed().as_secs_f64();
    let bytes_after = disk_usage(files.as_deref()).await?;
    let report = Report {
        url: stowage_backends::shown_url(&args.url),
        seconds,
        bytes_before,
        bytes_after,
    };
    let mut out = std::io::stdout().lock();
    if args.json {
        json_line(&mut out, &report)?;
    } else {
        writeln!(out, "{}", describe(&report)).map_err(stdout_failed)?;
    }
    Ok(Outcome::Clean)
}

/// `compacted file:///… in 0.42 s: 33.0 MiB → 6.4 MiB on disk`.
fn describe(r: &Report) -> String {
    let head = format!("compacted {} in {:.2} s", r.url, r.seconds);
    match (r.bytes_before, r.bytes_after) {
        (Some(before), Some(after)) => {
            format!("{head}: {} → {} on disk", bytes(before), bytes(after))
        }
        _ => head,
    }
}

/// The bytes a local store's files take on disk (allocated blocks, as
/// `du` counts them): `path` is its directory (file, sled, RocksDB) or its
/// database file, whose journals sit beside it (SQLite). `None` for a store
/// not in the local file system.
async fn disk_usage(path: Option<&Path>) -> Result<Option<u64>> {
    let Some(path) = path.map(Path::to_path_buf) else {
        return Ok(None);
    };
    let counted = tokio::task::spawn_blocking(move || usage_of(&path))
        .await
        .map_err(|e| Error::internal(format!("measuring the store's size failed: {e}")))?;
    counted
        .map(Some)
        .map_err(|e| Error::from(e).context("measuring the store's size on disk"))
}

fn usage_of(path: &Path) -> std::io::Result<u64> {
    if path.is_dir() {
        return dir_usage(path);
    }
    // A database file and its journals (`-wal`, `-shm`, `-journal`).
    let mut total = allocated(&std::fs::metadata(path)?);
    for suffix in ["-wal", "-shm", "-journal"] {
        let mut beside = path.as_os_str().to_owned();
        beside.push(suffix);
        match std::fs::metadata(PathBuf::from(beside)) {
            Ok(meta) => total += allocated(&meta),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

fn dir_usage(dir: &Path) -> std::io::Result<u64> {
    let mut listed = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        listed.push(entry?.path());
    }
    listed_usage(listed)
}

/// What the files and directories `listed` take on disk. One removed
/// since it was listed — a segment or checkpoint the store retires while
/// `compact` measures — takes nothing and is skipped, not an error.
fn listed_usage(listed: impl IntoIterator<Item = PathBuf>) -> std::io::Result<u64> {
    let mut total = 0;
    for path in listed {
        let usage = std::fs::symlink_metadata(&path).and_then(|meta| {
            if meta.is_dir() {
                dir_usage(&path)
            } else {
                Ok(allocated(&meta))
            }
        });
        match usage {
            Ok(bytes) => total += bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    Ok(total)
}

fn allocated(meta: &std::fs::Metadata) -> u64 {
    use std::os::unix::fs::MetadataExt;
    meta.blocks().saturating_mul(512)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_local_and_remote_stores() {
        let mut r = Report {
            url: "file:///s".into(),
            seconds: 0.5,
            bytes_before: Some(3 << 20),
            bytes_after: Some(1 << 20),
        };
        assert_eq!(
            describe(&r),
            "compacted file:///s in 0.50 s: 3.0 MiB → 1.0 MiB on disk"
        );
        r.bytes_before = None;
        r.bytes_after = None;
        assert_eq!(describe(&r), "compacted file:///s in 0.50 s");
    }

    #[test]
    fn counts_a_database_file_with_its_journals() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("s.db");
        std::fs::write(&db, vec![1u8; 64 * 1024]).unwrap();
        let alone = usage_of(&db).unwrap();
        assert!(alone >= 64 * 1024, "{alone}");
        std::fs::write(dir.path().join("s.db-wal"), vec![1u8; 64 * 1024]).unwrap();
        assert!(usage_of(&db).unwrap() >= alone + 64 * 1024);
        let nested = dir.path().join("sub");
        std::fs::create_dir(&nested).unwrap();
        std::fs::write(nested.join("x"), vec![1u8; 8192]).unwrap();
        assert!(usage_of(dir.path()).unwrap() >= usage_of(&db).unwrap() + 8192);
    }

    /// Before, a file removed between the listing and its measurement
    /// failed `compact` with `NotFound` after the compaction had run.
    #[test]
    fn a_file_removed_while_measuring_takes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let kept = dir.path().join("kept");
        std::fs::write(&kept, vec![1u8; 8192]).unwrap();
        let gone = dir.path().join("0000000000000001.wal");
        std::fs::write(&gone, vec![1u8; 8192]).unwrap();
        let gone_dir = dir.path().join("gone-dir");
        std::fs::create_dir(&gone_dir).unwrap();
        let listed = vec![kept.clone(), gone.clone(), gone_dir.clone()];
        std::fs::remove_file(&gone).unwrap();
        std::fs::remove_dir(&gone_dir).unwrap();
        assert_eq!(listed_usage(listed).unwrap(), usage_of(&kept).unwrap());
    }
}
