//! `stowage fork-session` and `stowage fork-release`.

use std::io::Write;

use stowage_core::Result;

use crate::args::ForkArgs;
use crate::table::{self, Table};
use crate::{json_line, open, stdout_failed, Outcome};

/// Runs `stowage fork-session`: prints the new session.
pub(crate) async fn fork_session(args: ForkArgs) -> Result<Outcome> {
    let stores = open(&args.url).await?;
    let session = stores.lifecycle.fork_session(&args.from, &args.to).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        json_line(&mut out, &session)?;
    } else {
        writeln!(out, "forked session {:?} to {:?}", args.from, session.id)
            .map_err(stdout_failed)?;
        let mut t = Table::new(&["SESSION", "STATE", "VERSION", "LOG", "CREATED"]);
        t.row(vec![
            session.id.clone(),
            session.state.to_string(),
            session.version.to_string(),
            session.log_len.to_string(),
            table::time(session.created_at),
        ]);
        out.write_all(t.render().as_bytes())
            .map_err(stdout_failed)?;
    }
    out.flush().map_err(stdout_failed)?;
    Ok(Outcome::Clean)
}

/// Runs `stowage fork-release`: prints the copy's current record.
pub(crate) async fn fork_release(args: ForkArgs) -> Result<Outcome> {
    let stores = open(&args.url).await?;
    let record = stores.lifecycle.fork_release(&args.from, &args.to).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        json_line(&mut out, &record)?;
    } else {
        writeln!(
            out,
            "forked release {:?} to {:?} ({} records)",
            args.from,
            record.name,
            record.seq.saturating_add(1)
        )
        .map_err(stdout_failed)?;
        let mut t = Table::new(&["NAME", "SEQ", "SPEC", "LABEL", "BY"]);
        t.row(vec![
            record.name.clone(),
            record.seq.to_string(),
            record.spec_digest.short(),
            table::truncate(&record.metadata.version_label, 32),
            record.metadata.promoted_by.clone(),
        ]);
        out.write_all(t.render().as_bytes())
            .map_err(stdout_failed)?;
    }
    out.flush().map_err(stdout_failed)?;
    Ok(Outcome::Clean)
}
