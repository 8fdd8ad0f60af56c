//! The lifecycle commands (SPEC §10) over `stores.lifecycle`: retention
//! sweeps, blob pins and garbage collection, forks.
//!
//! Every sweep is driven to its end here: one call per batch, passing the
//! cursor back until it is `None`, with a spinner on a terminal and the
//! totals printed at the end. A sweep that fails part-way says how far it
//! got (what it deleted stays deleted: each entity goes in a transaction
//! of its own).

mod blobs;
mod fork;
mod runs;
mod sessions;

use std::io::Write;

use serde_json::{json, Map, Value};
use stowage_core::lifecycle::Sweep;
use stowage_core::Result;

use crate::args::SweepArgs;
use crate::{json_line, stdout_failed};

pub(crate) use blobs::{gc, pin, referrers, unpin};
pub(crate) use fork::{fork_release, fork_session};
pub(crate) use runs::prune_runs;
pub(crate) use sessions::{expire_sessions, prune_sessions};

/// What a sweep's records removed are.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Removed {
    /// Nothing is removed (expiry).
    Nothing,
    /// Records, named in the plural (`"events"`, `"log entries"`).
    Records(&'static str),
    /// Bytes.
    Bytes,
}

/// How a sweep's numbers are named in its output.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Names {
    /// What the spinner says: `"pruning runs"`.
    pub(crate) doing: &'static str,
    /// The entities, plural: `"runs"`.
    pub(crate) entities: &'static str,
    /// What happened to the affected ones: `"deleted"`, `"expired"`.
    pub(crate) verb: &'static str,
    /// What went with them.
    pub(crate) removed: Removed,
}

/// A whole sweep's totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Totals {
    /// Calls made.
    pub(crate) batches: u64,
    /// Entities examined.
    pub(crate) examined: u64,
    /// Entities deleted or expired.
    pub(crate) affected: u64,
    /// Records (or bytes) removed with them.
    pub(crate) removed: u64,
}

impl Totals {
    /// `deleted 12 runs (340 events)`.
    fn done(&self, names: &Names, verb: &str) -> String {
        let head = format!("{verb} {} {}", self.affected, names.entities);
        match names.removed {
            Removed::Nothing => head,
            Removed::Records(what) => format!("{head} ({} {what})", self.removed),
            Removed::Bytes => format!("{head} ({})", crate::table::bytes(self.removed)),
        }
    }

    /// `deleted 12 runs (340 events); 500 runs examined in 2 batches`.
    fn describe(&self, names: &Names, verb: &str) -> String {
        let batches = if self.batches == 1 {
            "batch"
        } else {
            "batches"
        };
        format!(
            "{}; {} {} examined in {} {batches}",
            self.done(names, verb),
            self.examined,
            names.entities,
            self.batches
        )
    }

    /// `{"examined":500,"deleted":12,"events":340,"batches":2}`.
    fn to_json(self, names: &Names) -> Map<String, Value> {
        let mut doc = Map::new();
        doc.insert("examined".into(), json!(self.examined));
        doc.insert(names.verb.into(), json!(self.affected));
        match names.removed {
            Removed::Nothing => {}
            Removed::Records(what) => {
                doc.insert(what.replace(' ', "_"), json!(self.removed));
            }
            Removed::Bytes => {
                doc.insert("bytes".into(), json!(self.removed));
            }
        }
        doc.insert("batches".into(), json!(self.batches));
        doc
    }
}

/// Calls `step` with the cursor until it returns none, adding up what
/// each batch did.
///
/// # Errors
/// The first failing batch's error, saying what was done before it.
pub(crate) async fn sweep<C>(
    args: &SweepArgs,
    names: &Names,
    mut step: impl AsyncFnMut(Option<C>) -> Result<Sweep<C>>,
) -> Result<Totals> {
    let bar = crate::progress::spinner(args.quiet, names.doing);
    let mut totals = Totals::default();
    let mut after = None;
    loop {
        let batch = match step(after.take()).await {
            Ok(batch) => batch,
            Err(e) => {
                bar.finish_and_clear();
                return Err(e.context(format!(
                    "{} stopped after {} (batch {})",
                    names.doing,
                    totals.done(names, names.verb),
                    totals.batches + 1
                )));
            }
        };
        totals.batches += 1;
        totals.examined += batch.examined;
        totals.affected += batch.affected;
        totals.removed += batch.removed;
        bar.set_message(totals.describe(names, names.verb));
        match batch.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    bar.finish_and_clear();
    Ok(totals)
}

/// Prints `totals` as one line (or one JSON document).
pub(crate) fn print_totals(json: bool, names: &Names, totals: Totals) -> Result<()> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if json {
        json_line(&mut out, &totals.to_json(names))?;
    } else {
        writeln!(out, "{}", totals.describe(names, names.verb)).map_err(stdout_failed)?;
    }
    out.flush().map_err(stdout_failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totals_read_well() {
        let names = Names {
            doing: "pruning runs",
            entities: "runs",
            verb: "deleted",
            removed: Removed::Records("log entries"),
        };
        let t = Totals {
            batches: 1,
            examined: 5,
            affected: 2,
            removed: 7,
        };
        assert_eq!(
            t.describe(&names, "deleted"),
            "deleted 2 runs (7 log entries); 5 runs examined in 1 batch"
        );
        assert_eq!(
            Value::Object(t.to_json(&names)).to_string(),
            r#"{"batches":1,"deleted":2,"examined":5,"log_entries":7}"#
        );
    }
}
