//! Forks. A session's record and whole log are read in one script (its
//! chain verified with core's `ChainVerifier`), rebuilt for the new id
//! (the entry hash covers the session id) and written by one script that
//! refuses an existing id; the new id is then listed, as `create_session`
//! does. A release history is read in one command, its specs referenced
//! by the new name, the name listed, and the copy written by one script
//! that refuses a name with history.

use std::sync::Arc;

use stowage_core::chain::ChainVerifier;
use stowage_core::encoding::{decode_record, encode_record};
use stowage_core::lifecycle::Referrer;
use stowage_core::validate::{self, preview};
use stowage_core::{Error, LogEntry, ReleaseRecord, Result, Session};

use super::super::conn::{bytes, items, status, unexpected, Op};
use super::super::runs::chain_end;
use super::super::Shared;
use super::refs::reference;

fn session_name(id: &str) -> String {
    format!("session {:?}", preview(id))
}

/// Session `from` with its whole log, read atomically.
async fn snapshot(sh: &Shared, from: &str) -> Result<(Session, Vec<LogEntry>)> {
    let what = format!("fork {}", session_name(from));
    let keys = [sh.keys.session_meta(from), sh.keys.session_log(from)];
    let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
    let reply = sh
        .conn
        .eval(
            &sh.scripts.life.snapshot_session,
            &refs,
            &[],
            Op::Read,
            &what,
        )
        .await?;
    let (word, rest) = status(reply, &what)?;
    match word.as_str() {
        "ok" => {}
        "absent" => {
            return Err(Error::not_found(format!(
                "{} does not exist",
                session_name(from)
            )))
        }
        other => return Err(unexpected(&what, other)),
    }
    let rec = rest.first().and_then(bytes).unwrap_or_default();
    let mut session: Session = decode_record(&session_name(from), rec)?;
    let (len, head) = chain_end(rest.get(1), rest.get(2), &what)?;
    session.log_len = len;
    session.log_head = head;
    let entry_what = format!("{} log entry", session_name(from));
    let log = rest
        .into_iter()
        .nth(3)
        .map(items)
        .unwrap_or_default()
        .iter()
        .map(|v| decode_record(&entry_what, bytes(v).unwrap_or_default()))
        .collect::<Result<Vec<LogEntry>>>()?;
    Ok((session, log))
}

pub(super) async fn fork_session(sh: &Arc<Shared>, from: &str, to: &str) -> Result<Session> {
    validate::identifier("session id", from)?;
    validate::identifier("session id", to)?;
    let (source, log) = snapshot(sh, from).await?;
    let mut verifier = ChainVerifier::new(session_name(from));
    for entry in &log {
        verifier.push(entry.link())?;
    }
    verifier.finish(source.log_len, source.log_head)?;
    // The same entries after the new id's chain (`LogEntry::rehomed` in core).
    let mut prev = None;
    let copy: Vec<LogEntry> = log
        .into_iter()
        .map(|mut entry| {
            entry.session_id = to.to_owned();
            entry.prev_hash = prev;
            entry.hash = entry.compute_hash();
            prev = Some(entry.hash);
            entry
        })
        .collect();
    let mut session = Session::new(to, source.data, sh.env.clock.now())?;
    session.state = source.state;
    session.record_replace(&copy);
    let what = format!("fork {} to {}", session_name(from), session_name(to));
    let rec = encode_record(&session)?;
    let records: Vec<Vec<u8>> = copy.iter().map(encode_record).collect::<Result<_>>()?;
    let head = session.log_head.map(|h| h.to_string()).unwrap_or_default();
    let count = copy.len().to_string();
    let seqs: Vec<String> = copy.iter().map(|e| e.seq.to_string()).collect();
    let closed: &[u8] = if session.state.is_final() { b"1" } else { b"0" };
    let mut args: Vec<&[u8]> = vec![&rec, closed, head.as_bytes(), count.as_bytes()];
    args.extend(records.iter().map(Vec::as_slice));
    for (entry, seq) in copy.iter().zip(&seqs) {
        if let Some(key) = &entry.idempotency_key {
            args.push(key.as_bytes());
            args.push(seq.as_bytes());
        }
    }
    let k = &sh.keys;
    let (meta, list, idem) = (k.session_meta(to), k.session_log(to), k.session_idem(to));
    let reply = sh
        .conn
        .mutate(
            &sh.scripts.life.fork_session,
            &sh.counted(&[&meta, &list, &idem]),
            &args,
            &what,
        )
        .await?;
    let (word, _) = status(reply, &what)?;
    let idx = k.sessions_all();
    // Listed after the write (as `create_session`), also when it exists:
    // that repairs the listing of a fork whose reply was lost.
    sh.conn
        .mutate(&sh.scripts.index_add, &[&idx], &[to.as_bytes()], &what)
        .await?;
    match word.as_str() {
        "ok" => {
            sh.remember_head(&meta, None);
            Ok(session)
        }
        "exists" => Err(Error::already_exists(format!(
            "{} already exists",
            session_name(to)
        ))),
        other => Err(unexpected(&what, other)),
    }
}

fn release_name(name: &str) -> String {
    format!("release {:?}", preview(name))
}

pub(super) async fn fork_release(sh: &Arc<Shared>, from: &str, to: &str) -> Result<ReleaseRecord> {
    validate::identifier("release name", from)?;
    validate::identifier("release name", to)?;
    let what = format!("fork {} to {}", release_name(from), release_name(to));
    let mut cmd = redis::cmd("LRANGE");
    cmd.arg(sh.keys.release_history(from)).arg(0).arg(-1);
    let records = items(sh.conn.query(&cmd, Op::Read, &what).await?)
        .iter()
        .map(|v| {
            let mut record: ReleaseRecord = decode_record(
                &format!("{} record", release_name(from)),
                bytes(v).unwrap_or_default(),
            )?;
            record.name = to.to_owned();
            Ok(record)
        })
        .collect::<Result<Vec<ReleaseRecord>>>()?;
    let Some(current) = records.last().cloned() else {
        return Err(Error::not_found(format!(
            "{} was never promoted",
            release_name(from)
        )));
    };
    reference(
        sh,
        records.iter().map(|r| r.spec_digest),
        &Referrer::Release(to.to_owned()),
    )
    .await?;
    // Listed before its first record, as `promote` does.
    let idx = sh.keys.releases_all();
    sh.conn
        .mutate(&sh.scripts.index_add, &[&idx], &[to.as_bytes()], &what)
        .await?;
    let encoded: Vec<Vec<u8>> = records.iter().map(encode_record).collect::<Result<_>>()?;
    let args: Vec<&[u8]> = encoded.iter().map(Vec::as_slice).collect();
    let key = sh.keys.release_history(to);
    let reply = sh
        .conn
        .mutate(
            &sh.scripts.life.fork_release,
            &sh.counted(&[&key]),
            &args,
            &what,
        )
        .await?;
    let (word, _) = status(reply, &what)?;
    match word.as_str() {
        "ok" => Ok(current),
        "exists" => Err(Error::already_exists(format!(
            "{} already has a history",
            release_name(to)
        ))),
        other => Err(unexpected(&what, other)),
    }
}
