//! Run retention. A run's keys share its hash tag, its index entries the
//! `{P:idx}` tag. On a single node one script deletes both and re-checks
//! the policy on what it reads there (status, and the agent's newest runs
//! for `keep_newest_per_agent`). On a cluster the script deletes the run's
//! own keys (re-checking the status) and a second step removes the index
//! entries, which listings skip meanwhile because the record is gone; the
//! newest-per-agent rule is then checked just before the script.

use std::sync::Arc;

use futures::future::try_join_all;
use stowage_core::encoding::decode_record;
use stowage_core::lifecycle::{IfRunning, RunRetention, Sweep};
use stowage_core::validate::{self, MAX_PAGE};
use stowage_core::{Error, Result, Run, RunId, RunStatus};

use super::super::conn::{bytes, int, items, status, unexpected, Op};
use super::super::index::scan_lex;
use super::super::runs::chain_end;
use super::super::Shared;
use stowage_core::lifecycle::batch_limit;

/// The run, with its event count and head, or `None`.
async fn load(sh: &Shared, id: RunId) -> Result<Option<Run>> {
    let what = format!("run {id}");
    let mut cmd = redis::cmd("HMGET");
    cmd.arg(sh.keys.run_meta(id))
        .arg("rec")
        .arg("next")
        .arg("head");
    let reply = items(sh.conn.query(&cmd, Op::Read, &what).await?);
    let Some(rec) = reply.first().and_then(bytes) else {
        return Ok(None);
    };
    let mut run: Run = decode_record(&what, rec)?;
    let (count, head) = chain_end(reply.get(1), reply.get(2), &what)?;
    run.event_count = count;
    run.head = head;
    Ok(Some(run))
}

fn status_word(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "Running",
        RunStatus::Completed => "Completed",
        RunStatus::Failed => "Failed",
        RunStatus::Cancelled => "Cancelled",
    }
}

/// Whether `run` is among the newest `n` runs of its agent: fewer than
/// `n` members of the agent index (run ids, which sort by creation) are
/// greater than its id.
async fn among_newest(sh: &Shared, run: &Run, n: u64) -> Result<bool> {
    let mut cmd = redis::cmd("ZLEXCOUNT");
    cmd.arg(sh.keys.runs_by_agent(&run.metadata.agent_name))
        .arg(format!("({}", run.id))
        .arg("+");
    let reply = sh
        .conn
        .query(&cmd, Op::Read, "newer runs of an agent")
        .await?;
    let newer = int(&reply)
        .and_then(|n| u64::try_from(n).ok())
        .ok_or_else(|| unexpected("newer runs of an agent", "a count"))?;
    Ok(newer < n)
}

/// How a delete is checked inside the script.
struct Check {
    if_running: IfRunning,
    /// The status the caller judged (prune), or `None` (any).
    status: Option<RunStatus>,
    /// `keep_newest_per_agent`.
    keep_newest: Option<u64>,
}

/// What the delete script did.
enum Deleted {
    /// Deleted with this many events.
    Events(u64),
    Absent,
    Running,
    /// The policy no longer selects it (its status moved, or it is among
    /// its agent's newest).
    Spared,
}

async fn delete(sh: &Shared, run: &Run, check: &Check) -> Result<Deleted> {
    let id = run.id;
    let what = format!("delete run {id}");
    let k = &sh.keys;
    let cluster = sh.conn.is_cluster();
    let limit = check.keep_newest.map(|n| n.min((MAX_PAGE * 16) as u64));
    if cluster {
        if let Some(n) = check.keep_newest {
            if among_newest(sh, run, n).await? {
                return Ok(Deleted::Spared);
            }
        }
    }
    let (meta, events, idem) = (k.run_meta(id), k.run_events(id), k.run_idem(id));
    let idx = [
        k.runs_all(),
        k.runs_by_spec(&run.spec_digest),
        k.runs_by_agent(&run.metadata.agent_name),
    ];
    let mut keys = sh.counted(&[&meta, &events, &idem]);
    if !cluster {
        keys.extend(idx.iter().map(Vec::as_slice));
    }
    let member = id.to_string();
    let running: &[u8] = match check.if_running {
        IfRunning::Keep => b"keep",
        _ => b"delete",
    };
    let expected = check.status.map(status_word).unwrap_or_default();
    let keep = limit.map(|n| n.to_string()).unwrap_or_default();
    let args: [&[u8]; 4] = [
        member.as_bytes(),
        running,
        expected.as_bytes(),
        keep.as_bytes(),
    ];
    let reply = sh
        .conn
        .mutate(&sh.scripts.life.delete_run, &keys, &args, &what)
        .await?;
    sh.remember_head(&meta, None);
    let (word, rest) = status(reply, &what)?;
    match word.as_str() {
        "ok" => {
            if cluster {
                let refs: Vec<&[u8]> = idx.iter().map(Vec::as_slice).collect();
                sh.conn
                    .mutate(
                        &sh.scripts.life.index_remove,
                        &refs,
                        &[member.as_bytes()],
                        &what,
                    )
                    .await?;
            }
            let events = rest.first().and_then(int).unwrap_or(0);
            Ok(Deleted::Events(u64::try_from(events).unwrap_or(0)))
        }
        "absent" => Ok(Deleted::Absent),
        "running" => Ok(Deleted::Running),
        "changed" | "kept" => Ok(Deleted::Spared),
        other => Err(unexpected(&what, other)),
    }
}

pub(super) async fn delete_run(sh: &Arc<Shared>, id: RunId, if_running: IfRunning) -> Result<bool> {
    let Some(run) = load(sh, id).await? else {
        return Ok(false);
    };
    let check = Check {
        if_running,
        status: None,
        keep_newest: None,
    };
    match delete(sh, &run, &check).await? {
        Deleted::Events(_) => Ok(true),
        Deleted::Absent => Ok(false),
        Deleted::Running => Err(Error::conflict(format!(
            "run {id} is running; delete it with IfRunning::Delete"
        ))),
        Deleted::Spared => Err(unexpected(&format!("delete run {id}"), "spared")),
    }
}

pub(super) async fn prune_runs(
    sh: &Arc<Shared>,
    policy: &RunRetention,
    after: Option<RunId>,
) -> Result<Sweep<RunId>> {
    if let Some(agent) = &policy.agent_name {
        validate::identifier("agent name", agent)?;
    }
    let limit = batch_limit(policy.batch);
    // Oldest first: run ids (UUID v7 text) sort by creation.
    let page: Vec<Run> = scan_lex(
        &sh.conn,
        &sh.keys.runs_all(),
        after.map(|a| a.to_string().into_bytes()),
        limit,
        "prune runs",
        |members| async move {
            let ids = members
                .iter()
                .map(|m| {
                    let s = String::from_utf8_lossy(m);
                    s.parse::<RunId>()
                        .map_err(|_| Error::corrupted(format!("run index holds a bad id {s:?}")))
                })
                .collect::<Result<Vec<_>>>()?;
            try_join_all(ids.into_iter().map(|id| load(sh, id))).await
        },
    )
    .await?;
    let next = (page.len() == limit).then(|| page[page.len() - 1].id);
    let (mut affected, mut removed) = (0, 0);
    for run in &page {
        if !policy.selects(run, sh.env.clock.now()) {
            continue;
        }
        let check = Check {
            if_running: policy.running,
            status: Some(run.status),
            keep_newest: policy.keep_newest_per_agent,
        };
        if let Deleted::Events(events) = delete(sh, run, &check).await? {
            affected += 1;
            removed += events;
        }
    }
    Ok(Sweep::new(page.len() as u64, affected, removed, next))
}
