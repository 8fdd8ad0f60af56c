//! `stowage stats`: counts and bytes per store.
//!
//! By default from the engine's indexes (`Lifecycle::stats`): nothing is
//! decoded, cheap enough for a health check. With `--scan`, by listing:
//! counting walks every list (and reads every session log, which has no
//! stored length), which costs a full scan but also proves every entity
//! can be listed and read, and adds the bytes of log payloads.

use std::io::Write;

use serde::Serialize;
use stowage_core::{Digest, Result, RunFilter, Stores};

use crate::args::StatsArgs;
use crate::export::PAGE;
use crate::format::Counts;
use crate::supersessions::{cannot_enumerate, list_supersessions};
use crate::table::{self, Table};
use crate::{json_line, open_read_only, stdout_failed, Outcome};

/// Counts of a store, plus what a plain [`Counts`] cannot say.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Entity counts.
    #[serde(flatten)]
    pub counts: Counts,
    /// Bytes of all session log payloads.
    pub log_bytes: u64,
    /// Whether supersessions could be counted.
    pub supersessions_listable: bool,
}

/// Counts every entity of `stores` by listing.
///
/// # Errors
/// Any store error (an unlistable supersession store is not one: it is
/// reported in [`Stats::supersessions_listable`]).
pub async fn stats(stores: &Stores) -> Result<Stats> {
    let mut s = Stats::default();
    let c = &mut s.counts;
    let mut after: Option<Digest> = None;
    loop {
        let page = stores.cas.list(after.as_ref(), PAGE).await?;
        let Some(last) = page.last().copied() else {
            break;
        };
        for d in &page {
            c.blobs += 1;
            c.blob_bytes += stores.cas.stat(d).await?.size;
        }
        after = Some(last);
    }
    let mut after = None;
    loop {
        let page = stores
            .runs
            .list_runs(&RunFilter::default(), after, PAGE)
            .await?;
        let Some(last) = page.last().map(|r| r.id) else {
            break;
        };
        for r in &page {
            c.runs += 1;
            c.events += r.event_count;
        }
        after = Some(last);
    }
    let mut after: Option<String> = None;
    loop {
        let page = stores
            .sessions
            .list_sessions(after.as_deref(), PAGE)
            .await?;
        let Some(last) = page.last().map(|s| s.id.clone()) else {
            break;
        };
        for session in &page {
            c.sessions += 1;
            let mut seq = None;
            loop {
                let log = stores.sessions.read_log(&session.id, seq, PAGE).await?;
                let Some(e) = log.last() else { break };
                seq = Some(e.seq);
                c.log_entries += log.len() as u64;
                s.log_bytes += log.iter().map(|e| e.payload.len() as u64).sum::<u64>();
            }
        }
        after = Some(last);
    }
    let mut after: Option<String> = None;
    loop {
        let names = stores.releases.list_names(after.as_deref(), PAGE).await?;
        let Some(last) = names.last().cloned() else {
            break;
        };
        for name in &names {
            c.release_names += 1;
            c.releases += stores.releases.current(name).await?.seq.saturating_add(1);
        }
        after = Some(last);
    }
    let mut after = None;
    s.supersessions_listable = true;
    loop {
        let page = match list_supersessions(stores, after, PAGE).await {
            Ok(page) => page,
            Err(e) if cannot_enumerate(&e) => {
                s.supersessions_listable = false;
                break;
            }
            Err(e) => return Err(e),
        };
        let Some(last) = page.last().map(|r| r.target) else {
            break;
        };
        c.supersessions += page.len() as u64;
        after = Some(last);
    }
    Ok(s)
}

/// Runs `stowage stats`.
pub(crate) async fn run(args: StatsArgs) -> Result<Outcome> {
    let stores = open_read_only(&args.url).await?;
    if !args.scan {
        return indexed(&stores, args.json).await;
    }
    let s = stats(&stores).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        json_line(&mut out, &s)?;
    } else {
        let c = &s.counts;
        let mut t = Table::new(&["STORE", "COUNT", "DETAIL"]);
        t.row(vec![
            "blobs".into(),
            c.blobs.to_string(),
            table::bytes(c.blob_bytes),
        ]);
        t.row(vec![
            "runs".into(),
            c.runs.to_string(),
            format!("{} events", c.events),
        ]);
        t.row(vec![
            "sessions".into(),
            c.sessions.to_string(),
            format!(
                "{} log entries, {}",
                c.log_entries,
                table::bytes(s.log_bytes)
            ),
        ]);
        t.row(vec![
            "releases".into(),
            c.release_names.to_string(),
            format!("{} records", c.releases),
        ]);
        if s.supersessions_listable {
            t.row(vec![
                "supersessions".into(),
                c.supersessions.to_string(),
                String::new(),
            ]);
        } else {
            t.row(vec![
                "supersessions".into(),
                "-".into(),
                format!("{} cannot enumerate them yet", stores.capabilities.backend),
            ]);
        }
        out.write_all(t.render().as_bytes())
            .map_err(stdout_failed)?;
    }
    out.flush().map_err(stdout_failed)?;
    Ok(Outcome::Clean)
}

/// `stowage stats` without `--scan`: `Lifecycle::stats`.
async fn indexed(stores: &Stores, json: bool) -> Result<Outcome> {
    let s = stores.lifecycle.stats().await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        json_line(&mut out, &s)?;
    } else {
        let mut t = Table::new(&["STORE", "COUNT", "DETAIL"]);
        t.row(vec![
            "blobs".into(),
            s.blobs.to_string(),
            format!(
                "{} stored, {} references",
                table::bytes(s.blob_bytes),
                s.blob_references
            ),
        ]);
        t.row(vec![
            "runs".into(),
            s.runs.to_string(),
            format!("{} events", s.run_events),
        ]);
        t.row(vec![
            "sessions".into(),
            s.sessions.to_string(),
            format!("{} log entries", s.log_entries),
        ]);
        t.row(vec![
            "releases".into(),
            s.release_names.to_string(),
            format!("{} records", s.release_records),
        ]);
        t.row(vec![
            "supersessions".into(),
            s.supersessions.to_string(),
            String::new(),
        ]);
        t.row(vec![
            "total".into(),
            String::new(),
            format!("{} stored", table::bytes(s.stored_bytes)),
        ]);
        out.write_all(t.render().as_bytes())
            .map_err(stdout_failed)?;
    }
    out.flush().map_err(stdout_failed)?;
    Ok(Outcome::Clean)
}
