//! `stowage expire-sessions` and `stowage prune-sessions`.

use stowage_core::lifecycle::SessionRetention;
use stowage_core::Result;

use super::{print_totals, sweep, Names, Removed};
use crate::args::{ExpireSessionsArgs, PruneSessionsArgs};
use crate::{open, Outcome};

/// Runs `stowage expire-sessions`.
pub(crate) async fn expire_sessions(args: ExpireSessionsArgs) -> Result<Outcome> {
    const NAMES: Names = Names {
        doing: "expiring sessions",
        entities: "sessions",
        verb: "expired",
        removed: Removed::Nothing,
    };
    let stores = open(&args.url).await?;
    let policy = SessionRetention::idle_for(args.idle_for).batch(args.sweep.batch);
    let lifecycle = &stores.lifecycle;
    let totals = sweep(&args.sweep, &NAMES, async |after: Option<String>| {
        lifecycle.expire_sessions(&policy, after.as_deref()).await
    })
    .await?;
    print_totals(args.sweep.json, &NAMES, totals)?;
    Ok(Outcome::Clean)
}

/// Runs `stowage prune-sessions`. `--state` replaces the default
/// (`expired` only).
pub(crate) async fn prune_sessions(args: PruneSessionsArgs) -> Result<Outcome> {
    const NAMES: Names = Names {
        doing: "pruning sessions",
        entities: "sessions",
        verb: "deleted",
        removed: Removed::Records("log entries"),
    };
    let stores = open(&args.url).await?;
    let mut policy = SessionRetention::idle_for(args.idle_for).batch(args.sweep.batch);
    if !args.state.is_empty() {
        policy.states.clear();
        for state in &args.state {
            policy = policy.state(*state);
        }
    }
    let lifecycle = &stores.lifecycle;
    let totals = sweep(&args.sweep, &NAMES, async |after: Option<String>| {
        lifecycle.prune_sessions(&policy, after.as_deref()).await
    })
    .await?;
    print_totals(args.sweep.json, &NAMES, totals)?;
    Ok(Outcome::Clean)
}
