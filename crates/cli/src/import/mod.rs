//! `stowage import`: replay an export into any backend, exactly and
//! idempotently.
//!
//! The [`Importer`] is a [`Sink`]: it takes records in file order (from a
//! file, or straight from a source store in `migrate`) and recreates each
//! entity through the public store traits, so it works on every backend.
//!
//! **Exactness.** Stores assign run ids, `created_at`/`updated_at`/
//! `finished_at` and seqs. The target is opened with a [`Replay`]
//! environment whose clock and id generator are pinned to the source
//! record's values around each call; events and log entries carry their
//! explicit timestamps and idempotency keys, and are appended with the
//! expected seq, so the target computes the same hash chain. Every
//! recreated record is compared with the source record (all fields,
//! hashes included) and any difference is an error naming the entity and
//! field. Sessions: the version is reproduced by repeating the save
//! (`version - 1` calls, the last one setting the state; a `version`
//! above [`MAX_SESSION_VERSION`](crate::format::MAX_SESSION_VERSION) is
//! refused), so only the final record — not the history of `data`
//! between saves — is exact;
//! the log reproduced is the current one (entries replaced by a
//! `replace_log` are gone from the source too).
//!
//! **Idempotency.** Before recreating anything the importer looks at the
//! target: an entity that already exists is compared with the source
//! (creation fields, then every event/entry/record the target already
//! has), and only the missing tail is appended. Re-running an interrupted
//! import therefore finishes the job and duplicates nothing; a target that
//! holds a *different* entity under the same id is a `Conflict` and is
//! never merged. A blob counts as there when the target *lists* it (see
//! `listed`); a blob the file cuts short is never stored (see
//! `upload`). Nothing else may write the target during an import.

use async_trait::async_trait;
use bytes::Bytes;
use serde::Serialize;
use stowage_core::{Error, LogEntry, ReleaseRecord, Result, Run, Session, Stores};

use crate::args::ImportArgs;
use crate::export::Sink;
use crate::format::{Counts, Record, RefLine};
use crate::progress::{count, describe, Progress, ProgressSink};
use crate::replay::Replay;
use crate::Outcome;

mod chains;
mod reader;
mod upload;

pub use reader::{feed, import_file};
use upload::Upload;

/// Recreates exported records in a target store (see the module docs).
pub struct Importer {
    stores: Stores,
    replay: std::sync::Arc<Replay>,
    state: State,
    header_seen: bool,
    ended: bool,
    seen: Counts,
    /// The last release name touched and its next seq in the target.
    release_next: Option<(String, u64)>,
    /// Blobs runs reference (`blob_ref` lines), until their run record
    /// arrives (see `event_refs`).
    run_refs: std::collections::HashMap<stowage_core::RunId, Vec<stowage_core::Digest>>,
}

impl std::fmt::Debug for Importer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Importer")
            .field("seen", &self.seen)
            .finish_non_exhaustive()
    }
}

enum State {
    Idle,
    Blob(BlobState),
    Run(RunState),
    Session(SessionReplay),
}

struct BlobState {
    digest: stowage_core::Digest,
    size: u64,
    received: u64,
    /// `None` when the target already holds the blob (chunks are skipped).
    upload: Option<Upload>,
}

struct RunState {
    source: Run,
    /// Events the target already had when the run was reached.
    existing: u64,
    next: u64,
    /// Blobs the run references that the events appended here declare
    /// (see `event_refs`), taken from the front.
    refs: Vec<stowage_core::Digest>,
}

struct SessionReplay {
    source: Session,
    log_len: u64,
    existing: Vec<LogEntry>,
    next: u64,
}

impl Importer {
    /// An importer into `stores`, which must have been opened with
    /// `replay.env()` (e.g. `stowage_backends::open_with(url, replay.env())`).
    pub fn new(stores: Stores, replay: std::sync::Arc<Replay>) -> Self {
        Importer {
            stores,
            replay,
            state: State::Idle,
            header_seen: false,
            ended: false,
            seen: Counts::default(),
            release_next: None,
            run_refs: Default::default(),
        }
    }

    /// Opens `url` with a fresh [`Replay`] environment and returns an
    /// importer into it.
    ///
    /// # Errors
    /// As `stowage_backends::open_with`.
    pub async fn open(url: &str) -> Result<Self> {
        let replay = Replay::new();
        let stores = stowage_backends::open_with(url, replay.env())
            .await
            .map_err(|e| e.context(format!("opening {}", stowage_backends::shown_url(url))))?;
        crate::close_at_end(&stores);
        Ok(Importer::new(stores, replay))
    }

    /// The target stores.
    pub fn stores(&self) -> &Stores {
        &self.stores
    }

    /// What was taken so far.
    pub fn counts(&self) -> Counts {
        self.seen
    }

    /// Checks that the stream ended with its `end` record.
    ///
    /// # Errors
    /// `InvalidInput` when it did not (a truncated file: what it held was
    /// applied; re-run with the complete file to finish).
    pub fn finish(&self) -> Result<Counts> {
        if !self.ended {
            return Err(Error::invalid_input(format!(
                "the export ended without its end record after {}: it is truncated, so the \
                 import is incomplete; re-run the import with the complete file to finish it",
                describe(&self.seen)
            )));
        }
        Ok(self.seen)
    }

    async fn apply(&mut self, record: Record) -> Result<()> {
        if self.ended {
            return Err(damaged("a record follows the end record"));
        }
        if !self.header_seen {
            return match record {
                Record::Header(h) => {
                    h.check()?;
                    self.header_seen = true;
                    Ok(())
                }
                _ => Err(damaged("the first record is not the header")),
            };
        }
        // Chunks, events and log entries continue the entity in progress;
        // anything else must find the previous one complete.
        let continues = matches!(
            (&self.state, &record),
            (State::Blob(_), Record::Chunk { .. })
                | (State::Run(_), Record::Event { .. })
                | (State::Session(_), Record::Log { .. })
        );
        if continues {
            return match record {
                Record::Chunk { data } => self.blob_chunk(data).await,
                Record::Event { event } => self.event(event).await,
                Record::Log { entry } => self.log(entry).await,
                _ => Err(damaged("a record inside an unfinished entity")),
            };
        }
        match &self.state {
            State::Idle => self.start(record).await,
            State::Blob(b) => Err(damaged(&format!(
                "blob {} ended after {} of {} bytes",
                b.digest.short(),
                b.received,
                b.size
            ))),
            State::Run(r) => Err(damaged(&format!(
                "run {} has {} events but the file holds only {}",
                r.source.id, r.source.event_count, r.next
            ))),
            State::Session(s) => Err(damaged(&format!(
                "session {:?} has {} log entries but the file holds only {}",
                s.source.id, s.log_len, s.next
            ))),
        }
    }

    async fn start(&mut self, record: Record) -> Result<()> {
        match record {
            Record::Header(_) => Err(damaged("a second header")),
            Record::Blob { digest, size } => self.blob(digest, size).await,
            Record::BlobRef { digest, referrer } => match referrer {
                RefLine::Pin { label } => self.stores.lifecycle.pin_blob(&digest, &label).await,
                RefLine::Run { run } => {
                    self.run_refs.entry(run).or_default().push(digest);
                    Ok(())
                }
            },
            Record::Release { record } => self.release(record).await,
            Record::Run { run } => self.run(run).await,
            Record::Session { session, log_len } => self.session(session, log_len).await,
            Record::Supersession { record } => {
                self.stores.supersessions.put(record.clone()).await?;
                let stored = self.stores.supersessions.get(&record.target).await?;
                same(
                    &format!("supersession of {}", record.target.short()),
                    stored.as_ref(),
                    Some(&record),
                )
            }
            Record::End { counts } => {
                if counts != self.seen {
                    return Err(damaged(&format!(
                        "the end record counts {} but the file held {}",
                        describe(&counts),
                        describe(&self.seen)
                    )));
                }
                self.ended = true;
                Ok(())
            }
            Record::Chunk { .. } => Err(damaged("a chunk outside a blob")),
            Record::Event { event } => Err(damaged(&format!(
                "event {} of run {} outside its run",
                event.seq, event.run_id
            ))),
            Record::Log { entry } => Err(damaged(&format!(
                "log entry {} of session {:?} outside its session",
                entry.seq, entry.session_id
            ))),
        }
    }

    // ---- blobs ----

    async fn blob(&mut self, digest: stowage_core::Digest, size: u64) -> Result<()> {
        let upload = if listed(self.stores.cas.as_ref(), &digest).await? {
            None
        } else {
            Some(Upload::start(&self.stores.cas))
        };
        let state = BlobState {
            digest,
            size,
            received: 0,
            upload,
        };
        self.blob_step(state).await
    }

    async fn blob_chunk(&mut self, data: Bytes) -> Result<()> {
        let State::Blob(mut b) = std::mem::replace(&mut self.state, State::Idle) else {
            return Err(damaged("a chunk outside a blob"));
        };
        let len = data.len() as u64;
        if data.is_empty() || b.received + len > b.size {
            return Err(damaged(&format!(
                "blob {}: its chunks do not add up to its size {}",
                b.digest.short(),
                b.size
            )));
        }
        b.received += len;
        if let Some(upload) = b.upload.take() {
            b.upload = Some(upload.write(&data).await?);
        }
        self.blob_step(b).await
    }

    /// Completes the blob once every byte arrived, else waits for chunks.
    async fn blob_step(&mut self, b: BlobState) -> Result<()> {
        if b.received < b.size {
            self.state = State::Blob(b);
            return Ok(());
        }
        self.state = State::Idle;
        match b.upload {
            Some(upload) => upload.complete(&b.digest).await,
            None => Ok(()),
        }
    }

    // ---- releases ----

    async fn release(&mut self, record: ReleaseRecord) -> Result<()> {
        let releases = std::sync::Arc::clone(&self.stores.releases);
        let next = match &self.release_next {
            Some((name, next)) if *name == record.name => *next,
            _ => match releases.current(&record.name).await {
                Ok(cur) => cur.seq.saturating_add(1),
                Err(e) if e.kind() == stowage_core::ErrorKind::NotFound => 0,
                Err(e) => return Err(e),
            },
        };
        let entity = format!("release {:?} record {}", record.name, record.seq);
        let stored = if record.seq < next {
            let mut found = releases
                .history(&record.name, Some(record.seq.saturating_add(1)), 1)
                .await?;
            found.pop()
        } else if record.seq == next {
            let _pin = self.replay.pin(record.created_at, None);
            Some(match record.restored {
                None => {
                    releases
                        .promote(
                            &record.name,
                            record.spec_digest,
                            record.metadata.clone(),
                            record.seq.checked_sub(1),
                        )
                        .await?
                }
                Some(restored) => {
                    releases
                        .rollback_to(&record.name, restored, &record.metadata.promoted_by)
                        .await?
                }
            })
        } else {
            return Err(damaged(&format!(
                "{entity} follows record {}",
                next.wrapping_sub(1)
            )));
        };
        same(&entity, stored.as_ref(), Some(&record))?;
        self.release_next = Some((record.name.clone(), next.max(record.seq.saturating_add(1))));
        Ok(())
    }
}

#[async_trait]
impl Sink for Importer {
    async fn put(&mut self, record: Record) -> Result<()> {
        let mut counted = self.seen;
        count(&mut counted, &record);
        let is_end = matches!(record, Record::End { .. });
        self.apply(record).await?;
        if !is_end {
            self.seen = counted;
        }
        Ok(())
    }
}

/// Whether the target already has blob `digest` for an import: whether it
/// *lists* it. `contains` is not enough: a put interrupted after storing
/// the bytes (on Redis: the process killed, or the server gone, between
/// the blob and its listing) leaves a blob that exists but that `list`,
/// hence export and parity, do not see; putting the same bytes again
/// lists it, so such a blob must be imported, not skipped.
///
/// # Errors
/// As [`CasStore::list`](stowage_core::CasStore::list).
async fn listed(cas: &dyn stowage_core::CasStore, digest: &stowage_core::Digest) -> Result<bool> {
    let after = just_below(digest);
    Ok(cas.list(after.as_ref(), 1).await?.first() == Some(digest))
}

/// The digest right before `digest` (as a number), so that a `list` after
/// it starts at `digest`; `None` for the all-zero digest.
fn just_below(digest: &stowage_core::Digest) -> Option<stowage_core::Digest> {
    let mut below = *digest.as_bytes();
    let i = below.iter().rposition(|&b| b != 0)?;
    below[i] -= 1;
    below[i + 1..].fill(0xff);
    Some(stowage_core::Digest::from_array(below))
}

/// The error for a malformed export stream.
fn damaged(what: &str) -> Error {
    Error::invalid_input(format!("the export is damaged: {what}"))
}

/// The error for a target that did not reproduce a record exactly.
fn not_reproduced(what: &str) -> Error {
    Error::conflict(format!("cannot reproduce the source exactly: {what}"))
}

/// `Ok` when `stored` equals `wanted`, else a `Conflict` naming the entity
/// and the first differing field.
fn same<T: Serialize + PartialEq>(
    entity: &str,
    stored: Option<&T>,
    wanted: Option<&T>,
) -> Result<()> {
    match (stored, wanted) {
        (Some(a), Some(b)) if a == b => Ok(()),
        (Some(a), Some(b)) => Err(Error::conflict(format!(
            "{entity} differs between the target and the source (first difference: {}); \
             the target already held something else, or the backend does not reproduce it exactly",
            first_difference(a, b).unwrap_or_else(|| "-".into())
        ))),
        (None, _) => Err(Error::conflict(format!(
            "{entity} is missing from the target"
        ))),
        (Some(_), None) => Err(Error::conflict(format!("{entity} is not in the source"))),
    }
}

/// The first top-level field whose JSON differs, as `field: target … vs source …`.
pub(crate) fn first_difference<T: Serialize>(target: &T, source: &T) -> Option<String> {
    let a = serde_json::to_value(target).ok()?;
    let b = serde_json::to_value(source).ok()?;
    match (&a, &b) {
        (serde_json::Value::Object(x), serde_json::Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find(|k| x.get(*k) != y.get(*k)).map(|k| {
                let show = |v: Option<&serde_json::Value>| {
                    crate::table::truncate(&v.map_or("absent".into(), |v| v.to_string()), 80)
                };
                format!(
                    "{k}: target {} vs source {}",
                    show(x.get(k)),
                    show(y.get(k))
                )
            })
        }
        _ => (a != b).then(|| "value".to_owned()),
    }
}
/// Runs `stowage import`.
pub(crate) async fn run(args: ImportArgs) -> Result<Outcome> {
    let mut importer = Importer::open(&args.url).await?;
    let progress = Progress::new(args.quiet, "importing");
    let mut sink = ProgressSink::new(&mut importer, &progress);
    let fed = import_file(&args.file, &mut sink).await;
    sink.into_inner();
    progress.finish();
    fed?;
    let counts = importer.finish()?;
    if !args.quiet {
        eprintln!(
            "imported {} into {}",
            describe(&counts),
            stowage_backends::shown_url(&args.url)
        );
    }
    Ok(Outcome::Clean)
}

#[async_trait]
impl Sink for &mut Importer {
    async fn put(&mut self, record: Record) -> Result<()> {
        (**self).put(record).await
    }
}

#[cfg(test)]
mod tests {
    use super::{first_difference, just_below};
    use serde_json::json;
    use stowage_core::Digest;

    #[test]
    fn just_below_borrows_across_zero_bytes() {
        assert_eq!(just_below(&Digest::from_array([0; 32])), None);
        let mut d = [0u8; 32];
        d[29] = 1;
        let mut below = [0u8; 32];
        below[30] = 0xff;
        below[31] = 0xff;
        assert_eq!(
            just_below(&Digest::from_array(d)),
            Some(Digest::from_array(below))
        );
        let mut one = [0u8; 32];
        one[31] = 1;
        assert_eq!(
            just_below(&Digest::from_array(one)),
            Some(Digest::from_array([0; 32]))
        );
    }

    #[test]
    fn the_first_differing_field_is_named_with_both_values() {
        let a = json!({"id": 1, "data": {"x": 1}, "seq": 3});
        let b = json!({"id": 1, "data": {"x": 2}, "seq": 4});
        assert_eq!(
            first_difference(&a, &b).unwrap(),
            r#"data: target {"x":1} vs source {"x":2}"#
        );
        assert_eq!(first_difference(&a, &a), None);
        assert_eq!(first_difference(&json!(1), &json!(2)).unwrap(), "value");
    }
}
