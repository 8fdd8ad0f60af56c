//! The whole conformance suite against the file backend, including the
//! reopen checks (drop every handle, open the same directory again) and
//! tampering (flipping a byte of the stored value inside a segment file).

#![cfg(feature = "file")]

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use stowage_conformance::{Harness, Tamper};
use stowage_core::encoding::{encode_event, encode_record};
use stowage_core::{Error, ErrorKind, Result, StoreEnv, Stores};

/// One fresh temp directory per check.
struct FileHarness {
    dir: tempfile::TempDir,
}

impl FileHarness {
    fn url(&self) -> String {
        let dir = self.dir.path().join("store");
        url::Url::from_file_path(&dir)
            .map(|u| u.to_string())
            .unwrap_or_else(|()| panic!("temp dir {} is not absolute", dir.display()))
    }

    fn store_dir(&self) -> PathBuf {
        self.dir.path().join("store")
    }
}

/// Flips a byte in the middle of the newest copy of `needle` in the
/// segment files of `dir`.
fn flip_newest_copy(dir: &Path, needle: &[u8]) -> Result<()> {
    let mut segments: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "wal"))
        .collect();
    segments.sort();
    for path in segments.iter().rev() {
        let mut bytes = std::fs::read(path)?;
        if needle.is_empty() || needle.len() > bytes.len() {
            continue;
        }
        if let Some(at) = bytes.windows(needle.len()).rposition(|w| w == needle) {
            bytes[at + needle.len() / 2] ^= 0x55;
            std::fs::write(path, &bytes)?;
            return Ok(());
        }
    }
    Err(Error::new(
        ErrorKind::Unsupported,
        "the stored value was not found verbatim in any segment",
    ))
}

#[async_trait]
impl Harness for FileHarness {
    async fn open(&self) -> Result<Stores> {
        stowage_backends::open(&self.url()).await
    }

    async fn reopen(&self, stores: Stores) -> Result<Stores> {
        drop(stores);
        // The last handle may still be finishing a blocking call.
        let mut tries = 0;
        loop {
            match stowage_backends::open(&self.url()).await {
                Err(e) if e.kind() == ErrorKind::Unavailable && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                other => return other,
            }
        }
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        let dir = self.dir.path().join("with-env");
        let url = url::Url::from_file_path(&dir)
            .map_err(|()| Error::internal(format!("{} is not absolute", dir.display())))?;
        stowage_backends::open_with(url.as_str(), env).await
    }

    async fn tamper(&self, stores: &Stores, target: Tamper) -> Result<()> {
        let needle = match &target {
            Tamper::Blob(digest) => stores.cas.get(digest).await?.to_vec(),
            Tamper::RunEvent { run, seq } => {
                let after = seq.checked_sub(1);
                let events = stores.runs.read_events(*run, after, 1).await?;
                let event = events
                    .first()
                    .ok_or_else(|| Error::not_found(format!("{target:?}")))?;
                // Events are stored in core's compact layout.
                encode_event(event)?
            }
            Tamper::LogEntry { session, seq } => {
                let after = seq.checked_sub(1);
                let entries = stores.sessions.read_log(session, after, 1).await?;
                let entry = entries
                    .first()
                    .ok_or_else(|| Error::not_found(format!("{target:?}")))?;
                encode_record(entry)?
            }
            other => {
                // Replacing a log or a chain head needs the engine: the
                // in-crate harness (`kv/engine_tests.rs`, `file_integrity`)
                // runs those checks on the file engine.
                return Err(Error::unsupported(format!(
                    "flipping bytes in a segment cannot inflict {other:?}"
                )));
            }
        };
        flip_newest_copy(&self.store_dir(), &needle)
    }
}

async fn file_harness() -> FileHarness {
    FileHarness {
        dir: tempfile::tempdir().expect("temp dir"),
    }
}

stowage_conformance::conformance_tests!(file_harness);
