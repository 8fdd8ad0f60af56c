//! Progress bars (indicatif) per store, drawn on stderr only when it is a
//! terminal and `--quiet` is not given.

use std::io::IsTerminal;

use async_trait::async_trait;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use stowage_core::Result;

use crate::export::Sink;
use crate::format::{Counts, Record};

/// One spinner per store, counting records as they pass.
#[derive(Debug)]
pub(crate) struct Progress {
    multi: MultiProgress,
    blobs: ProgressBar,
    releases: ProgressBar,
    runs: ProgressBar,
    sessions: ProgressBar,
    supersessions: ProgressBar,
    skipped: std::sync::atomic::AtomicBool,
}

impl Progress {
    /// Bars titled `verb` ("exporting", "importing", "migrating"), hidden
    /// when `quiet` or stderr is not a terminal.
    pub(crate) fn new(quiet: bool, verb: &str) -> Progress {
        let target = if quiet || !std::io::stderr().is_terminal() {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        };
        let multi = MultiProgress::with_draw_target(target);
        let style = ProgressStyle::with_template("{spinner} {prefix:>24} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        let visible = !multi.is_hidden();
        let bar = |name: &str| {
            let b = multi.add(ProgressBar::new_spinner());
            b.set_style(style.clone());
            b.set_prefix(format!("{verb} {name}"));
            b.set_message("waiting");
            if visible {
                b.enable_steady_tick(std::time::Duration::from_millis(120));
            }
            b
        };
        Progress {
            blobs: bar("blobs"),
            releases: bar("releases"),
            runs: bar("runs"),
            sessions: bar("sessions"),
            supersessions: bar("supersessions"),
            skipped: std::sync::atomic::AtomicBool::new(false),
            multi,
        }
    }

    /// Says that supersessions are not being copied.
    fn skipping_supersessions(&self) {
        self.skipped
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self.supersessions
            .set_message("skipped: the source cannot enumerate them yet");
    }

    fn update(&self, c: &Counts) {
        self.blobs.set_message(format!(
            "{} ({})",
            c.blobs,
            crate::table::bytes(c.blob_bytes)
        ));
        self.releases.set_message(format!(
            "{} records of {} names",
            c.releases, c.release_names
        ));
        self.runs
            .set_message(format!("{} runs, {} events", c.runs, c.events));
        self.sessions.set_message(format!(
            "{} sessions, {} log entries",
            c.sessions, c.log_entries
        ));
        if !self.skipped.load(std::sync::atomic::Ordering::Relaxed) {
            self.supersessions.set_message(c.supersessions.to_string());
        }
        for b in [
            &self.blobs,
            &self.releases,
            &self.runs,
            &self.sessions,
            &self.supersessions,
        ] {
            b.tick();
        }
    }

    /// Stops every bar and clears them (the command prints its own
    /// summary line).
    pub(crate) fn finish(&self) {
        for b in [
            &self.blobs,
            &self.releases,
            &self.runs,
            &self.sessions,
            &self.supersessions,
        ] {
            b.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

/// A [`Sink`] that counts what passes through it and shows it.
pub(crate) struct ProgressSink<'a, S> {
    inner: S,
    progress: &'a Progress,
    counts: Counts,
    seen: u64,
}

impl<'a, S: Sink> ProgressSink<'a, S> {
    pub(crate) fn new(inner: S, progress: &'a Progress) -> Self {
        ProgressSink {
            inner,
            progress,
            counts: Counts::default(),
            seen: 0,
        }
    }

    pub(crate) fn into_inner(self) -> S {
        self.progress.update(&self.counts);
        self.inner
    }
}

#[async_trait]
impl<S: Sink> Sink for ProgressSink<'_, S> {
    async fn put(&mut self, record: Record) -> Result<()> {
        count(&mut self.counts, &record);
        if let Record::Header(h) = &record {
            if h.supersessions == crate::format::Coverage::Skipped {
                self.progress.skipping_supersessions();
            }
        }
        self.inner.put(record).await?;
        self.seen += 1;
        if self.seen.is_multiple_of(64) {
            self.progress.update(&self.counts);
        }
        Ok(())
    }
}

/// Adds `record` to `counts` (chunks count as blob bytes).
pub(crate) fn count(counts: &mut Counts, record: &Record) {
    match record {
        Record::Blob { .. } => counts.blobs += 1,
        Record::Chunk { data } => counts.blob_bytes += data.len() as u64,
        Record::Release { record } => {
            counts.releases += 1;
            if record.seq == 0 {
                counts.release_names += 1;
            }
        }
        Record::Run { .. } => counts.runs += 1,
        Record::Event { .. } => counts.events += 1,
        Record::Session { .. } => counts.sessions += 1,
        Record::Log { .. } => counts.log_entries += 1,
        Record::Supersession { .. } => counts.supersessions += 1,
        Record::BlobRef { .. } => counts.blob_refs += 1,
        Record::Header(_) | Record::End { .. } => {}
    }
}

/// `3 blobs (1.2 KiB), 2 releases, …` for a final message.
pub(crate) fn describe(c: &Counts) -> String {
    format!(
        "{} blobs ({}, {} references), {} release records ({} names), {} runs ({} events), {} sessions ({} log entries), {} supersessions",
        c.blobs,
        crate::table::bytes(c.blob_bytes),
        c.blob_refs,
        c.releases,
        c.release_names,
        c.runs,
        c.events,
        c.sessions,
        c.log_entries,
        c.supersessions
    )
}

/// One spinner titled `prefix` for a sweep, hidden when `quiet` or stderr
/// is not a terminal.
pub(crate) fn spinner(quiet: bool, prefix: &str) -> ProgressBar {
    if quiet || !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} {prefix} {msg} [{elapsed}]")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_prefix(prefix.to_owned());
    bar.set_message("starting");
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar
}
