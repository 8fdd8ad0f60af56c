//! Compares everything a reader can observe in the stores with the model.

use std::cmp::Reverse;
use std::fmt::Debug;

use stowage_core::validate::MAX_PAGE;
use stowage_core::{AgentKey, Digest, Resolution, RunFilter, RunId, RunStatus, Stores, Timestamp};

use super::reference::Model;
use super::step::{AGENTS, SIGNERS, TARGETS};
use crate::util::{assertion, signer};

type Check = std::result::Result<(), String>;

fn same<T: PartialEq + Debug>(got: T, expected: T, what: &str) -> Check {
    if got == expected {
        Ok(())
    } else {
        Err(format!(
            "{what}: the store has {got:?}, the model expects {expected:?}"
        ))
    }
}

fn call<T>(r: stowage_core::Result<T>, what: &str) -> std::result::Result<T, String> {
    r.map_err(|e| format!("{what} failed: {e}"))
}

/// Compares all five stores with the model.
pub(crate) async fn compare(s: &Stores, m: &Model) -> Check {
    cas(s, m).await?;
    runs(s, m).await?;
    releases(s, m).await?;
    sessions(s, m).await?;
    supersessions(s, m).await
}

async fn cas(s: &Stores, m: &Model) -> Check {
    let listed = call(s.cas.list(None, MAX_PAGE).await, "cas.list")?;
    same(listed, m.blobs.keys().copied().collect(), "cas.list")?;
    for (d, bytes) in &m.blobs {
        same(
            call(s.cas.get(d).await, "cas.get")?,
            bytes.clone(),
            "cas.get",
        )?;
    }
    Ok(())
}

async fn runs(s: &Stores, m: &Model) -> Check {
    let mut ids: Vec<RunId> = m.runs.iter().map(|r| r.id).collect();
    ids.sort_by_key(|id| Reverse(*id));
    let listed = call(
        s.runs
            .list_runs(&RunFilter::default(), None, MAX_PAGE)
            .await,
        "list_runs",
    )?;
    same(
        listed.iter().map(|r| r.id).collect::<Vec<_>>(),
        ids.clone(),
        "list_runs (newest first)",
    )?;
    for agent in AGENTS {
        let filter = RunFilter::all().agent(agent.to_owned());
        let got: Vec<RunId> = call(s.runs.list_runs(&filter, None, MAX_PAGE).await, "list_runs")?
            .into_iter()
            .map(|r| r.id)
            .collect();
        let expected: Vec<RunId> = ids
            .iter()
            .copied()
            .filter(|id| m.runs.iter().any(|r| r.id == *id && r.agent == agent))
            .collect();
        same(got, expected, &format!("list_runs for agent {agent:?}"))?;
    }
    let running = RunFilter::all().status(RunStatus::Running);
    let got: Vec<RunId> = call(
        s.runs.list_runs(&running, None, MAX_PAGE).await,
        "list_runs",
    )?
    .into_iter()
    .map(|r| r.id)
    .collect();
    let expected: Vec<RunId> = ids
        .iter()
        .copied()
        .filter(|id| {
            m.runs
                .iter()
                .any(|r| r.id == *id && r.status == RunStatus::Running)
        })
        .collect();
    same(got, expected, "list_runs of Running runs")?;
    for r in &m.runs {
        let run = call(s.runs.get_run(r.id).await, "get_run")?;
        same(
            (
                run.status,
                run.event_count,
                run.spec_digest,
                run.metadata.agent_name.as_str(),
            ),
            (r.status, r.events.len() as u64, r.spec, r.agent.as_str()),
            "run record",
        )?;
        let events = call(
            s.runs.read_events(r.id, None, MAX_PAGE).await,
            "read_events",
        )?;
        let got: Vec<_> = events
            .into_iter()
            .map(|e| (e.kind, e.payload, e.idempotency_key))
            .collect();
        same(got, r.events.clone(), &format!("events of run {}", r.id))?;
        call(s.runs.verify_run(r.id).await, "verify_run")?;
    }
    Ok(())
}

async fn releases(s: &Stores, m: &Model) -> Check {
    let names = call(s.releases.list_names(None, MAX_PAGE).await, "list_names")?;
    same(names, m.releases.keys().cloned().collect(), "list_names")?;
    for (name, history) in &m.releases {
        let got: Vec<_> = call(s.releases.history(name, None, MAX_PAGE).await, "history")?
            .into_iter()
            .map(|r| (r.seq, r.spec_digest, r.previous, r.restored))
            .collect();
        let expected: Vec<_> = history
            .iter()
            .enumerate()
            .rev()
            .map(|(seq, r)| (seq as u64, r.spec, r.previous, r.restored))
            .collect();
        same(
            got,
            expected,
            &format!("history of {name:?} (newest first)"),
        )?;
    }
    Ok(())
}

async fn sessions(s: &Stores, m: &Model) -> Check {
    let listed = call(
        s.sessions.list_sessions(None, MAX_PAGE).await,
        "list_sessions",
    )?;
    same(
        listed.iter().map(|x| x.id.clone()).collect::<Vec<_>>(),
        m.sessions.keys().cloned().collect(),
        "list_sessions",
    )?;
    for (session, (id, expected)) in listed.iter().zip(&m.sessions) {
        same(
            (&session.data, session.state, session.version),
            (&expected.data, expected.state, expected.version),
            &format!("session {id:?}"),
        )?;
        let log: Vec<_> = call(s.sessions.read_log(id, None, MAX_PAGE).await, "read_log")?
            .into_iter()
            .map(|e| (e.payload, e.idempotency_key))
            .collect();
        same(log, expected.log.clone(), &format!("log of {id:?}"))?;
        call(s.sessions.verify_log(id).await, "verify_log")?;
    }
    Ok(())
}

async fn supersessions(s: &Stores, m: &Model) -> Check {
    for t in 0..TARGETS {
        let target = assertion(t);
        let got = call(s.supersessions.get(&target).await, "supersessions.get")?;
        same(
            got.as_ref(),
            m.supersessions.get(&target),
            &format!("supersession of assertion {t}"),
        )?;
        let (end, hops, withdrawn) = m.resolve(target);
        let expected = if withdrawn {
            Resolution::Withdrawn { hash: end, hops }
        } else {
            Resolution::Current { hash: end, hops }
        };
        same(
            call(s.supersessions.resolve(&target).await, "resolve")?,
            expected,
            &format!("resolve(assertion {t})"),
        )?;
    }
    for n in 0..SIGNERS {
        let agent = AgentKey::of(&signer(n));
        let got: Vec<Digest> = call(
            s.supersessions
                .by_agent(&agent, Timestamp::ZERO, None, None, MAX_PAGE)
                .await,
            "by_agent",
        )?
        .into_iter()
        .map(|r| r.target)
        .collect();
        let mut expected: Vec<_> = m
            .supersessions
            .values()
            .filter(|r| r.agent == agent)
            .map(|r| (r.timestamp, r.target))
            .collect();
        expected.sort_by_key(|k| Reverse(*k));
        same(
            got,
            expected.into_iter().map(|(_, t)| t).collect(),
            &format!("by_agent of signer {n} (newest first)"),
        )?;
    }
    Ok(())
}
