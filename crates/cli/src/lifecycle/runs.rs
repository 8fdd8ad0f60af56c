//! `stowage prune-runs`, and its `--dry-run`.

use std::collections::HashMap;
use std::io::Write;

use stowage_core::lifecycle::RunRetention;
use stowage_core::{Error, Result, Run, RunFilter, RunStatus, Stores, Timestamp};

use super::{print_totals, sweep, Names, Removed, Totals};
use crate::args::PruneRunsArgs;
use crate::export::PAGE;
use crate::table::{self, Table};
use crate::{json_line, open, open_read_only, stdout_failed, Outcome};

const NAMES: Names = Names {
    doing: "pruning runs",
    entities: "runs",
    verb: "deleted",
    removed: Removed::Records("events"),
};

/// The policy the flags describe, at `now`.
fn policy(args: &PruneRunsArgs, now: Timestamp) -> Result<RunRetention> {
    let mut policy = RunRetention::finished().batch(args.sweep.batch);
    if let Some(time) = args.finished_before {
        policy = policy.finished_before(time);
    }
    if let Some(age) = args.older_than {
        let age = u64::try_from(age.as_millis()).unwrap_or(u64::MAX);
        policy =
            policy.finished_before(Timestamp::from_millis(now.as_millis().saturating_sub(age)));
    }
    if args.status.contains(&RunStatus::Running) && !args.include_running {
        return Err(Error::invalid_input(
            "--status running selects running runs, which are kept unless --include-running is given",
        ));
    }
    for status in &args.status {
        policy = policy.status(*status);
    }
    if let Some(agent) = &args.agent {
        policy = policy.agent(agent.clone());
    }
    if let Some(n) = args.keep_newest {
        policy = policy.keep_newest_per_agent(n);
    }
    if args.include_running {
        policy = policy.including_running();
    }
    Ok(policy)
}

/// Runs `stowage prune-runs`.
pub(crate) async fn prune_runs(args: PruneRunsArgs) -> Result<Outcome> {
    let now = Timestamp::now();
    let policy = policy(&args, now)?;
    if args.dry_run {
        let stores = open_read_only(&args.url).await?;
        return dry_run(&stores, &policy, now, args.sweep.json).await;
    }
    let stores = open(&args.url).await?;
    let lifecycle = &stores.lifecycle;
    let totals = sweep(&args.sweep, &NAMES, async |after| {
        lifecycle.prune_runs(&policy, after).await
    })
    .await?;
    print_totals(args.sweep.json, &NAMES, totals)?;
    Ok(Outcome::Clean)
}

/// The runs `policy` selects now, by listing every run newest first (of
/// the policy's agent, if it names one) and counting each agent's runs
/// to apply `keep_newest_per_agent`. Returns them with the number of runs
/// examined.
///
/// # Errors
/// A listing error.
pub(crate) async fn select(
    stores: &Stores,
    policy: &RunRetention,
    now: Timestamp,
) -> Result<(Vec<Run>, u64)> {
    let filter = match &policy.agent_name {
        Some(agent) => RunFilter::all().agent(agent.clone()),
        None => RunFilter::all(),
    };
    let mut per_agent: HashMap<String, u64> = HashMap::new();
    let mut chosen = Vec::new();
    let mut examined = 0;
    let mut after = None;
    loop {
        let page = stores.runs.list_runs(&filter, after, PAGE).await?;
        let Some(last) = page.last().map(|r| r.id) else {
            break;
        };
        for run in page {
            examined += 1;
            let newer = per_agent
                .entry(run.metadata.agent_name.clone())
                .or_default();
            let kept = policy.keep_newest_per_agent.is_some_and(|n| *newer < n);
            *newer += 1;
            if !kept && policy.selects(&run, now) {
                chosen.push(run);
            }
        }
        after = Some(last);
    }
    chosen.reverse(); // oldest first, as prune_runs goes
    Ok((chosen, examined))
}

async fn dry_run(
    stores: &Stores,
    policy: &RunRetention,
    now: Timestamp,
    json: bool,
) -> Result<Outcome> {
    let (runs, examined) = select(stores, policy, now).await?;
    let totals = Totals {
        batches: 0,
        examined,
        affected: runs.len() as u64,
        removed: runs.iter().map(|r| r.event_count).sum(),
    };
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        let mut doc = totals.to_json(&NAMES);
        doc.remove("batches");
        doc.insert("dry_run".into(), true.into());
        let ids: Vec<String> = runs.iter().map(|r| r.id.to_string()).collect();
        doc.insert("runs".into(), ids.into());
        json_line(&mut out, &doc)?;
    } else {
        let mut t = Table::new(&["RUN", "AGENT", "STATUS", "EVENTS", "FINISHED"]);
        for r in &runs {
            t.row(vec![
                r.id.to_string(),
                table::truncate(&r.metadata.agent_name, 32),
                r.status.to_string(),
                r.event_count.to_string(),
                r.finished_at.map_or_else(|| "-".into(), table::time),
            ]);
        }
        if !t.is_empty() {
            out.write_all(t.render().as_bytes())
                .map_err(stdout_failed)?;
        }
        writeln!(
            out,
            "dry run: would have {}; {} runs examined",
            totals.done(&NAMES, "deleted"),
            examined
        )
        .map_err(stdout_failed)?;
    }
    out.flush().map_err(stdout_failed)?;
    Ok(Outcome::Clean)
}
