//! `stowage export`: stream every entity of a store as [`Record`]s.
//!
//! [`export`] walks the store and hands each record to a [`Sink`]: the
//! JSONL file writer ([`JsonlSink`]) for `export`, the importer for
//! `migrate`. Nothing larger than one page of records or one blob chunk is
//! held in memory. The export is not a point-in-time snapshot of a store
//! that is being written: each run and session is read consistently up to
//! the event count / log length its record had when it was read;
//! entities created during the export may or may not be included, and
//! those deleted during it (by retention or gc) are left out.

use std::io::Write;

use async_trait::async_trait;
use futures::StreamExt;
use stowage_core::lifecycle::Referrer;
use stowage_core::{Digest, Error, ErrorKind, Result, RunFilter, Stores};

use crate::args::ExportArgs;
use crate::format::{Counts, Coverage, Header, LogLine, Record, RefLine, CHUNK_BYTES};
use crate::progress::{Progress, ProgressSink};
use crate::supersessions::{cannot_enumerate, list_supersessions};
use crate::{open_read_only, Outcome};

/// Page size for every list the exporter walks.
pub const PAGE: usize = 500;

/// Where exported records go, in file order.
#[async_trait]
pub trait Sink: Send {
    /// Takes the next record.
    ///
    /// # Errors
    /// Whatever consuming it failed with; the export stops.
    async fn put(&mut self, record: Record) -> Result<()>;
}

/// Writes records as JSON Lines.
#[derive(Debug)]
pub struct JsonlSink<W> {
    out: W,
}

impl<W: Write + Send> JsonlSink<W> {
    /// A sink writing to `out` (wrap files in a `BufWriter`).
    pub fn new(out: W) -> Self {
        JsonlSink { out }
    }

    /// Flushes and returns the writer.
    ///
    /// # Errors
    /// As the writer's flush.
    pub fn finish(mut self) -> Result<W> {
        self.out.flush().map_err(write_failed)?;
        Ok(self.out)
    }
}

#[async_trait]
impl<W: Write + Send> Sink for JsonlSink<W> {
    async fn put(&mut self, record: Record) -> Result<()> {
        let line = record.to_line()?;
        self.out.write_all(line.as_bytes()).map_err(write_failed)?;
        self.out.write_all(b"\n").map_err(write_failed)
    }
}

fn write_failed(e: std::io::Error) -> Error {
    Error::from(e).context("writing the export file")
}

/// Whether to go on when the store cannot enumerate supersessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SupersessionPolicy {
    /// Fail with `Unsupported` (the default: never lose data silently).
    Require,
    /// Skip them and say so in the header.
    SkipIfUnlistable,
}

/// Streams every entity of `stores` into `sink`: header, blobs, releases,
/// runs with their events, sessions with their logs, supersessions, end.
///
/// # Errors
/// `Unsupported` when supersessions cannot be enumerated and `policy` is
/// `Require` (checked before anything is written); any store error; the
/// sink's errors.
pub async fn export(
    stores: &Stores,
    sink: &mut dyn Sink,
    policy: SupersessionPolicy,
) -> Result<Counts> {
    let coverage = match list_supersessions(stores, None, 1).await {
        Ok(_) => Coverage::Included,
        Err(e) if cannot_enumerate(&e) && policy == SupersessionPolicy::SkipIfUnlistable => {
            Coverage::Skipped
        }
        Err(e) => return Err(e),
    };
    let backend = stores.capabilities.backend;
    sink.put(Record::Header(Header::new(backend, coverage)))
        .await?;
    let mut counts = Counts::default();
    blobs(stores, sink, &mut counts).await?;
    releases(stores, sink, &mut counts).await?;
    runs(stores, sink, &mut counts).await?;
    sessions(stores, sink, &mut counts).await?;
    if coverage == Coverage::Included {
        supersessions(stores, sink, &mut counts).await?;
    }
    sink.put(Record::End { counts }).await?;
    Ok(counts)
}

async fn blobs(stores: &Stores, sink: &mut dyn Sink, counts: &mut Counts) -> Result<()> {
    let mut after: Option<Digest> = None;
    loop {
        let page = stores.cas.list(after.as_ref(), PAGE).await?;
        let Some(last) = page.last().copied() else {
            return Ok(());
        };
        for digest in page {
            blob(stores, sink, digest, counts).await?;
        }
        after = Some(last);
    }
}

async fn blob(
    stores: &Stores,
    sink: &mut dyn Sink,
    digest: Digest,
    counts: &mut Counts,
) -> Result<()> {
    // Collected since it was listed: left out (nothing written yet).
    let size = match stores.cas.stat(&digest).await {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        stat => stat?.size,
    };
    let mut stream = match stores.cas.get_stream(&digest).await {
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        stream => stream?,
    };
    sink.put(Record::Blob { digest, size }).await?;
    let mut sent = 0u64;
    let mut pending = bytes::BytesMut::new();
    while let Some(piece) = stream.next().await {
        pending.extend_from_slice(&piece?);
        while pending.len() >= CHUNK_BYTES {
            let data = pending.split_to(CHUNK_BYTES).freeze();
            sent += data.len() as u64;
            sink.put(Record::Chunk { data }).await?;
        }
    }
    if !pending.is_empty() {
        sent += pending.len() as u64;
        sink.put(Record::Chunk {
            data: pending.freeze(),
        })
        .await?;
    }
    if sent != size {
        return Err(Error::corrupted(format!(
            "blob {} is {size} bytes by stat but {sent} bytes were read",
            digest.short()
        )));
    }
    counts.blobs += 1;
    counts.blob_bytes += size;
    blob_refs(stores, sink, digest, counts).await
}

/// The blob's pins and the runs that declared it, in a stable order.
async fn blob_refs(
    stores: &Stores,
    sink: &mut dyn Sink,
    digest: Digest,
    counts: &mut Counts,
) -> Result<()> {
    let mut refs: Vec<RefLine> = stores
        .lifecycle
        .blob_referrers(&digest)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Referrer::Pin(label) => Some(RefLine::Pin { label }),
            Referrer::Run(run) => Some(RefLine::Run { run }),
            _ => None,
        })
        .collect();
    refs.sort();
    for referrer in refs {
        sink.put(Record::BlobRef { digest, referrer }).await?;
        counts.blob_refs += 1;
    }
    Ok(())
}

async fn releases(stores: &Stores, sink: &mut dyn Sink, counts: &mut Counts) -> Result<()> {
    let mut after: Option<String> = None;
    loop {
        let names = stores.releases.list_names(after.as_deref(), PAGE).await?;
        let Some(last) = names.last().cloned() else {
            return Ok(());
        };
        for name in names {
            let head = stores.releases.current(&name).await?.seq;
            // History pages come newest first; walk windows oldest first.
            let mut start = 0u64;
            while start <= head {
                let before = start.saturating_add(PAGE as u64).min(head + 1);
                let mut window = stores.releases.history(&name, Some(before), PAGE).await?;
                window.reverse();
                for record in window.into_iter().filter(|r| r.seq >= start) {
                    counts.releases += 1;
                    sink.put(Record::Release { record }).await?;
                }
                start = before;
            }
            counts.release_names += 1;
        }
        after = Some(last);
    }
}

async fn runs(stores: &Stores, sink: &mut dyn Sink, counts: &mut Counts) -> Result<()> {
    let mut after = None;
    loop {
        let page = stores
            .runs
            .list_runs(&RunFilter::default(), after, PAGE)
            .await?;
        let Some(last) = page.last().map(|r| r.id) else {
            return Ok(());
        };
        for listed in page {
            // Re-read: the record and its event count are taken together.
            // Pruned since it was listed: left out (nothing written yet).
            let run = match stores.runs.get_run(listed.id).await {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                run => run?,
            };
            let (id, total) = (run.id, run.event_count);
            // The first page is read before the run's line is written, so
            // a run pruned before it is left out too; one pruned while a
            // later page is read fails the export (it cannot be taken back).
            let mut events = match run_events(stores, id, 0, total).await {
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                events => events?,
            };
            sink.put(Record::Run { run }).await?;
            let mut next = 0u64;
            loop {
                for event in events {
                    next += 1;
                    counts.events += 1;
                    sink.put(Record::Event { event }).await?;
                }
                if next == total {
                    break;
                }
                events = run_events(stores, id, next, total).await.map_err(|e| {
                    e.context(format!(
                        "run {id} was being exported ({next} of {total} events)"
                    ))
                })?;
            }
            counts.runs += 1;
        }
        after = Some(last);
    }
}

/// The next page of run `id`'s first `total` events, from `next`.
///
/// # Errors
/// `Corrupted` when the run has fewer events than `total`; store errors.
async fn run_events(
    stores: &Stores,
    id: stowage_core::RunId,
    next: u64,
    total: u64,
) -> Result<Vec<stowage_core::RunEvent>> {
    if next == total {
        return Ok(Vec::new());
    }
    let mut events = stores
        .runs
        .read_events(id, next.checked_sub(1), PAGE)
        .await?;
    if events.is_empty() {
        return Err(Error::corrupted(format!(
            "run {id} records {total} events but only {next} could be read"
        )));
    }
    events.truncate(usize::try_from(total - next).unwrap_or(usize::MAX));
    Ok(events)
}

async fn sessions(stores: &Stores, sink: &mut dyn Sink, counts: &mut Counts) -> Result<()> {
    let mut after: Option<String> = None;
    loop {
        let page = stores
            .sessions
            .list_sessions(after.as_deref(), PAGE)
            .await?;
        let Some(last) = page.last().map(|s| s.id.clone()) else {
            return Ok(());
        };
        for listed in page {
            let Some((session, log)) = session_with_log(stores, &listed.id).await? else {
                continue; // deleted meanwhile
            };
            sink.put(Record::Session {
                log_len: session.log_len,
                session,
            })
            .await?;
            for entry in &log {
                counts.log_entries += 1;
                sink.put(Record::Log {
                    entry: LogLine::from(entry),
                })
                .await?;
            }
            counts.sessions += 1;
        }
        after = Some(last);
    }
}

/// Times [`session_with_log`] reads a session whose log was replaced
/// while it was being read before it gives up.
const SESSION_READS: usize = 4;

/// Session `id`'s record and the first `log_len` entries of its log, as
/// the record says (the last one's hash is its `log_head`): appends after
/// the record was read are left out, so the two always agree. `None` when
/// the session was deleted meanwhile.
///
/// # Errors
/// `Unavailable` when its log was replaced every time it was read;
/// `Corrupted` when the log never ends where the record says although
/// the record did not change; any store error.
async fn session_with_log(
    stores: &Stores,
    id: &str,
) -> Result<Option<(stowage_core::Session, Vec<stowage_core::LogEntry>)>> {
    let mut previous: Option<stowage_core::Session> = None;
    let mut changed = false;
    for _ in 0..SESSION_READS {
        let Some(session) = stores.sessions.load_session(id).await? else {
            return Ok(None);
        };
        let log = match read_log_prefix(stores, id, session.log_len).await {
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            log => log?,
        };
        if log.len() as u64 == session.log_len && log.last().map(|e| e.hash) == session.log_head {
            return Ok(Some((session, log)));
        }
        changed |= previous.as_ref().is_some_and(|p| *p != session);
        previous = Some(session);
    }
    let (kind, why) = if changed {
        (
            ErrorKind::Unavailable,
            "its log was replaced every time it was read; export again",
        )
    } else {
        (
            ErrorKind::Corrupted,
            "its log does not end where its record says",
        )
    };
    Err(Error::new(
        kind,
        format!("exporting session {id:?}: {why} (tried {SESSION_READS} times)"),
    ))
}

/// The first `len` entries of session `id`'s log (fewer if it has fewer).
async fn read_log_prefix(
    stores: &Stores,
    id: &str,
    len: u64,
) -> Result<Vec<stowage_core::LogEntry>> {
    let mut log = Vec::new();
    while (log.len() as u64) < len {
        let after = log.last().map(|e: &stowage_core::LogEntry| e.seq);
        let want = usize::try_from(len - log.len() as u64).map_or(PAGE, |w| w.min(PAGE));
        let page = stores.sessions.read_log(id, after, want).await?;
        if page.is_empty() {
            break;
        }
        log.extend(page.into_iter().take(want));
    }
    Ok(log)
}

/// The whole current log of session `id`.
pub(crate) async fn read_whole_log(
    stores: &Stores,
    id: &str,
) -> Result<Vec<stowage_core::LogEntry>> {
    read_log_prefix(stores, id, u64::MAX).await
}

async fn supersessions(stores: &Stores, sink: &mut dyn Sink, counts: &mut Counts) -> Result<()> {
    let mut after = None;
    loop {
        let page = list_supersessions(stores, after, PAGE).await?;
        let Some(last) = page.last().map(|s| s.target) else {
            return Ok(());
        };
        for record in page {
            counts.supersessions += 1;
            sink.put(Record::Supersession { record }).await?;
        }
        after = Some(last);
    }
}

/// Where an export to `file` is written before it is complete.
fn partial_path(file: &std::path::Path) -> std::path::PathBuf {
    let mut name = file.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    file.with_file_name(name)
}

/// Runs `stowage export`.
pub(crate) async fn run(args: ExportArgs) -> Result<Outcome> {
    let stores = open_read_only(&args.url).await?;
    let policy = if args.skip_supersessions {
        SupersessionPolicy::SkipIfUnlistable
    } else {
        SupersessionPolicy::Require
    };
    let progress = Progress::new(args.quiet, "exporting");
    let counts = if args.file.as_os_str() == "-" {
        let mut sink = ProgressSink::new(
            JsonlSink::new(std::io::BufWriter::new(std::io::stdout())),
            &progress,
        );
        let counts = export(&stores, &mut sink, policy).await?;
        sink.into_inner().finish()?;
        counts
    } else {
        // Written beside the destination and renamed over it once complete
        // and synced: a failed export never leaves a partial file where the
        // last good one was.
        let partial = partial_path(&args.file);
        let file = std::fs::File::create(&partial)
            .map_err(|e| Error::from(e).context(format!("creating {}", partial.display())))?;
        let mut sink = ProgressSink::new(JsonlSink::new(std::io::BufWriter::new(file)), &progress);
        let written = async {
            let counts = export(&stores, &mut sink, policy).await?;
            let file = sink.into_inner().finish()?;
            file.into_inner()
                .map_err(|e| write_failed(e.into_error()))?
                .sync_all()
                .map_err(write_failed)?;
            std::fs::rename(&partial, &args.file).map_err(|e| {
                Error::from(e).context(format!("renaming {} into place", partial.display()))
            })?;
            Ok::<_, Error>(counts)
        }
        .await;
        if written.is_err() {
            let _ = std::fs::remove_file(&partial);
        }
        written?
    };
    progress.finish();
    if !args.quiet && args.file.as_os_str() != "-" {
        eprintln!(
            "exported {} to {}",
            crate::progress::describe(&counts),
            args.file.display()
        );
    }
    Ok(Outcome::Clean)
}
