//! `stowage verify`: re-check every hash chain, signature and blob digest.

use std::io::Write;

use serde::Serialize;
use stowage_core::{Digest, Error, ErrorKind, Result, RunFilter, Stores};

use crate::args::StoreArg;
use crate::export::PAGE;
use crate::supersessions::{cannot_enumerate, list_supersessions};
use crate::table::Table;
use crate::{json_line, one_line, open_read_only, stdout_failed, Outcome};

/// What one kind of entity came out as.
#[derive(Debug, Default, Serialize)]
struct Tally {
    kind: &'static str,
    checked: u64,
    damaged: u64,
    /// Why it was not (fully) checked, if it was not.
    note: Option<String>,
}

/// One damaged entity: where, and the first problem found.
#[derive(Debug, Serialize)]
struct Problem {
    entity: String,
    error_kind: String,
    message: String,
}

#[derive(Debug, Default, Serialize)]
struct Report {
    tallies: Vec<Tally>,
    /// Damage found (`Corrupted`).
    problems: Vec<Problem>,
    /// What could not be checked (a timeout, an unreachable server…):
    /// not damage, but not a clean bill either.
    unchecked: Vec<Problem>,
}

impl Report {
    fn problem(&mut self, entity: String, err: &Error) {
        let problem = Problem {
            entity,
            error_kind: err.kind().to_string(),
            message: one_line(err),
        };
        if err.kind() != ErrorKind::Corrupted {
            return self.unchecked.push(problem);
        }
        if let Some(t) = self.tallies.last_mut() {
            t.damaged += 1;
        }
        self.problems.push(problem);
    }

    fn start(&mut self, kind: &'static str) {
        self.tallies.push(Tally {
            kind,
            ..Tally::default()
        });
    }

    fn checked(&mut self) {
        if let Some(t) = self.tallies.last_mut() {
            t.checked += 1;
        }
    }

    /// A listing failed: the rest of this kind cannot be reached.
    fn stopped(&mut self, what: &str, err: &Error) {
        self.problem(format!("{what} (listing stopped)"), err);
    }
}

/// Runs `stowage verify`.
pub(crate) async fn run(args: StoreArg) -> Result<Outcome> {
    let stores = open_read_only(&args.url).await?;
    let mut report = Report::default();
    runs(&stores, &mut report).await;
    sessions(&stores, &mut report).await;
    releases(&stores, &mut report).await;
    blobs(&stores, &mut report).await;
    supersessions(&stores, &mut report).await;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        json_line(&mut out, &report)?;
    } else {
        let mut t = Table::new(&["STORE", "CHECKED", "DAMAGED", "NOTE"]);
        for tally in &report.tallies {
            t.row(vec![
                tally.kind.to_owned(),
                tally.checked.to_string(),
                tally.damaged.to_string(),
                tally.note.clone().unwrap_or_default(),
            ]);
        }
        out.write_all(t.render().as_bytes())
            .map_err(stdout_failed)?;
        if report.problems.is_empty() && report.unchecked.is_empty() {
            writeln!(out, "\nok: no damage found").map_err(stdout_failed)?;
        }
        for (what, list) in [
            ("damaged", &report.problems),
            ("could not be checked", &report.unchecked),
        ] {
            if !list.is_empty() {
                writeln!(out, "\n{} {what}:", list.len()).map_err(stdout_failed)?;
                for p in list {
                    writeln!(out, "  {}: {}", p.entity, p.message).map_err(stdout_failed)?;
                }
            }
        }
    }
    out.flush().map_err(stdout_failed)?;
    outcome(&report)
}

/// How a finished check comes out: damage found is exit 3 even when
/// something else could not be checked (both lists were printed); a check
/// that did not finish and found no damage is exit 1 — not damage, but
/// not a clean bill either.
fn outcome(report: &Report) -> Result<Outcome> {
    if !report.problems.is_empty() {
        return Ok(Outcome::Problems);
    }
    if let Some(first) = report.unchecked.first() {
        return Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "verify could not check {} entities (first: {}: {})",
                report.unchecked.len(),
                first.entity,
                first.message
            ),
        ));
    }
    Ok(Outcome::Clean)
}

/// Gone since it was listed: not damage.
fn vanished(err: &Error) -> bool {
    err.kind() == ErrorKind::NotFound
}

async fn runs(stores: &Stores, report: &mut Report) {
    report.start("runs");
    let mut after = None;
    loop {
        let page = match stores
            .runs
            .list_runs(&RunFilter::default(), after, PAGE)
            .await
        {
            Ok(page) => page,
            Err(e) => return report.stopped("runs", &e),
        };
        let Some(last) = page.last().map(|r| r.id) else {
            return;
        };
        for run in page {
            match stores.runs.verify_run(run.id).await {
                Ok(_) => report.checked(),
                Err(e) if vanished(&e) => {}
                Err(e) => {
                    report.checked();
                    report.problem(format!("run {}", run.id), &e);
                }
            }
        }
        after = Some(last);
    }
}

async fn sessions(stores: &Stores, report: &mut Report) {
    report.start("sessions");
    let mut after: Option<String> = None;
    loop {
        let page = match stores.sessions.list_sessions(after.as_deref(), PAGE).await {
            Ok(page) => page,
            Err(e) => return report.stopped("sessions", &e),
        };
        let Some(last) = page.last().map(|s| s.id.clone()) else {
            return;
        };
        for session in page {
            match stores.sessions.verify_log(&session.id).await {
                Ok(_) => report.checked(),
                Err(e) if vanished(&e) => {}
                Err(e) => {
                    report.checked();
                    report.problem(format!("session {:?}", session.id), &e);
                }
            }
        }
        after = Some(last);
    }
}

/// Release histories carry no hashes: check that every record reads back
/// and that seqs run from the current one down to 0 without gaps.
async fn releases(stores: &Stores, report: &mut Report) {
    report.start("releases");
    let mut after: Option<String> = None;
    loop {
        let names = match stores.releases.list_names(after.as_deref(), PAGE).await {
            Ok(names) => names,
            Err(e) => return report.stopped("releases", &e),
        };
        let Some(last) = names.last().cloned() else {
            return;
        };
        for name in names {
            report.checked();
            if let Err(e) = release_history(stores, &name).await {
                report.problem(format!("release {name:?}"), &e);
            }
        }
        after = Some(last);
    }
}

async fn release_history(stores: &Stores, name: &str) -> Result<()> {
    let current = stores.releases.current(name).await?;
    let mut expected = current.seq;
    // The walk starts at the record just read, not at whatever is newest
    // by now: a promote in between would put `current.seq + 1` first,
    // which is no damage. `before` is exclusive; past `u64::MAX` nothing
    // can be newer, so all.
    let mut before = current.seq.checked_add(1);
    loop {
        let page = stores.releases.history(name, before, PAGE).await?;
        let Some(last) = page.last().map(|r| r.seq) else {
            break;
        };
        for record in page {
            if record.seq != expected {
                return Err(Error::corrupted(format!(
                    "release {name:?}: history has record {} where record {expected} belongs",
                    record.seq
                )));
            }
            expected = expected.wrapping_sub(1);
        }
        if last == 0 {
            return Ok(());
        }
        before = Some(last);
    }
    Err(Error::corrupted(format!(
        "release {name:?}: history stops before record 0 (next missing: {expected})"
    )))
}

async fn blobs(stores: &Stores, report: &mut Report) {
    report.start("blobs");
    let mut after: Option<Digest> = None;
    loop {
        let page = match stores.cas.list(after.as_ref(), PAGE).await {
            Ok(page) => page,
            Err(e) => return report.stopped("blobs", &e),
        };
        let Some(last) = page.last().copied() else {
            return;
        };
        for digest in page {
            match stores.cas.verify(&digest).await {
                Ok(()) => report.checked(),
                Err(e) if vanished(&e) => {}
                Err(e) => {
                    report.checked();
                    report.problem(format!("blob {digest}"), &e);
                }
            }
        }
        after = Some(last);
    }
}

async fn supersessions(stores: &Stores, report: &mut Report) {
    report.start("supersessions");
    let mut after = None;
    loop {
        let page = match list_supersessions(stores, after, PAGE).await {
            Ok(page) => page,
            Err(e) if cannot_enumerate(&e) => {
                if let Some(t) = report.tallies.last_mut() {
                    t.note =
                        Some("not checked: this backend cannot enumerate supersessions yet".into());
                }
                return;
            }
            Err(e) => return report.stopped("supersessions", &e),
        };
        let Some(last) = page.last().map(|s| s.target) else {
            return;
        };
        for record in page {
            report.checked();
            if let Err(e) = record.verify() {
                let e = Error::corrupted(format!("signature check failed: {}", e.message()));
                report.problem(format!("supersession of {}", record.target), &e);
            }
        }
        after = Some(last);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use async_trait::async_trait;
    use stowage_core::layer::{interpose, Call, Interceptor, Operation, Proceed};
    use stowage_core::ReleaseMetadata;

    use super::*;

    /// A promote lands (on the unwrapped store) right after every
    /// `current`, as another process's would between `verify`'s two reads.
    struct PromoteAfterCurrent(Stores);

    #[async_trait]
    impl Interceptor for PromoteAfterCurrent {
        async fn around(&self, call: &Call, proceed: Proceed<'_>) -> Option<Error> {
            let _ = proceed.await;
            if call.op == Operation::ReleasesCurrent {
                let meta = ReleaseMetadata::new("meanwhile", "ci");
                let promoted = self
                    .0
                    .releases
                    .promote("planner", Digest::of(b"meanwhile"), meta, None)
                    .await;
                return promoted.err();
            }
            None
        }
    }

    /// Before, the history walk started at the newest record, which the
    /// promote had made `current.seq + 1`: a healthy store was reported
    /// damaged (exit 3).
    #[tokio::test]
    async fn a_promote_during_the_check_is_no_damage() {
        let inner = stowage_backends::open("memory://").await.unwrap();
        for v in ["v1", "v2"] {
            let meta = ReleaseMetadata::new(v, "ci");
            inner
                .releases
                .promote("planner", Digest::of(v.as_bytes()), meta, None)
                .await
                .unwrap();
        }
        let stores = interpose(inner.clone(), Arc::new(PromoteAfterCurrent(inner)));
        let mut report = Report::default();
        releases(&stores, &mut report).await;
        assert!(report.problems.is_empty(), "{:?}", report.problems);
        assert!(report.unchecked.is_empty(), "{:?}", report.unchecked);
        assert_eq!(report.tallies.last().unwrap().checked, 1);
    }

    /// Before, anything unchecked made the exit 1 (transient), hiding
    /// damage that was found beside it.
    #[test]
    fn damage_is_exit_3_even_when_something_could_not_be_checked() {
        let mut report = Report::default();
        report.start("runs");
        report.problem(
            "run a".into(),
            &Error::new(ErrorKind::Unavailable, "timed out"),
        );
        assert_eq!(report.unchecked.len(), 1);
        assert_eq!(outcome(&report).unwrap_err().kind(), ErrorKind::Unavailable);
        report.problem("run b".into(), &Error::corrupted("bad chain"));
        assert_eq!(report.problems.len(), 1);
        assert_eq!(outcome(&report).unwrap(), Outcome::Problems);
        report.unchecked.clear();
        assert_eq!(outcome(&report).unwrap(), Outcome::Problems);
        report.problems.clear();
        assert_eq!(outcome(&report).unwrap(), Outcome::Clean);
    }
}
