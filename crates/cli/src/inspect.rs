//! `stowage inspect`: tables for people, JSON Lines for scripts.

use std::io::Write;

use serde_json::json;
use stowage_core::{AgentKey, Digest, Error, Result, RunFilter, RunId, Stores, Timestamp};

use crate::args::{InspectArgs, InspectWhat};
use crate::table::{self, Table};
use crate::{json_line, open_read_only, stdout_failed, supersessions, Outcome};

/// Runs `stowage inspect`. A reader that goes away (`| head`) ends the
/// output quietly.
pub(crate) async fn run(args: InspectArgs) -> Result<Outcome> {
    match show(args).await {
        Err(e) if broken_pipe(&e) => Ok(Outcome::Clean),
        outcome => outcome,
    }
}

fn broken_pipe(err: &Error) -> bool {
    std::error::Error::source(err)
        .and_then(|s| s.downcast_ref::<std::io::Error>())
        .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
}

async fn show(args: InspectArgs) -> Result<Outcome> {
    let stores = open_read_only(&args.url).await?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let page = Page {
        after: args.after.as_deref(),
        limit: args.limit,
        json: args.json,
    };
    match &args.what {
        InspectWhat::Runs => runs(&stores, page, &mut out).await?,
        InspectWhat::Run { id } => run_detail(&stores, &parse_run_id(id)?, page, &mut out).await?,
        InspectWhat::Sessions => sessions(&stores, page, &mut out).await?,
        InspectWhat::Session { id } => session_detail(&stores, id, page, &mut out).await?,
        InspectWhat::Releases { name: None } => release_names(&stores, page, &mut out).await?,
        InspectWhat::Releases { name: Some(n) } => history(&stores, n, page, &mut out).await?,
        InspectWhat::Blobs => blobs(&stores, page, &mut out).await?,
        InspectWhat::Supersessions { agent } => {
            supersession_list(&stores, agent.as_deref(), page, &mut out).await?
        }
    }
    out.flush().map_err(stdout_failed)?;
    Ok(Outcome::Clean)
}

#[derive(Clone, Copy)]
struct Page<'a> {
    after: Option<&'a str>,
    limit: usize,
    json: bool,
}

impl Page<'_> {
    fn after_seq(&self) -> Result<Option<u64>> {
        self.after
            .map(|a| {
                a.parse::<u64>().map_err(|_| {
                    Error::invalid_input(format!("--after {a:?} must be a sequence number"))
                })
            })
            .transpose()
    }

    fn after_digest(&self) -> Result<Option<Digest>> {
        self.after.map(parse_digest).transpose()
    }
}

fn parse_run_id(s: &str) -> Result<RunId> {
    s.parse()
}

fn parse_digest(s: &str) -> Result<Digest> {
    s.parse::<Digest>()
        .map_err(|e| Error::invalid_input(format!("{s:?} is not a digest: {}", e.message())))
}

fn finish(t: Table, what: &str, out: &mut impl Write) -> Result<()> {
    if t.is_empty() {
        writeln!(out, "(no {what})").map_err(stdout_failed)
    } else {
        out.write_all(t.render().as_bytes()).map_err(stdout_failed)
    }
}

async fn runs(stores: &Stores, page: Page<'_>, out: &mut impl Write) -> Result<()> {
    let after = page.after.map(parse_run_id).transpose()?;
    let runs = stores
        .runs
        .list_runs(&RunFilter::default(), after, page.limit)
        .await?;
    if page.json {
        return runs.iter().try_for_each(|r| json_line(out, r));
    }
    let mut t = Table::new(&["RUN", "AGENT", "STATUS", "EVENTS", "SPEC", "CREATED"]);
    for r in &runs {
        t.row(vec![
            r.id.to_string(),
            table::truncate(&r.metadata.agent_name, 32),
            r.status.to_string(),
            r.event_count.to_string(),
            r.spec_digest.short(),
            table::time(r.created_at),
        ]);
    }
    finish(t, "runs", out)
}

async fn run_detail(
    stores: &Stores,
    id: &RunId,
    page: Page<'_>,
    out: &mut impl Write,
) -> Result<()> {
    let run = stores.runs.get_run(*id).await?;
    let events = stores
        .runs
        .read_events(*id, page.after_seq()?, page.limit)
        .await?;
    if page.json {
        json_line(out, &json!({ "run": run }))?;
        return events
            .iter()
            .try_for_each(|e| json_line(out, &json!({ "event": e })));
    }
    let mut head = Table::new(&["FIELD", "VALUE"]);
    head.row(vec!["run".into(), run.id.to_string()]);
    head.row(vec!["agent".into(), run.metadata.agent_name.clone()]);
    head.row(vec![
        "git sha".into(),
        run.metadata.git_sha.clone().unwrap_or_else(|| "-".into()),
    ]);
    head.row(vec![
        "tags".into(),
        table::truncate(&run.metadata.tags.to_string(), 80),
    ]);
    head.row(vec!["spec".into(), run.spec_digest.to_string()]);
    head.row(vec!["status".into(), run.status.to_string()]);
    head.row(vec!["created".into(), table::time(run.created_at)]);
    head.row(vec![
        "finished".into(),
        run.finished_at.map_or_else(|| "-".into(), table::time),
    ]);
    if let Some(s) = &run.summary {
        head.row(vec!["summary".into(), table::truncate(&s.message, 80)]);
    }
    head.row(vec!["events".into(), run.event_count.to_string()]);
    out.write_all(head.render().as_bytes())
        .map_err(stdout_failed)?;
    writeln!(out).map_err(stdout_failed)?;
    let mut t = Table::new(&["SEQ", "KIND", "TIME", "HASH", "PAYLOAD"]);
    for e in &events {
        t.row(vec![
            e.seq.to_string(),
            table::truncate(&e.kind, 32),
            table::time(e.timestamp),
            e.hash.short(),
            table::truncate(&e.payload.to_string(), 60),
        ]);
    }
    finish(t, "events", out)
}

async fn sessions(stores: &Stores, page: Page<'_>, out: &mut impl Write) -> Result<()> {
    let sessions = stores
        .sessions
        .list_sessions(page.after, page.limit)
        .await?;
    if page.json {
        return sessions.iter().try_for_each(|s| json_line(out, s));
    }
    let mut t = Table::new(&["SESSION", "STATE", "VERSION", "CREATED", "UPDATED"]);
    for s in &sessions {
        t.row(vec![
            table::truncate(&s.id, 48),
            s.state.to_string(),
            s.version.to_string(),
            table::time(s.created_at),
            table::time(s.updated_at),
        ]);
    }
    finish(t, "sessions", out)
}

async fn session_detail(
    stores: &Stores,
    id: &str,
    page: Page<'_>,
    out: &mut impl Write,
) -> Result<()> {
    let session = stores
        .sessions
        .load_session(id)
        .await?
        .ok_or_else(|| Error::not_found(format!("session {id:?} does not exist")))?;
    let log = stores
        .sessions
        .read_log(id, page.after_seq()?, page.limit)
        .await?;
    if page.json {
        json_line(out, &json!({ "session": session }))?;
        return log
            .iter()
            .try_for_each(|e| json_line(out, &json!({ "log": crate::format::LogLine::from(e) })));
    }
    let mut head = Table::new(&["FIELD", "VALUE"]);
    head.row(vec!["session".into(), session.id.clone()]);
    head.row(vec!["state".into(), session.state.to_string()]);
    head.row(vec!["version".into(), session.version.to_string()]);
    head.row(vec!["created".into(), table::time(session.created_at)]);
    head.row(vec!["updated".into(), table::time(session.updated_at)]);
    head.row(vec![
        "data".into(),
        table::truncate(&session.data.to_string(), 80),
    ]);
    out.write_all(head.render().as_bytes())
        .map_err(stdout_failed)?;
    writeln!(out).map_err(stdout_failed)?;
    let mut t = Table::new(&["SEQ", "KIND", "SENDER", "TYPE", "TIME", "HASH", "BYTES"]);
    for e in &log {
        t.row(vec![
            e.seq.to_string(),
            format!("{:?}", e.kind),
            table::truncate(&e.sender, 24),
            table::truncate(&e.message_type, 24),
            table::time(e.timestamp),
            e.hash.short(),
            e.payload.len().to_string(),
        ]);
    }
    finish(t, "log entries", out)
}

async fn release_names(stores: &Stores, page: Page<'_>, out: &mut impl Write) -> Result<()> {
    let names = stores.releases.list_names(page.after, page.limit).await?;
    let mut t = Table::new(&["RELEASE", "SEQ", "SPEC", "LABEL", "BY", "PROMOTED"]);
    for name in &names {
        let cur = stores.releases.current(name).await?;
        if page.json {
            json_line(out, &cur)?;
            continue;
        }
        t.row(vec![
            table::truncate(name, 40),
            cur.seq.to_string(),
            cur.spec_digest.short(),
            table::truncate(&cur.metadata.version_label, 24),
            table::truncate(&cur.metadata.promoted_by, 24),
            table::time(cur.created_at),
        ]);
    }
    if page.json {
        return Ok(());
    }
    finish(t, "releases", out)
}

async fn history(stores: &Stores, name: &str, page: Page<'_>, out: &mut impl Write) -> Result<()> {
    let records = stores
        .releases
        .history(name, page.after_seq()?, page.limit)
        .await?;
    if page.json {
        return records.iter().try_for_each(|r| json_line(out, r));
    }
    let mut t = Table::new(&["SEQ", "SPEC", "LABEL", "BY", "PROMOTED", "NOTE"]);
    for r in &records {
        let note = match r.restored {
            Some(s) => format!("rollback to #{s}"),
            None => table::truncate(&r.metadata.notes, 40),
        };
        t.row(vec![
            r.seq.to_string(),
            r.spec_digest.short(),
            table::truncate(&r.metadata.version_label, 24),
            table::truncate(&r.metadata.promoted_by, 24),
            table::time(r.created_at),
            note,
        ]);
    }
    finish(t, "release records", out)
}

async fn blobs(stores: &Stores, page: Page<'_>, out: &mut impl Write) -> Result<()> {
    let after = page.after_digest()?;
    let digests = stores.cas.list(after.as_ref(), page.limit).await?;
    let mut t = Table::new(&["DIGEST", "SIZE"]);
    for d in &digests {
        let size = stores.cas.stat(d).await?.size;
        if page.json {
            json_line(out, &json!({ "digest": d, "size": size }))?;
        } else {
            t.row(vec![d.to_string(), table::bytes(size)]);
        }
    }
    if page.json {
        return Ok(());
    }
    finish(t, "blobs", out)
}

async fn supersession_list(
    stores: &Stores,
    agent: Option<&str>,
    page: Page<'_>,
    out: &mut impl Write,
) -> Result<()> {
    let records = match agent {
        Some(agent) => {
            if page.after.is_some() {
                return Err(Error::invalid_input(
                    "--after is not supported with --agent (it shows the newest --limit \
                     records); page through every record without --agent",
                ));
            }
            let key: AgentKey = agent.parse()?;
            stores
                .supersessions
                .by_agent(&key, Timestamp::ZERO, None, None, page.limit)
                .await?
        }
        None => supersessions::list_supersessions(stores, page.after_digest()?, page.limit).await?,
    };
    if page.json {
        return records.iter().try_for_each(|s| json_line(out, s));
    }
    let mut t = Table::new(&["TARGET", "KIND", "REPLACEMENT", "AGENT", "TIME", "REASON"]);
    for s in &records {
        t.row(vec![
            s.target.short(),
            format!("{:?}", s.kind),
            s.replacement.map_or_else(|| "-".into(), |d| d.short()),
            s.agent.to_string()[..12].to_owned(),
            table::time(s.timestamp),
            table::truncate(&s.reason, 40),
        ]);
    }
    finish(t, "supersessions", out)
}
