//! `stowage migrate`: export from one store straight into an import into
//! another (no file in between), then a parity report.
//!
//! Streaming and resumable: the importer is idempotent (see
//! [`crate::import`]), so after an interruption the same command finishes
//! the job. Parity compares [`fingerprint`]s of both stores; any
//! difference (including entities the target held before) exits with 3.

use std::io::Write;

use stowage_core::Result;

use crate::args::MigrateArgs;
use crate::export::{export, SupersessionPolicy};
use crate::format::Coverage;
use crate::import::Importer;
pub use crate::parity::{fingerprint, Difference, Fingerprint, ParityReport};
use crate::progress::{describe, Progress, ProgressSink};
use crate::table::Table;
use crate::{json_line, open_read_only, stdout_failed, Outcome};

/// How many differences the human report lists.
const SHOWN: usize = 50;

/// Runs `stowage migrate`.
pub(crate) async fn run(args: MigrateArgs) -> Result<Outcome> {
    let source = open_read_only(&args.from).await?;
    let mut importer = Importer::open(&args.to).await?;
    let policy = if args.skip_supersessions {
        SupersessionPolicy::SkipIfUnlistable
    } else {
        SupersessionPolicy::Require
    };
    let progress = Progress::new(args.quiet, "migrating");
    let mut sink = ProgressSink::new(&mut importer, &progress);
    let copied = export(&source, &mut sink, policy).await;
    sink.into_inner();
    progress.finish();
    let counts = copied?;
    importer.finish()?;
    if !args.quiet {
        eprintln!("copied {}", describe(&counts));
    }
    let report = ParityReport::compare(
        &fingerprint(&source).await?,
        &fingerprint(importer.stores()).await?,
    );
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        json_line(&mut out, &report)?;
    } else {
        print_report(&mut out, &args, &report)?;
    }
    out.flush().map_err(stdout_failed)?;
    Ok(if report.differences.is_empty() {
        Outcome::Clean
    } else {
        Outcome::Problems
    })
}

fn print_report(out: &mut impl Write, args: &MigrateArgs, report: &ParityReport) -> Result<()> {
    let (from, to) = (
        stowage_backends::shown_url(&args.from),
        stowage_backends::shown_url(&args.to),
    );
    writeln!(out, "parity: {from} -> {to}").map_err(stdout_failed)?;
    let mut t = Table::new(&["KIND", "SOURCE", "TARGET"]);
    for (kind, s, d) in &report.counts {
        if kind == "supersessions" && report.supersessions == Coverage::Skipped {
            t.row(vec![kind.clone(), "-".into(), "-".into()]);
        } else {
            t.row(vec![kind.clone(), s.to_string(), d.to_string()]);
        }
    }
    out.write_all(t.render().as_bytes())
        .map_err(stdout_failed)?;
    if report.supersessions == Coverage::Skipped {
        writeln!(
            out,
            "supersessions: not compared (a backend cannot enumerate them yet)"
        )
        .map_err(stdout_failed)?;
    }
    if report.differences.is_empty() {
        let total: u64 = report.counts.iter().map(|(_, s, _)| s).sum();
        writeln!(
            out,
            "ok: all {total} entities match (records, chain lengths and heads, digests)"
        )
        .map_err(stdout_failed)?;
        return Ok(());
    }
    writeln!(out, "{} entities differ:", report.differences.len()).map_err(stdout_failed)?;
    for d in report.differences.iter().take(SHOWN) {
        let show = |s: &Option<String>| s.clone().unwrap_or_else(|| "absent".into());
        writeln!(
            out,
            "  {}\n    source: {}\n    target: {}",
            crate::table::printable(&d.entity),
            show(&d.source),
            show(&d.target)
        )
        .map_err(stdout_failed)?;
    }
    if report.differences.len() > SHOWN {
        writeln!(
            out,
            "  … and {} more (use --json for all)",
            report.differences.len() - SHOWN
        )
        .map_err(stdout_failed)?;
    }
    Ok(())
}
