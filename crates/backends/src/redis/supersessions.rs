//! [`SupersessionStore`] over Redis. Every supersession key lives under
//! one hash tag, `{prefix:sup}`: the records hash (target → CBOR), the
//! replacements hash (target → replacement hex or ""), the targets index
//! (a sorted set of every target's hex, the order of `list`) and one
//! sorted set per agent (members: the record's `SupersessionCursor`
//! bytes, so lex order is `by_agent` order). The cycle check must read other targets' records, so keeping
//! them in one slot lets `put` check and write atomically on a single node
//! and on a cluster alike (the trade-off: supersessions do not spread over
//! cluster nodes).
//!
//! `put`: core validates; one read script returns the stored record (for
//! core's `decide_put`) and the replacement chain (for core's
//! `check_no_cycle`); the write script stores the record and its index only
//! if the target is still free and the chain's tail — the only part of an
//! append-only chain that can change — is still not superseded. The same
//! script writes the record, both indexes and the replacement, so an index
//! never runs ahead of or behind the records.
//!
//! `by_agent` pages the agent's set from the top with `ZREVRANGEBYLEX`
//! below an exclusive member cursor (never an offset: entries added by a
//! writing agent would shift an offset and repeat records).
//!
//! `list` pages the targets index. Stores written before that index
//! existed have records without entries: `list` compares the index and the
//! records hash (one script, atomic) and, when the index is short, adds
//! every record's target with `HSCAN` + `ZADD` (idempotent) before paging.
//! Records are never deleted, so once complete the index stays complete.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::encoding::{decode_record, encode_record};
use stowage_core::validate::{self, MAX_RESOLVE_HOPS};
use stowage_core::{
    AgentKey, Digest, Error, PutOutcome, Result, Supersession, SupersessionCursor,
    SupersessionStore, Timestamp,
};

use super::conn::{bytes, int, items, status, unexpected, Op};
use super::index::scan_lex;
use super::lifecycle::refs::reference;
use super::Shared;
use stowage_core::lifecycle::Referrer;

/// The supersession store.
pub(crate) struct RedisSupersessions(pub(crate) Arc<Shared>);

/// Agent index members fetched per `ZREVRANGEBYLEX` call.
const SCAN_BATCH: usize = 512;
/// Records hash fields read per `HSCAN` call while backfilling.
const BACKFILL_BATCH: usize = 512;

fn parse_digest(b: &[u8]) -> Result<Digest> {
    let s = std::str::from_utf8(b).unwrap_or_default();
    s.parse()
        .map_err(|_| Error::corrupted(format!("supersession store holds a bad hash {s:?}")))
}

impl RedisSupersessions {
    async fn record(&self, target: &Digest) -> Result<Option<Supersession>> {
        let what = format!("supersession of {}", target.short());
        let mut cmd = redis::cmd("HGET");
        cmd.arg(self.0.keys.sup_records()).arg(target.to_string());
        let reply = self.0.conn.query(&cmd, Op::Read, &what).await?;
        bytes(&reply).map(|b| decode_record(&what, b)).transpose()
    }

    /// The records of `targets`, in order; an indexed target without a
    /// record is `Corrupted` (the put script writes both together).
    async fn records(&self, targets: &[Digest], what: &str) -> Result<Vec<Supersession>> {
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.0.keys.sup_records());
        for t in targets {
            cmd.arg(t.to_string());
        }
        let recs = items(self.0.conn.query(&cmd, Op::Read, what).await?);
        if recs.len() != targets.len() {
            return Err(unexpected(what, "HMGET length"));
        }
        recs.iter()
            .zip(targets)
            .map(|(r, t)| {
                let what = format!("supersession of {}", t.short());
                let b = bytes(r).ok_or_else(|| {
                    Error::corrupted(format!("{what} is indexed but its record is missing"))
                })?;
                decode_record(&what, b)
            })
            .collect()
    }

    /// Adds every record's target to the targets index when the index holds
    /// fewer entries than there are records (a store written before the
    /// index existed). Idempotent; racing puts add their own entries.
    async fn complete_targets_index(&self, what: &str) -> Result<()> {
        let sh = &self.0;
        let (idx, recs) = (sh.keys.sup_targets(), sh.keys.sup_records());
        let counts = items(
            sh.conn
                .eval(&sh.scripts.sup_counts, &[&idx, &recs], &[], Op::Read, what)
                .await?,
        );
        let (Some(indexed), Some(records)) =
            (counts.first().and_then(int), counts.get(1).and_then(int))
        else {
            return Err(unexpected(what, "counts"));
        };
        if indexed >= records {
            return Ok(());
        }
        let mut cursor = String::from("0");
        loop {
            let mut scan = redis::cmd("HSCAN");
            scan.arg(&recs)
                .arg(&cursor)
                .arg("COUNT")
                .arg(BACKFILL_BATCH);
            let mut reply = items(sh.conn.query(&scan, Op::Read, what).await?).into_iter();
            let next = reply
                .next()
                .as_ref()
                .and_then(bytes)
                .map(|b| String::from_utf8_lossy(b).into_owned())
                .ok_or_else(|| unexpected(what, "HSCAN cursor"))?;
            // Field/value pairs (`NOVALUES` needs Redis 7.4): keep the fields.
            let pairs = reply.next().map(items).unwrap_or_default();
            if !pairs.is_empty() {
                let mut zadd = redis::cmd("ZADD");
                zadd.arg(&idx);
                for f in pairs.iter().step_by(2) {
                    let target = parse_digest(bytes(f).unwrap_or_default())?;
                    zadd.arg(0).arg(target.to_string());
                }
                // Idempotent and invisible to the caller until complete: a
                // lost reply is as retryable as a failed read.
                sh.conn.query(&zadd, Op::Read, what).await?;
            }
            if next == "0" {
                return Ok(());
            }
            cursor = next;
        }
    }
}

#[async_trait]
impl SupersessionStore for RedisSupersessions {
    async fn put(&self, record: Supersession) -> Result<PutOutcome> {
        record.validate()?;
        let sh = &self.0;
        // Target and replacement references, before the record is stored
        // (`lifecycle::refs`).
        let digests = [Some(record.target), record.replacement];
        reference(
            sh,
            digests.into_iter().flatten(),
            &Referrer::Supersession(record.target),
        )
        .await?;
        let what = format!("supersede {}", record.target.short());
        let (recs, repls) = (sh.keys.sup_records(), sh.keys.sup_replacements());
        let agent_idx = sh.keys.sup_by_agent(&record.agent);
        let target = record.target.to_string();
        let start = record
            .replacement
            .map(|d| d.to_string())
            .unwrap_or_default();
        let max = MAX_RESOLVE_HOPS.to_string();
        let cbor = encode_record(&record)?;
        let member = record.order_key().to_bytes();
        let targets_idx = sh.keys.sup_targets();
        loop {
            let reply = sh
                .conn
                .eval(
                    &sh.scripts.sup_chain,
                    &[&recs, &repls],
                    &[target.as_bytes(), start.as_bytes(), max.as_bytes()],
                    Op::Read,
                    &what,
                )
                .await?;
            let mut it = items(reply).into_iter();
            let existing = it.next();
            if let Some(b) = existing.as_ref().and_then(bytes) {
                let stored: Supersession = decode_record(&what, b)?;
                return record.decide_put(Some(&stored));
            }
            let mut chain: HashMap<Digest, Option<Digest>> = HashMap::new();
            let rest: Vec<_> = it.collect();
            for pair in rest.chunks(2) {
                let (Some(h), Some(r)) =
                    (pair.first().and_then(bytes), pair.get(1).and_then(bytes))
                else {
                    return Err(unexpected(&what, "chain"));
                };
                let r = if r.is_empty() {
                    None
                } else {
                    Some(parse_digest(r)?)
                };
                chain.insert(parse_digest(h)?, r);
            }
            record.check_no_cycle(|h| Ok(chain.get(h).copied()))?;
            // The tail: the first hash along the chain that was not superseded.
            let mut tail = String::new();
            let mut cur = record.replacement;
            for _ in 0..=MAX_RESOLVE_HOPS {
                match cur {
                    Some(h) => match chain.get(&h) {
                        Some(next) => cur = *next,
                        None => {
                            tail = h.to_string();
                            break;
                        }
                    },
                    None => break,
                }
            }
            let args: [&[u8]; 5] = [
                target.as_bytes(),
                start.as_bytes(),
                &cbor,
                &member[..],
                tail.as_bytes(),
            ];
            let reply = sh
                .conn
                .mutate(
                    &sh.scripts.sup_put,
                    &sh.counted(&[&recs, &repls, &agent_idx, &targets_idx]),
                    &args,
                    &what,
                )
                .await?;
            let (word, rest) = status(reply, &what)?;
            match word.as_str() {
                "stored" => return Ok(PutOutcome::Stored),
                "exists" => {
                    let b = rest.first().and_then(bytes).unwrap_or_default();
                    let stored: Supersession = decode_record(&what, b)?;
                    return record.decide_put(Some(&stored));
                }
                "moved" => continue,
                other => return Err(unexpected(&what, other)),
            }
        }
    }

    async fn get(&self, target: &Digest) -> Result<Option<Supersession>> {
        self.record(target).await
    }

    async fn is_superseded(&self, target: &Digest) -> Result<bool> {
        let mut cmd = redis::cmd("HEXISTS");
        cmd.arg(self.0.keys.sup_replacements())
            .arg(target.to_string());
        let what = format!("supersession of {}", target.short());
        Ok(int(&self.0.conn.query(&cmd, Op::Read, &what).await?) == Some(1))
    }

    async fn by_agent(
        &self,
        agent: &AgentKey,
        from: Timestamp,
        to: Option<Timestamp>,
        after: Option<SupersessionCursor>,
        limit: usize,
    ) -> Result<Vec<Supersession>> {
        let what = "supersessions by agent";
        let limit = validate::page_limit(limit);
        if limit == 0 || to.is_some_and(|to| to < from) {
            return Ok(Vec::new());
        }
        let idx = self.0.keys.sup_by_agent(agent);
        let mut targets = Vec::new();
        let mut below = after.map(|c| c.to_bytes().to_vec());
        while targets.len() < limit {
            let max = match &below {
                None => b"+".to_vec(),
                Some(c) => [&b"("[..], c].concat(),
            };
            let mut cmd = redis::cmd("ZREVRANGEBYLEX");
            cmd.arg(&idx)
                .arg(max)
                .arg("-")
                .arg("LIMIT")
                .arg(0)
                .arg(SCAN_BATCH);
            let found = items(self.0.conn.query(&cmd, Op::Read, what).await?);
            for m in &found {
                let member = bytes(m).unwrap_or_default();
                let position = SupersessionCursor::from_bytes(member)?;
                below = Some(member.to_vec());
                if position.in_page(from, to, None) {
                    targets.push(position.target);
                    if targets.len() == limit {
                        break;
                    }
                }
            }
            if found.len() < SCAN_BATCH {
                break;
            }
        }
        self.records(&targets, what).await
    }

    async fn list(&self, after: Option<Digest>, limit: usize) -> Result<Vec<Supersession>> {
        let what = "list supersessions";
        let limit = validate::page_limit(limit);
        if limit == 0 {
            return Ok(Vec::new());
        }
        self.complete_targets_index(what).await?;
        let idx = self.0.keys.sup_targets();
        scan_lex(
            &self.0.conn,
            &idx,
            after.map(|d| d.to_string().into_bytes()),
            limit,
            what,
            |members| async move {
                let targets = members
                    .iter()
                    .map(|m| parse_digest(m))
                    .collect::<Result<Vec<_>>>()?;
                Ok(self
                    .records(&targets, what)
                    .await?
                    .into_iter()
                    .map(Some)
                    .collect())
            },
        )
        .await
    }
}
