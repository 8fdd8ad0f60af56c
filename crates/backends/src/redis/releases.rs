//! [`ReleaseRegistry`] over Redis: one list per name (`…:history`, index =
//! seq) under the name's hash tag, plus the name listing
//! `{prefix:idx}:releases`. A record is appended by a compare-and-append
//! script on the list length; the client computes it with core's
//! `ReleaseRecord::promotion` / `restoration` and retries on a mismatch.
//!
//! A name is added to the listing (idempotently) before its first record
//! is written, so every promoted name is listed; a name whose first
//! promote failed is skipped when listing because its history is empty.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::try_join_all;
use stowage_core::encoding::{decode_record, encode_record};
use stowage_core::{
    validate, Digest, Error, ReleaseMetadata, ReleaseRecord, ReleaseRegistry, Result,
};

use super::conn::{bytes, int, items, status, unexpected, Op};
use super::index::scan_lex;
use super::lifecycle::refs::reference;
use super::Shared;
use stowage_core::lifecycle::Referrer;

/// The release registry.
pub(crate) struct RedisReleases(pub(crate) Arc<Shared>);

fn name_of(name: &str) -> String {
    format!("release {:?}", validate::preview(name))
}

impl RedisReleases {
    async fn record_at(&self, name: &str, index: i64) -> Result<Option<ReleaseRecord>> {
        let what = name_of(name);
        let mut cmd = redis::cmd("LINDEX");
        cmd.arg(self.0.keys.release_history(name)).arg(index);
        let reply = self.0.conn.query(&cmd, Op::Read, &what).await?;
        bytes(&reply)
            .map(|b| decode_record(&format!("{what} record"), b))
            .transpose()
    }

    /// Appends the record `make(head)` builds, retrying when another
    /// writer appended first.
    async fn append(
        &self,
        name: &str,
        what: &str,
        mut make: impl FnMut(
            Option<ReleaseRecord>,
        ) -> futures::future::BoxFuture<'static, Result<ReleaseRecord>>,
    ) -> Result<ReleaseRecord> {
        let sh = &self.0;
        let key = sh.keys.release_history(name);
        let mut indexed = false;
        loop {
            let head = self.record_at(name, -1).await?;
            let is_first = head.is_none();
            let record = make(head).await?;
            if is_first && !indexed {
                let idx = sh.keys.releases_all();
                sh.conn
                    .mutate(&sh.scripts.index_add, &[&idx], &[name.as_bytes()], what)
                    .await?;
                indexed = true;
            }
            let rec = encode_record(&record)?;
            let expected = record.seq.to_string();
            let reply = sh
                .conn
                .mutate(
                    &sh.scripts.promote,
                    &sh.counted(&[&key]),
                    &[expected.as_bytes(), &rec],
                    what,
                )
                .await?;
            let (word, _) = status(reply, what)?;
            match word.as_str() {
                "ok" => return Ok(record),
                "moved" => continue,
                other => return Err(unexpected(what, other)),
            }
        }
    }

    fn not_found(name: &str) -> Error {
        Error::not_found(format!("{} was never promoted", name_of(name)))
    }

    async fn restore(
        &self,
        name: &str,
        actor: &str,
        seq: Option<u64>,
        what: &str,
    ) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        validate::identifier("promoted_by", actor)?;
        let now = self.0.env.clock.now();
        let name_owned = name.to_owned();
        let actor = actor.to_owned();
        let this = RedisReleases(self.0.clone());
        let this = Arc::new(this);
        self.append(name, what, move |head| {
            let this = this.clone();
            let name = name_owned.clone();
            let actor = actor.clone();
            Box::pin(async move {
                let head = head.ok_or_else(|| RedisReleases::not_found(&name))?;
                let target = match seq {
                    Some(s) => s,
                    None => head.rollback_seq()?,
                };
                let index = i64::try_from(target).map_err(|_| missing_seq(&name, target))?;
                let restore = this
                    .record_at(&name, index)
                    .await?
                    .ok_or_else(|| missing_seq(&name, target))?;
                ReleaseRecord::restoration(&head, &restore, &actor, None, now)
            })
        })
        .await
    }
}

fn missing_seq(name: &str, seq: u64) -> Error {
    Error::not_found(format!("{} has no record #{seq}", name_of(name)))
}

#[async_trait]
impl ReleaseRegistry for RedisReleases {
    async fn promote(
        &self,
        name: &str,
        spec_digest: Digest,
        metadata: ReleaseMetadata,
        expected_next_seq: Option<u64>,
    ) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        metadata.validate()?;
        let now = self.0.env.clock.now();
        let what = format!("promote {}", name_of(name));
        let name_owned = name.to_owned();
        // The spec's reference, before a record names it (`lifecycle::refs`).
        reference(
            &self.0,
            [spec_digest],
            &Referrer::Release(name_owned.clone()),
        )
        .await?;
        self.append(name, &what, move |head| {
            let r = ReleaseRecord::promotion(
                &name_owned,
                spec_digest,
                metadata.clone(),
                head.as_ref(),
                expected_next_seq,
                now,
            );
            Box::pin(async move { r })
        })
        .await
    }

    async fn rollback(&self, name: &str, promoted_by: &str) -> Result<ReleaseRecord> {
        let what = format!("roll back {}", name_of(name));
        self.restore(name, promoted_by, None, &what).await
    }

    async fn rollback_to(&self, name: &str, seq: u64, promoted_by: &str) -> Result<ReleaseRecord> {
        let what = format!("roll back {} to #{seq}", name_of(name));
        self.restore(name, promoted_by, Some(seq), &what).await
    }

    async fn current(&self, name: &str) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        self.record_at(name, -1)
            .await?
            .ok_or_else(|| Self::not_found(name))
    }

    async fn history(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReleaseRecord>> {
        validate::identifier("release name", name)?;
        let what = format!("history of {}", name_of(name));
        let limit = validate::page_limit(limit).to_string();
        let before = before.map(|b| b.to_string()).unwrap_or_default();
        let key = self.0.keys.release_history(name);
        let reply = self
            .0
            .conn
            .eval(
                &self.0.scripts.history,
                &[&key],
                &[before.as_bytes(), limit.as_bytes()],
                Op::Read,
                &what,
            )
            .await?;
        let mut out = items(reply)
            .iter()
            .map(|v| decode_record(&format!("{what} record"), bytes(v).unwrap_or_default()))
            .collect::<Result<Vec<ReleaseRecord>>>()?;
        out.reverse();
        Ok(out)
    }

    async fn list_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let after = after.map(|a| a.as_bytes().to_vec());
        let idx = self.0.keys.releases_all();
        let what = "list release names";
        scan_lex(
            &self.0.conn,
            &idx,
            after,
            validate::page_limit(limit),
            what,
            |members| async move {
                let names: Vec<String> = members
                    .iter()
                    .map(|m| String::from_utf8_lossy(m).into_owned())
                    .collect();
                let exists = try_join_all(names.iter().map(|n| {
                    let mut cmd = redis::cmd("EXISTS");
                    cmd.arg(self.0.keys.release_history(n));
                    let conn = self.0.conn.clone();
                    async move { conn.query(&cmd, Op::Read, what).await }
                }))
                .await?;
                Ok(names
                    .into_iter()
                    .zip(&exists)
                    .map(|(n, e)| (int(e) == Some(1)).then_some(n))
                    .collect())
            },
        )
        .await
    }
}
