//! Run retention and session expiry over the seam. A sweep reads one page
//! of candidates, then changes each in a write job of its own, in the
//! entity's scope, that checks the policy again on what it reads there:
//! a run that was appended to, or a session that was touched, between the
//! two is judged on its new state.

use super::super::heads::Log;
use super::super::runs::{find_run, indexed_run, scope as run_scope, with_head};
use super::super::sessions;
use super::super::{decode_keyed, get_record, EngineStore, Shared};
use crate::engine::keys;
use crate::engine::{Direction, Reader, Table, Txn};
use crate::lifecycle::{self, IfRunning, RunRetention, SessionRetention, Sweep};
use crate::validate;
use crate::Timestamp;
use crate::{Error, ErrorKind, LogEntry, Result, Run, RunId, RunStatus, Session, SessionState};

/// Removes every key of `run`.
fn remove_run(txn: &mut dyn Txn, run: &Run) -> Result<()> {
    let id = run.id;
    txn.delete(Table::Runs, keys::run(id))?;
    txn.delete(Table::RunHeads, keys::run(id))?;
    let (start, end) = keys::run_keys(id);
    txn.delete_range(Table::RunEvents, start.clone(), end.clone())?;
    txn.delete_range(Table::RunIdempotency, start, end)?;
    txn.delete(Table::RunsBySpec, keys::run_by_spec(&run.spec_digest, id))?;
    txn.delete(
        Table::RunsByAgent,
        keys::run_by_agent(&run.metadata.agent_name, id),
    )
}

/// Index entries read per scan while counting an agent's newer runs.
const NEWER_PAGE: usize = 1024;

/// Whether `run` is among the newest `n` runs of its agent: fewer than `n`
/// of the agent's runs are newer (counted up to `n`, page by page).
fn among_newest(reader: &dyn Reader, run: &Run, n: u64) -> Result<bool> {
    let agent = &run.metadata.agent_name;
    let (_, end) = keys::index_before(&keys::agent_prefix(agent), None);
    let mut start = keys::successor(&keys::run_by_agent(agent, run.id));
    let mut newer = 0u64;
    while newer < n {
        let want = usize::try_from(n - newer).map_or(NEWER_PAGE, |w| w.min(NEWER_PAGE));
        let page = reader.scan(
            Table::RunsByAgent,
            &start,
            Some(&end),
            Direction::Forward,
            want,
        )?;
        newer += page.len() as u64;
        match page.last() {
            Some((last, _)) if page.len() == want => start = keys::successor(last),
            _ => return Ok(newer < n),
        }
    }
    Ok(false)
}

/// One page of a run sweep: the runs it may prune, oldest first, and the
/// cursor after it (`None`: nothing after it). Runs deleted meanwhile and
/// damaged ones (reads and `verify_run` report those) are left out; the
/// cursor is the last run the page scanned, so they do not end the sweep.
fn candidates(
    reader: &dyn Reader,
    agent: Option<&str>,
    after: Option<RunId>,
    limit: usize,
) -> Result<Page<Run, RunId>> {
    let (table, start, end) = match agent {
        None => (Table::Runs, keys::runs_after(after), None),
        Some(agent) => {
            let prefix = keys::agent_prefix(agent);
            let (first, end) = keys::index_before(&prefix, None);
            let start = after.map_or(first, |id| keys::successor(&keys::run_by_agent(agent, id)));
            (Table::RunsByAgent, start, Some(end))
        }
    };
    let page = reader.scan(table, &start, end.as_deref(), Direction::Forward, limit)?;
    let mut runs = Vec::with_capacity(page.len());
    let mut last = None;
    for (key, value) in &page {
        let id = keys::run_id_suffix(key)?;
        last = Some(id);
        let run = match agent {
            None => decode_keyed("run record", key, value).and_then(|r| with_head(reader, r)),
            Some(_) => indexed_run(reader, table, key, id),
        };
        match run {
            Ok(Some(run)) => runs.push(run),
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::Corrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(Page {
        found: runs,
        scanned: page.len() as u64,
        next: last.filter(|_| page.len() == limit),
    })
}

/// One page of a sweep: the entities it may act on, how many it read
/// (damaged ones and ones deleted meanwhile too: they were examined), and
/// the cursor after it.
struct Page<T, C> {
    found: Vec<T>,
    scanned: u64,
    next: Option<C>,
}

fn prune_one(
    shared: &Shared,
    txn: &mut dyn Txn,
    policy: &RunRetention,
    id: RunId,
) -> Result<Option<u64>> {
    let Some(run) = find_run(txn, id)? else {
        return Ok(None);
    };
    if !policy.selects(&run, shared.now()) {
        return Ok(None);
    }
    if let Some(n) = policy.keep_newest_per_agent {
        if n > 0 && among_newest(txn, &run, n)? {
            return Ok(None);
        }
    }
    if let Some(cache) = shared.cache() {
        cache.forget(&Log::Run(id));
    }
    remove_run(txn, &run)?;
    Ok(Some(run.event_count))
}

/// The last time session `session` was used: its last change or its last
/// log entry, whichever is later.
///
/// # Errors
/// `Corrupted` when its last log entry is missing or cannot be decoded
/// (the session is then kept: its activity is unknown); the engine's.
fn last_activity(reader: &dyn Reader, session: &Session) -> Result<Timestamp> {
    let Some(last) = session.log_len.checked_sub(1) else {
        return Ok(session.updated_at);
    };
    let entry: Option<LogEntry> = get_record(
        reader,
        Table::SessionLog,
        &keys::log_entry(&session.id, last),
        "session log entry",
    )?;
    let entry = entry.ok_or_else(|| {
        Error::corrupted(format!(
            "session {:?}: its head names log entry {last}, which is missing",
            validate::preview(&session.id)
        ))
    })?;
    Ok(lifecycle::last_activity(session, Some(&entry)))
}

/// A session and its last activity.
type Idle = (Session, Timestamp);

/// One page of a session sweep: the sessions it may change with their
/// last activity, and the cursor after it (`None`: nothing after it). As
/// for runs ([`candidates`]): sessions deleted meanwhile and damaged ones
/// (a record or a last log entry that fails its checks; reads and
/// `verify_log` report those) are left out, and the cursor is the last
/// session the page scanned, so they do not end the sweep.
///
/// # Errors
/// `Corrupted` for a key that is not UTF-8 (no cursor can name it); the
/// engine's.
fn session_candidates(
    reader: &dyn Reader,
    after: Option<&str>,
    limit: usize,
) -> Result<Page<Idle, String>> {
    let start = keys::sessions_after(after);
    let page = reader.scan(Table::Sessions, &start, None, Direction::Forward, limit)?;
    let mut found = Vec::with_capacity(page.len());
    for (key, value) in &page {
        let session = decode_keyed("session record", key, value)
            .and_then(|session| sessions::with_head(reader, session))
            .and_then(|session| {
                let Some(session) = session else {
                    return Ok(None);
                };
                let last = last_activity(reader, &session)?;
                Ok(Some((session, last)))
            });
        match session {
            Ok(Some(found_one)) => found.push(found_one),
            Ok(None) => {}
            Err(e) if e.kind() == ErrorKind::Corrupted => {}
            Err(e) => return Err(e),
        }
    }
    let next = match page.last() {
        Some((key, _)) if page.len() == limit => {
            Some(String::from_utf8(key.clone()).map_err(|_| {
                Error::corrupted("a session key is not UTF-8: the sweep cannot go past it")
            })?)
        }
        _ => None,
    };
    Ok(Page {
        found,
        scanned: page.len() as u64,
        next,
    })
}

/// What a session sweep does to the sessions it selects.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionSweep {
    /// Moves them to `Expired`.
    Expire,
    /// Deletes them with their logs.
    Delete,
}

impl SessionSweep {
    fn selects(
        self,
        policy: &SessionRetention,
        session: &Session,
        last: Timestamp,
        now: Timestamp,
    ) -> bool {
        match self {
            SessionSweep::Expire => policy.expires(session, last, now),
            SessionSweep::Delete => policy.prunes(session, last, now),
        }
    }

    /// Applies the sweep to session `id` if it still qualifies; returns
    /// the log entries removed. A session damaged since it was scanned is
    /// kept, as in [`session_candidates`].
    fn apply(
        self,
        shared: &Shared,
        txn: &mut dyn Txn,
        policy: &SessionRetention,
        id: &str,
    ) -> Result<Option<u64>> {
        let read = sessions::load(txn, id).and_then(|session| {
            session
                .map(|session| Ok((last_activity(txn, &session)?, session)))
                .transpose()
        });
        let (last, session) = match read {
            Ok(Some(read)) => read,
            Ok(None) => return Ok(None),
            Err(e) if e.kind() == ErrorKind::Corrupted => return Ok(None),
            Err(e) => return Err(e),
        };
        let now = shared.now();
        if !self.selects(policy, &session, last, now) {
            return Ok(None);
        }
        match self {
            SessionSweep::Expire => {
                let expired = session.with_state(SessionState::Expired, None, now)?;
                sessions::put(shared, txn, &expired)?;
                Ok(Some(0))
            }
            SessionSweep::Delete => {
                sessions::remove(shared, txn, id)?;
                Ok(Some(session.log_len))
            }
        }
    }
}

impl EngineStore {
    pub(super) async fn delete_run_now(&self, id: RunId, if_running: IfRunning) -> Result<bool> {
        self.write(run_scope(id), move |shared, txn| {
            let Some(run) = find_run(txn, id)? else {
                return Ok(false);
            };
            if run.status == RunStatus::Running && if_running == IfRunning::Keep {
                return Err(Error::conflict(format!(
                    "run {id} is running; delete it with IfRunning::Delete"
                )));
            }
            if let Some(cache) = shared.cache() {
                cache.forget(&Log::Run(id));
            }
            remove_run(txn, &run)?;
            Ok(true)
        })
        .await
    }

    pub(super) async fn prune_runs_now(
        &self,
        policy: &RunRetention,
        after: Option<RunId>,
    ) -> Result<Sweep<RunId>> {
        if let Some(agent) = &policy.agent_name {
            validate::identifier("agent name", agent)?;
        }
        let limit = lifecycle::batch_limit(policy.batch);
        let agent = policy.agent_name.clone();
        let page = self
            .read(move |_, reader| candidates(reader, agent.as_deref(), after, limit))
            .await?;
        let (mut affected, mut removed) = (0, 0);
        for run in &page.found {
            if !policy.selects(run, self.0.now()) {
                continue;
            }
            let (policy, id) = (policy.clone(), run.id);
            let pruned = self
                .write(run_scope(id), move |shared, txn| {
                    prune_one(shared, txn, &policy, id)
                })
                .await?;
            if let Some(events) = pruned {
                affected += 1;
                removed += events;
            }
        }
        Ok(Sweep::new(page.scanned, affected, removed, page.next))
    }

    pub(super) async fn sweep_sessions(
        &self,
        sweep: SessionSweep,
        policy: &SessionRetention,
        after: Option<&str>,
    ) -> Result<Sweep<String>> {
        let limit = lifecycle::batch_limit(policy.batch);
        let after = after.map(str::to_owned);
        let page = self
            .read(move |_, reader| session_candidates(reader, after.as_deref(), limit))
            .await?;
        let now = self.0.now();
        let (mut affected, mut removed) = (0, 0);
        for (session, last) in &page.found {
            if !sweep.selects(policy, session, *last, now) {
                continue;
            }
            let (policy, id) = (policy.clone(), session.id.clone());
            let scope = sessions::scope(&id);
            let done = self
                .write(scope, move |shared, txn| {
                    sweep.apply(shared, txn, &policy, &id)
                })
                .await?;
            if let Some(entries) = done {
                affected += 1;
                removed += entries;
            }
        }
        Ok(Sweep::new(page.scanned, affected, removed, page.next))
    }
}
