//! Session expiry and pruning. A sweep reads one page of sessions (each
//! with its last log entry, in one script), judges them with the policy,
//! then changes each selected one with a script that applies only if the
//! session is still exactly as judged (version, log length and head); if
//! it moved, the session is read and judged again, so a session touched
//! between the two is judged on its new state, as in the engine.

use std::sync::Arc;

use futures::future::try_join_all;
use stowage_core::encoding::{decode_record, encode_record};
use stowage_core::lifecycle::{self, SessionRetention, Sweep};
use stowage_core::validate;
use stowage_core::{LogEntry, Result, Session, SessionState, Timestamp};

use super::super::conn::{bytes, int, status, unexpected, Op};
use super::super::index::scan_lex;
use super::super::runs::chain_end;
use super::super::sessions::unlist;
use super::super::Shared;
use stowage_core::lifecycle::batch_limit;

/// Times one session is re-read after it moved under a sweep, before the
/// sweep leaves it for the next pass.
const REJUDGE: usize = 16;

/// What a session sweep does to the sessions it selects.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SessionSweep {
    /// Moves them to `Expired`.
    Expire,
    /// Deletes them with their logs.
    Delete,
}

impl SessionSweep {
    fn selects(self, policy: &SessionRetention, peeked: &Peeked, now: Timestamp) -> bool {
        match self {
            SessionSweep::Expire => policy.expires(&peeked.session, peeked.last, now),
            SessionSweep::Delete => policy.prunes(&peeked.session, peeked.last, now),
        }
    }
}

/// A session as read for a sweep: the record, its last activity and the
/// stored version, log length and head text the scripts compare.
struct Peeked {
    session: Session,
    last: Timestamp,
    ver: Vec<u8>,
    next: Vec<u8>,
    head: Vec<u8>,
}

async fn peek(sh: &Shared, id: &str) -> Result<Option<Peeked>> {
    let what = format!("session {:?}", validate::preview(id));
    let keys = [sh.keys.session_meta(id), sh.keys.session_log(id)];
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let reply = sh
        .conn
        .eval(&sh.scripts.life.peek_session, &refs, &[], Op::Read, &what)
        .await?;
    let (word, rest) = status(reply, &what)?;
    match word.as_str() {
        "absent" => return Ok(None),
        "ok" => {}
        other => return Err(unexpected(&what, other)),
    }
    let field = |i: usize| rest.get(i).and_then(bytes).map(<[u8]>::to_vec);
    let rec = field(0).ok_or_else(|| unexpected(&what, "record"))?;
    let mut session: Session = decode_record(&what, &rec)?;
    let (len, head) = chain_end(rest.get(2), rest.get(3), &what)?;
    session.log_len = len;
    session.log_head = head;
    let entry: Option<LogEntry> = field(4)
        .map(|entry| decode_record(&format!("{what} log entry"), &entry))
        .transpose()?;
    let last = lifecycle::last_activity(&session, entry.as_ref());
    Ok(Some(Peeked {
        session,
        last,
        ver: field(1).unwrap_or_default(),
        next: field(2).unwrap_or_else(|| b"0".to_vec()),
        head: field(3).unwrap_or_default(),
    }))
}

/// Applies the sweep to the session `peeked` if it still qualifies;
/// returns the log entries removed.
async fn apply(
    sh: &Arc<Shared>,
    sweep: SessionSweep,
    policy: &SessionRetention,
    mut peeked: Peeked,
) -> Result<Option<u64>> {
    let id = peeked.session.id.clone();
    let what = format!("sweep session {:?}", validate::preview(&id));
    let k = &sh.keys;
    let (meta, log, idem) = (k.session_meta(&id), k.session_log(&id), k.session_idem(&id));
    for _ in 0..REJUDGE {
        let now = sh.env.clock.now();
        if !sweep.selects(policy, &peeked, now) {
            return Ok(None);
        }
        let expected: [&[u8]; 3] = [&peeked.ver, &peeked.next, &peeked.head];
        let reply = match sweep {
            SessionSweep::Expire => {
                let expired = peeked
                    .session
                    .with_state(SessionState::Expired, None, now)?;
                let rec = encode_record(&expired)?;
                let ver = expired.version.to_string();
                let args = [expected[0], expected[1], expected[2], ver.as_bytes(), &rec];
                sh.conn
                    .mutate(
                        &sh.scripts.life.expire_session,
                        &sh.counted(&[&meta]),
                        &args,
                        &what,
                    )
                    .await?
            }
            SessionSweep::Delete => {
                sh.conn
                    .mutate(
                        &sh.scripts.life.prune_session,
                        &sh.counted(&[&meta, &log, &idem]),
                        &expected,
                        &what,
                    )
                    .await?
            }
        };
        let (word, rest) = status(reply, &what)?;
        match word.as_str() {
            "ok" if sweep == SessionSweep::Expire => return Ok(Some(0)),
            "ok" => {
                sh.remember_head(&meta, None);
                unlist(sh, &id, &what).await?;
                let entries = rest.first().and_then(int).unwrap_or(0);
                return Ok(Some(u64::try_from(entries).unwrap_or(0)));
            }
            "absent" => return Ok(None),
            "moved" => match peek(sh, &id).await? {
                Some(again) => peeked = again,
                None => return Ok(None),
            },
            other => return Err(unexpected(&what, other)),
        }
    }
    // Touched on every attempt: busy, so not idle; the next pass judges it.
    Ok(None)
}

pub(super) async fn sweep(
    sh: &Arc<Shared>,
    sweep: SessionSweep,
    policy: &SessionRetention,
    after: Option<&str>,
) -> Result<Sweep<String>> {
    let limit = batch_limit(policy.batch);
    let page: Vec<Peeked> = scan_lex(
        &sh.conn,
        &sh.keys.sessions_all(),
        after.map(|a| a.as_bytes().to_vec()),
        limit,
        "sweep sessions",
        |members| async move {
            try_join_all(members.iter().map(|m| {
                let id = String::from_utf8_lossy(m).into_owned();
                async move { peek(sh, &id).await }
            }))
            .await
        },
    )
    .await?;
    let next = (page.len() == limit).then(|| page[page.len() - 1].session.id.clone());
    let now = sh.env.clock.now();
    let (mut affected, mut removed) = (0, 0);
    let examined = page.len() as u64;
    for peeked in page {
        if !sweep.selects(policy, &peeked, now) {
            continue;
        }
        if let Some(entries) = apply(sh, sweep, policy, peeked).await? {
            affected += 1;
            removed += entries;
        }
    }
    Ok(Sweep::new(examined, affected, removed, next))
}
