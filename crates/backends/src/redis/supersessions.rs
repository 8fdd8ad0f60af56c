//! [`SupersessionStore`] over Redis. Every supersession key lives under
//! one hash tag, `{prefix:sup}`: the records hash (target → CBOR), the
//! replacements hash (target → replacement hex or "") and one sorted set
//! per agent. The cycle check must read other targets' records, so keeping
//! them in one slot lets `put` check and write atomically on a single node
//! and on a cluster alike (the trade-off: supersessions do not spread over
//! cluster nodes).
//!
//! `put`: core validates; one read script returns the stored record (for
//! core's `decide_put`) and the replacement chain (for core's
//! `check_no_cycle`); the write script stores the record and its index only
//! if the target is still free and the chain's tail — the only part of an
//! append-only chain that can change — is still not superseded.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use stowage_core::encoding::{decode_record, encode_record};
use stowage_core::validate::{self, MAX_RESOLVE_HOPS};
use stowage_core::{
    AgentKey, Digest, Error, PutOutcome, Result, Supersession, SupersessionStore, Timestamp,
};

use super::conn::{bytes, int, items, status, unexpected, Op};
use super::Shared;

/// The supersession store.
pub(crate) struct RedisSupersessions(pub(crate) Arc<Shared>);

/// Bytes of an order key: presence, hlc (8 + 4 + 8), timestamp, target.
const ORDER_KEY_LEN: usize = 1 + 20 + 8 + 32;
const SCAN_BATCH: usize = 512;

/// The fixed-width, big-endian order key of `by_agent`: sorting these
/// bytes sorts by `(hlc, timestamp, target)` with `None` first.
fn order_key(s: &Supersession) -> Vec<u8> {
    let mut k = Vec::with_capacity(ORDER_KEY_LEN);
    match s.hlc {
        None => k.extend_from_slice(&[0u8; 21]),
        Some(h) => {
            k.push(1);
            k.extend_from_slice(&h.physical_ms.to_be_bytes());
            k.extend_from_slice(&h.logical.to_be_bytes());
            k.extend_from_slice(&h.node.to_be_bytes());
        }
    }
    k.extend_from_slice(&s.timestamp.as_millis().to_be_bytes());
    k.extend_from_slice(s.target.as_bytes());
    k
}

/// The timestamp and target of an order key, read at fixed offsets.
fn parse_order_key(k: &[u8]) -> Result<(Timestamp, Digest)> {
    let bad = || Error::corrupted("supersession agent index holds a malformed entry");
    if k.len() != ORDER_KEY_LEN {
        return Err(bad());
    }
    let ts: [u8; 8] = k
        .get(21..29)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(bad)?;
    let target = Digest::from_slice(k.get(29..).ok_or_else(bad)?).map_err(|_| bad())?;
    Ok((Timestamp::from_millis(u64::from_be_bytes(ts)), target))
}

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
}

#[async_trait]
impl SupersessionStore for RedisSupersessions {
    async fn put(&self, record: Supersession) -> Result<PutOutcome> {
        record.validate()?;
        let sh = &self.0;
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
        let member = order_key(&record);
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
                &member,
                tail.as_bytes(),
            ];
            let reply = sh
                .conn
                .mutate(
                    &sh.scripts.sup_put,
                    &[&recs, &repls, &agent_idx],
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
        limit: usize,
    ) -> Result<Vec<Supersession>> {
        let limit = validate::page_limit(limit);
        let to = to.unwrap_or(Timestamp::MAX);
        let idx = self.0.keys.sup_by_agent(agent);
        let mut targets = Vec::new();
        let mut offset = 0usize;
        while targets.len() < limit && from <= to {
            let mut cmd = redis::cmd("ZREVRANGEBYLEX");
            cmd.arg(&idx)
                .arg("+")
                .arg("-")
                .arg("LIMIT")
                .arg(offset)
                .arg(SCAN_BATCH);
            let found = items(
                self.0
                    .conn
                    .query(&cmd, Op::Read, "supersessions by agent")
                    .await?,
            );
            offset += found.len();
            for m in &found {
                let (ts, target) = parse_order_key(bytes(m).unwrap_or_default())?;
                if ts >= from && ts <= to && targets.len() < limit {
                    targets.push(target);
                }
            }
            if found.len() < SCAN_BATCH {
                break;
            }
        }
        if targets.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(self.0.keys.sup_records());
        for t in &targets {
            cmd.arg(t.to_string());
        }
        let recs = items(
            self.0
                .conn
                .query(&cmd, Op::Read, "supersessions by agent")
                .await?,
        );
        recs.iter()
            .zip(&targets)
            .map(|(r, t)| {
                let what = format!("supersession of {}", t.short());
                let b = bytes(r).ok_or_else(|| {
                    Error::corrupted(format!("{what} is indexed but its record is missing"))
                })?;
                decode_record(&what, b)
            })
            .collect()
    }
}
