//! Runs one operation on the store and on the model, and compares outcomes.

use bytes::Bytes;
use serde_json::json;
use stowage_core::{
    LogKind, NewEvent, NewLogEntry, PutOutcome, Result, RunId, RunMetadata, RunStatus,
    SessionState, Stores, Supersession, Timestamp,
};

use super::reference::{Model, ModelRun, Outcome};
use super::Op;
use crate::util::{assertion, draft, rmeta, signer, spec};

/// Agent names of runs.
pub(crate) const AGENTS: [&str; 2] = ["agent", "agent:x"];
/// Release names.
pub(crate) const NAMES: [&str; 2] = ["r", "r:x"];
/// Session ids.
pub(crate) const SESSIONS: [&str; 3] = ["s", "s:1", "s/1"];
/// Supersession targets and replacements are `assertion(0..TARGETS)`.
pub(crate) const TARGETS: u64 = 4;
/// Signing agents are `signer(0..SIGNERS)`.
pub(crate) const SIGNERS: u8 = 2;

const STATUSES: [RunStatus; 3] = [
    RunStatus::Completed,
    RunStatus::Failed,
    RunStatus::Cancelled,
];
const STATES: [SessionState; 5] = [
    SessionState::Open,
    SessionState::Suspended,
    SessionState::Resolved,
    SessionState::Expired,
    SessionState::Cancelled,
];

/// Blob `i`: empty, two small ones, and one of several stream chunks.
pub(crate) fn blob(i: u8) -> Bytes {
    match i % 4 {
        0 => Bytes::new(),
        1 => Bytes::from_static(b"a"),
        2 => Bytes::from_static(b"b"),
        _ => Bytes::from((0..70_000u32).map(|n| (n % 249) as u8).collect::<Vec<u8>>()),
    }
}

fn idx(i: u8, len: usize) -> usize {
    usize::from(i) % len
}

fn outcome<T>(result: Result<T>, render: impl FnOnce(T) -> String) -> Outcome {
    result.map(render).map_err(|e| e.kind())
}

/// A run id that no store has.
fn ghost() -> RunId {
    RunId::new_v7(Timestamp::from_millis(1), 1)
}

/// Applies `op` (the `i`-th) to both; `Err` describes a disagreement.
pub(crate) async fn step(
    s: &Stores,
    m: &mut Model,
    i: usize,
    op: &Op,
) -> std::result::Result<(), String> {
    let (got, expected) = match *op {
        // Reopening is done by the caller, which owns the handles.
        Op::Reopen => return Ok(()),
        Op::CasPut(b) => (
            outcome(s.cas.put(blob(b)).await, |d| d.to_string()),
            m.cas_put(blob(b)),
        ),
        Op::CasDelete(b) => {
            let d = stowage_core::Digest::of(&blob(b));
            (
                outcome(s.cas.delete(&d).await, |x| x.to_string()),
                m.cas_delete(&d),
            )
        }
        Op::CasGet(b) => {
            let d = stowage_core::Digest::of(&blob(b));
            (
                outcome(s.cas.get(&d).await, |x| x.len().to_string()),
                m.cas_get(&d),
            )
        }
        Op::RunCreate { agent, spec: sp } => {
            let agent = AGENTS[idx(agent, AGENTS.len())];
            let digest = spec(u64::from(sp));
            let id = s
                .runs
                .create_run(digest, RunMetadata::new(agent))
                .await
                .map_err(|e| format!("create_run failed: {e}"))?;
            m.runs.push(ModelRun {
                id,
                agent: agent.to_owned(),
                spec: digest,
                status: RunStatus::Running,
                events: Vec::new(),
            });
            (Ok(String::new()), Ok(String::new()))
        }
        Op::RunAppend { run, key, expected } => {
            let which = (!m.runs.is_empty()).then(|| idx(run, m.runs.len()));
            let id = which.map_or_else(ghost, |w| m.runs[w].id);
            let mut e = NewEvent::new(format!("kind-{}", i % 3), json!({"op": i}));
            e.idempotency_key = key.map(|k| format!("k{k}"));
            e.expected_seq = expected.map(u64::from);
            let got = outcome(s.runs.append_event(id, e.clone()).await, |ev| {
                ev.seq.to_string()
            });
            (
                got,
                m.run_append(
                    which,
                    (e.kind, e.payload, e.idempotency_key),
                    e.expected_seq,
                ),
            )
        }
        Op::RunFinish { run, status } => {
            let which = (!m.runs.is_empty()).then(|| idx(run, m.runs.len()));
            let id = which.map_or_else(ghost, |w| m.runs[w].id);
            let status = STATUSES[idx(status, STATUSES.len())];
            let summary = stowage_core::RunSummary::new(format!("op {i}"));
            let got = outcome(s.runs.finish_run(id, status, summary).await, |r| {
                r.status.to_string()
            });
            (got, m.run_finish(which, status))
        }
        Op::Promote {
            name,
            spec: sp,
            expected,
        } => {
            let name = NAMES[idx(name, NAMES.len())];
            let expected = expected.map(u64::from);
            let got = outcome(
                s.releases
                    .promote(name, spec(u64::from(sp)), rmeta("v"), expected)
                    .await,
                |r| r.seq.to_string(),
            );
            (got, m.promote(name, spec(u64::from(sp)), expected))
        }
        Op::Rollback { name } => {
            let name = NAMES[idx(name, NAMES.len())];
            let got = outcome(s.releases.rollback(name, "ops").await, |r| {
                format!("{} restores {}", r.seq, r.restored.unwrap_or(u64::MAX))
            });
            (got, m.rollback(name, None))
        }
        Op::RollbackTo { name, seq } => {
            let name = NAMES[idx(name, NAMES.len())];
            let seq = u64::from(seq);
            let got = outcome(s.releases.rollback_to(name, seq, "ops").await, |r| {
                format!("{} restores {}", r.seq, r.restored.unwrap_or(u64::MAX))
            });
            (got, m.rollback(name, Some(seq)))
        }
        Op::SessionCreate { id } => {
            let id = SESSIONS[idx(id, SESSIONS.len())];
            let data = json!({"created": i});
            (
                outcome(s.sessions.create_session(id, data.clone()).await, |x| {
                    x.version.to_string()
                }),
                m.session_create(id, data),
            )
        }
        Op::SessionSave { id, expected } => {
            let id = SESSIONS[idx(id, SESSIONS.len())];
            let data = json!({"saved": i});
            let expected = expected.map(u64::from);
            let got = outcome(
                s.sessions.save_session(id, data.clone(), expected).await,
                |x| x.version.to_string(),
            );
            (got, m.session_save(id, data, expected))
        }
        Op::SessionState { id, state } => {
            let id = SESSIONS[idx(id, SESSIONS.len())];
            let state = STATES[idx(state, STATES.len())];
            let got = outcome(s.sessions.set_session_state(id, state, None).await, |x| {
                x.version.to_string()
            });
            (got, m.session_state(id, state))
        }
        Op::SessionDelete { id } => {
            let id = SESSIONS[idx(id, SESSIONS.len())];
            (
                outcome(s.sessions.delete_session(id).await, |x| x.to_string()),
                m.session_delete(id),
            )
        }
        Op::LogAppend { id, key } => {
            let id = SESSIONS[idx(id, SESSIONS.len())];
            let payload = Bytes::from(format!("append {i}"));
            let key = key.map(|k| format!("k{k}"));
            let mut e = NewLogEntry::new(LogKind::Incoming, "user", "text", payload.clone());
            e.idempotency_key = key.clone();
            (
                outcome(s.sessions.append_log(id, e).await, |x| x.seq.to_string()),
                m.log_append(id, payload, key),
            )
        }
        Op::LogReplace { id, len, expected } => {
            let id = SESSIONS[idx(id, SESSIONS.len())];
            let new: Vec<(Bytes, Option<String>)> = (0..len)
                .map(|j| {
                    (
                        Bytes::from(format!("replace {i}/{j}")),
                        Some(format!("k{j}")),
                    )
                })
                .collect();
            let entries = new
                .iter()
                .map(|(p, k)| {
                    let mut e =
                        NewLogEntry::new(LogKind::Checkpoint, "compactor", "summary", p.clone());
                    e.idempotency_key = k.clone();
                    e
                })
                .collect();
            let expected = expected.map(u64::from);
            let got = outcome(s.sessions.replace_log(id, entries, expected).await, |x| {
                x.len().to_string()
            });
            (got, m.log_replace(id, new, expected))
        }
        Op::SupPut {
            target,
            replacement,
            agent,
            ms,
        } => {
            let t = assertion(u64::from(target) % TARGETS);
            let r = replacement.map(|r| assertion(u64::from(r) % TARGETS));
            let record = Supersession::sign(&signer(agent % SIGNERS), draft(t, r, u64::from(ms)));
            let got = outcome(s.supersessions.put(record.clone()).await, |o| match o {
                PutOutcome::Stored => "Stored".to_owned(),
                PutOutcome::AlreadyPresent => "AlreadyPresent".to_owned(),
            });
            (got, m.sup_put(record))
        }
    };
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "the store answered {got:?}, the model expects {expected:?}"
        ))
    }
}
