//! [`SessionStore`] over Redis: a record hash (`…:meta` with `rec`, `ver`,
//! `head`), a log list and an idempotency hash per session under the
//! session's hash tag, plus the id listing `{prefix:idx}:sessions`.
//!
//! Index consistency across slots: create writes the record, then adds the
//! id; delete removes the record, removes the id, then re-checks the record
//! and re-adds the id if a concurrent create recreated it. So every
//! existing session is listed (a create whose reply was lost is repaired by
//! its retry, which adds the id again before reporting `AlreadyExists`),
//! and ids whose record is gone are skipped when listing.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::try_join_all;
use serde_json::Value;
use stowage_core::encoding::{decode_record, encode_record};
use stowage_core::{
    validate, Error, LogEntry, NewLogEntry, Result, Session, SessionState, SessionStore,
};

use super::chain::{append, Appended, ChainKeys};
use super::conn::{bytes, int, items, status, unexpected, Op};
use super::index::scan_lex;
use super::runs::{chain_end, read_list};
use super::Shared;

/// The session store.
pub(crate) struct RedisSessions(pub(crate) Arc<Shared>);

fn name(id: &str) -> String {
    format!("session {:?}", validate::preview(id))
}

impl RedisSessions {
    fn chain(&self, id: &str) -> ChainKeys {
        let k = &self.0.keys;
        ChainKeys {
            meta: k.session_meta(id),
            list: k.session_log(id),
            idem: k.session_idem(id),
        }
    }

    fn not_found(id: &str) -> Error {
        Error::not_found(format!("{} does not exist", name(id)))
    }

    async fn load(&self, id: &str) -> Result<Option<(Session, String)>> {
        let what = name(id);
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.0.keys.session_meta(id))
            .arg("rec")
            .arg("ver")
            .arg("next")
            .arg("head");
        let reply = items(self.0.conn.query(&cmd, Op::Read, &what).await?);
        let Some(rec) = reply.first().and_then(bytes) else {
            return Ok(None);
        };
        let mut session: Session = decode_record(&what, rec)?;
        // The log length and head live beside the record, written by every
        // append and replace.
        let (len, head) = chain_end(reply.get(2), reply.get(3), &what)?;
        session.log_len = len;
        session.log_head = head;
        let ver = reply
            .get(1)
            .and_then(bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| Error::corrupted(format!("{what}: version is missing")))?;
        Ok(Some((session, ver)))
    }

    /// The error for a log change the store refused because the session's
    /// `final` flag is set: core's message, from the session as it is now.
    async fn closed(&self, id: &str, what: &str) -> Error {
        match self.load(id).await {
            Ok(Some((session, _))) => match session.check_log_open() {
                Err(e) => e,
                Ok(()) => Error::internal(format!(
                    "{what}: the store refused the change as final but the session is {}",
                    session.state
                )),
            },
            Ok(None) => Self::not_found(id),
            Err(e) => e,
        }
    }

    async fn index(&self, id: &str, what: &str) -> Result<()> {
        let sh = &self.0;
        let idx = sh.keys.sessions_all();
        sh.conn
            .mutate(&sh.scripts.index_add, &[&idx], &[id.as_bytes()], what)
            .await
            .map(drop)
    }

    /// Compare-and-set loop: `change` computes the new record from the
    /// current one (core's rules); the script checks the version it read.
    async fn update(
        &self,
        id: &str,
        what: &str,
        change: impl Fn(&Session) -> Result<Session>,
    ) -> Result<Session> {
        validate::identifier("session id", id)?;
        let sh = &self.0;
        let meta = sh.keys.session_meta(id);
        loop {
            let (current, ver) = self.load(id).await?.ok_or_else(|| Self::not_found(id))?;
            let mut next = change(&current)?;
            let rec = encode_record(&next)?;
            let new_ver = next.version.to_string();
            let closed: &[u8] = if next.state.is_final() { b"1" } else { b"0" };
            let reply = sh
                .conn
                .mutate(
                    &sh.scripts.save_session,
                    &sh.counted(&[&meta]),
                    &[ver.as_bytes(), new_ver.as_bytes(), &rec, closed],
                    what,
                )
                .await?;
            let (word, rest) = status(reply, what)?;
            match word.as_str() {
                "ok" => {
                    let (len, head) = chain_end(rest.first(), rest.get(1), what)?;
                    next.log_len = len;
                    next.log_head = head;
                    return Ok(next);
                }
                "moved" => continue,
                "notfound" => return Err(Self::not_found(id)),
                other => return Err(unexpected(what, other)),
            }
        }
    }
}

/// Removes deleted session `id` from the listing: removes the index entry,
/// then re-adds it if a racing create recreated the session meanwhile.
///
/// # Errors
/// Connection errors.
pub(crate) async fn unlist(sh: &Arc<Shared>, id: &str, what: &str) -> Result<()> {
    let mut zrem = redis::cmd("ZREM");
    zrem.arg(sh.keys.sessions_all()).arg(id);
    sh.conn.query(&zrem, Op::Write, what).await?;
    let mut exists = redis::cmd("EXISTS");
    exists.arg(sh.keys.session_meta(id));
    if int(&sh.conn.query(&exists, Op::Read, what).await?) == Some(1) {
        RedisSessions(sh.clone()).index(id, what).await?;
    }
    Ok(())
}

#[async_trait]
impl SessionStore for RedisSessions {
    async fn create_session(&self, id: &str, data: Value) -> Result<Session> {
        let sh = &self.0;
        let session = Session::new(id, data, sh.env.clock.now())?;
        let what = format!("create {}", name(id));
        let rec = encode_record(&session)?;
        let meta = sh.keys.session_meta(id);
        let args: [&[u8]; 10] = [
            b"rec", &rec, b"ver", b"1", b"head", b"", b"next", b"0", b"final", b"0",
        ];
        let reply = sh
            .conn
            .mutate(&sh.scripts.create, &sh.counted(&[&meta]), &args, &what)
            .await?;
        let (word, _) = status(reply, &what)?;
        match word.as_str() {
            "ok" => {
                self.index(id, &what).await?;
                sh.remember_head(&meta, Some((0, String::new())));
                Ok(session)
            }
            "exists" => {
                // Repairs the listing if an earlier create lost its reply.
                self.index(id, &what).await?;
                Err(Error::already_exists(format!(
                    "{} already exists",
                    name(id)
                )))
            }
            other => Err(unexpected(&what, other)),
        }
    }

    async fn load_session(&self, id: &str) -> Result<Option<Session>> {
        validate::identifier("session id", id)?;
        Ok(self.load(id).await?.map(|(s, _)| s))
    }

    async fn save_session(
        &self,
        id: &str,
        data: Value,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        validate::json("session data", &data)?;
        let now = self.0.env.clock.now();
        let what = format!("save {}", name(id));
        self.update(id, &what, |s| s.saved(data.clone(), expected_version, now))
            .await
    }

    async fn set_session_state(
        &self,
        id: &str,
        state: SessionState,
        expected_version: Option<u64>,
    ) -> Result<Session> {
        let now = self.0.env.clock.now();
        let what = format!("set state of {}", name(id));
        self.update(id, &what, |s| s.with_state(state, expected_version, now))
            .await
    }

    async fn list_sessions(&self, after: Option<&str>, limit: usize) -> Result<Vec<Session>> {
        let after = after.map(|a| a.as_bytes().to_vec());
        let idx = self.0.keys.sessions_all();
        scan_lex(
            &self.0.conn,
            &idx,
            after,
            validate::page_limit(limit),
            "list sessions",
            |members| async move {
                let ids: Vec<String> = members
                    .iter()
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .collect();
                let loaded = try_join_all(ids.iter().map(|id| self.load(id))).await?;
                Ok(loaded
                    .into_iter()
                    .map(|s| s.map(|(session, _)| session))
                    .collect())
            },
        )
        .await
    }

    async fn delete_session(&self, id: &str) -> Result<bool> {
        validate::identifier("session id", id)?;
        let sh = &self.0;
        let what = format!("delete {}", name(id));
        let c = self.chain(id);
        let reply = sh
            .conn
            .mutate(
                &sh.scripts.delete_session,
                &sh.counted(&[&c.meta, &c.list, &c.idem]),
                &[],
                &what,
            )
            .await?;
        sh.remember_head(&c.meta, None);
        let (word, rest) = status(reply, &what)?;
        if word != "ok" {
            return Err(unexpected(&what, &word));
        }
        let existed = rest.first().and_then(int) == Some(1);
        unlist(sh, id, &what).await?;
        Ok(existed)
    }

    async fn append_log(&self, id: &str, entry: NewLogEntry) -> Result<LogEntry> {
        validate::identifier("session id", id)?;
        // `LogEntry::build` validates the entry before anything is sent.
        let now = self.0.env.clock.now();
        let what = format!("append to the log of {}", name(id));
        let idem = entry.idempotency_key.clone();
        let outcome = append(
            &self.0,
            &self.chain(id),
            "session",
            idem.as_deref(),
            &what,
            |next, prev| {
                let e = LogEntry::build(id, next, prev, entry.clone(), now)?;
                let rec = encode_record(&e)?;
                let hash = e.hash;
                Ok((e, rec, hash))
            },
        )
        .await?;
        match outcome {
            Appended::New(e) => Ok(e),
            Appended::Dup(rec) => {
                // The script returned the stored original; the content rule
                // is core's (the original is immutable, so no race).
                let original: LogEntry = decode_record(&format!("{} log entry", name(id)), &rec)?;
                original.retried(&entry)
            }
            Appended::NotFound => Err(Self::not_found(id)),
            Appended::NotRunning => Err(self.closed(id, &what).await),
        }
    }

    async fn read_log(
        &self,
        id: &str,
        after_seq: Option<u64>,
        limit: usize,
    ) -> Result<Vec<LogEntry>> {
        validate::identifier("session id", id)?;
        let what = format!("read the log of {}", name(id));
        let raw = read_list(&self.0, &self.chain(id), after_seq, limit, &what)
            .await?
            .ok_or_else(|| Self::not_found(id))?;
        raw.iter()
            .map(|r| decode_record(&format!("{} log entry", name(id)), r))
            .collect()
    }

    async fn replace_log(
        &self,
        id: &str,
        entries: Vec<NewLogEntry>,
        expected_next_seq: Option<u64>,
    ) -> Result<Vec<LogEntry>> {
        validate::identifier("session id", id)?;
        let sh = &self.0;
        let what = format!("replace the log of {}", name(id));
        let log = LogEntry::build_log(id, entries, sh.env.clock.now())?;
        let records: Vec<Vec<u8>> = log.iter().map(encode_record).collect::<Result<_>>()?;
        let expected = expected_next_seq.map(|n| n.to_string()).unwrap_or_default();
        let head = log.last().map(|e| e.hash.to_string()).unwrap_or_default();
        let count = log.len().to_string();
        let seqs: Vec<String> = log.iter().map(|e| e.seq.to_string()).collect();
        let mut args: Vec<&[u8]> = vec![expected.as_bytes(), head.as_bytes(), count.as_bytes()];
        args.extend(records.iter().map(Vec::as_slice));
        for (e, seq) in log.iter().zip(&seqs) {
            if let Some(k) = &e.idempotency_key {
                args.push(k.as_bytes());
                args.push(seq.as_bytes());
            }
        }
        let c = self.chain(id);
        sh.remember_head(&c.meta, None);
        let reply = sh
            .conn
            .mutate(
                &sh.scripts.replace_log,
                &sh.counted(&[&c.meta, &c.list, &c.idem]),
                &args,
                &what,
            )
            .await?;
        let (word, rest) = status(reply, &what)?;
        match word.as_str() {
            "ok" => Ok(log),
            "notfound" => Err(Self::not_found(id)),
            "final" => Err(self.closed(id, &what).await),
            "conflict" => {
                let len = rest.first().and_then(int).unwrap_or(-1);
                Err(Error::conflict(format!(
                    "{}: expected the log to have {expected} entries but it has {len}",
                    name(id)
                )))
            }
            other => Err(unexpected(&what, other)),
        }
    }
}
