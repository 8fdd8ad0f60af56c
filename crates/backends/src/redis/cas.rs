//! [`CasStore`] over Redis: one string per blob (`{prefix:blob:<hex>}:data`
//! = 4-byte big-endian CRC32C, then the bytes) plus the digest listing
//! `{prefix:idx}:blobs`. Damaged bytes fail the checksum and give
//! `Corrupted`; `verify` re-hashes.
//!
//! Listing consistency across slots: put writes the blob then adds the
//! digest; delete removes the blob, removes the digest, then re-adds it if
//! a concurrent put stored the blob again. Every blob whose put returned
//! `Ok` is listed; digests whose blob is gone are skipped.
//!
//! Once the blob step ran, a put that fails later (the durability wait or
//! the listing step, say because the server died in between) is
//! `OutcomeUnknown`, never `Unavailable`: the blob may exist, unlisted.
//! Putting the same bytes again repairs it — `SET NX` leaves the blob and
//! the listing step runs again. Likewise a delete whose listing steps fail
//! after the blob was deleted is `OutcomeUnknown`; deleting again
//! completes it (a digest left listed without its blob is skipped by
//! `list` meanwhile).

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::future::try_join_all;
use stowage_core::cas::too_large;
use stowage_core::{validate, BlobStat, CasStore, Digest, Error, ErrorKind, Result};

use super::conn::{bytes, int, items, Op};
use super::index::scan_lex;
use super::{Shared, MAX_BLOB};

/// The blob store.
pub(crate) struct RedisCas(pub(crate) Arc<Shared>);

impl RedisCas {
    async fn index(&self, d: &Digest, what: &str) -> Result<()> {
        let sh = &self.0;
        let hex = d.to_string();
        sh.conn
            .mutate(
                &sh.scripts.index_add,
                &[&sh.keys.blobs_all()],
                &[hex.as_bytes()],
                what,
            )
            .await
            .map(drop)
    }

    async fn exists(&self, d: &Digest, what: &str) -> Result<bool> {
        let mut cmd = redis::cmd("EXISTS");
        cmd.arg(self.0.keys.blob(d));
        Ok(int(&self.0.conn.query(&cmd, Op::Read, what).await?) == Some(1))
    }
}

/// An error after the blob step of a put or a delete (`done`: what that
/// step did; `redo`: how to complete the call): the call is no longer
/// without effect, so `Unavailable` (which promises nothing was applied)
/// becomes `OutcomeUnknown`.
fn blob_step_ran_but(e: Error, what: &str, done: &str, redo: &str) -> Error {
    if e.kind() != ErrorKind::Unavailable {
        return e;
    }
    Error::new(
        ErrorKind::OutcomeUnknown,
        format!(
            "{what}: the blob was {done}, but the server became unavailable before the \
             listing was updated; {redo} to complete it"
        ),
    )
    .with_source(e)
}

#[async_trait]
impl CasStore for RedisCas {
    async fn put(&self, data: Bytes) -> Result<Digest> {
        too_large(data.len() as u64, MAX_BLOB)?;
        let d = Digest::of(&data);
        let what = format!("put blob {}", d.short());
        let mut value = Vec::with_capacity(data.len() + 4);
        value.extend_from_slice(&crc32c::crc32c(&data).to_be_bytes());
        value.extend_from_slice(&data);
        let sh = &self.0;
        let (data, at) = (sh.keys.blob(&d), sh.keys.blob_at(&d));
        let now = sh.env.clock.now().as_millis().to_string();
        // The blob and its last-put time in one step (garbage collection
        // reads both in one step too, see `lifecycle::gc`).
        let reply = sh
            .conn
            .eval(
                &sh.scripts.put_blob,
                &sh.counted(&[&data, &at]),
                &[&value, now.as_bytes()],
                Op::Write,
                &what,
            )
            .await?;
        let listed = async {
            self.0.conn.wait_durable(&what).await?;
            self.0.conn.settle_counts(&reply, &what).await;
            self.index(&d, &what).await
        };
        listed
            .await
            .map_err(|e| blob_step_ran_but(e, &what, "stored", "put the same bytes again"))?;
        Ok(d)
    }

    async fn get(&self, digest: &Digest) -> Result<Bytes> {
        let what = format!("blob {}", digest.short());
        let mut cmd = redis::cmd("GET");
        cmd.arg(self.0.keys.blob(digest));
        let reply = self.0.conn.query(&cmd, Op::Read, &what).await?;
        let stored =
            bytes(&reply).ok_or_else(|| Error::not_found(format!("{what} does not exist")))?;
        let (crc, body) = match stored.split_first_chunk::<4>() {
            Some((crc, body)) => (u32::from_be_bytes(*crc), body),
            None => return Err(Error::corrupted(format!("{what} is truncated"))),
        };
        if crc32c::crc32c(body) != crc {
            return Err(Error::corrupted(format!(
                "{what} is damaged: its checksum does not match"
            )));
        }
        Ok(Bytes::copy_from_slice(body))
    }

    async fn contains(&self, digest: &Digest) -> Result<bool> {
        self.exists(digest, &format!("blob {}", digest.short()))
            .await
    }

    async fn stat(&self, digest: &Digest) -> Result<BlobStat> {
        let what = format!("blob {}", digest.short());
        let mut cmd = redis::cmd("STRLEN");
        cmd.arg(self.0.keys.blob(digest));
        let len = int(&self.0.conn.query(&cmd, Op::Read, &what).await?).unwrap_or(0);
        match len {
            0 => Err(Error::not_found(format!("{what} does not exist"))),
            1..=3 => Err(Error::corrupted(format!("{what} is truncated"))),
            n => Ok(BlobStat::new(n as u64 - 4)),
        }
    }

    async fn delete(&self, digest: &Digest) -> Result<bool> {
        let sh = &self.0;
        let what = format!("delete blob {}", digest.short());
        let (data, at) = (sh.keys.blob(digest), sh.keys.blob_at(digest));
        let reply = sh
            .conn
            .mutate(
                &sh.scripts.delete_blob,
                &sh.counted(&[&data, &at]),
                &[],
                &what,
            )
            .await?;
        let existed = items(reply).get(1).and_then(int) == Some(1);
        let unlisted = async {
            let mut zrem = redis::cmd("ZREM");
            zrem.arg(sh.keys.blobs_all()).arg(digest.to_string());
            sh.conn.query(&zrem, Op::Write, &what).await?;
            if self.exists(digest, &what).await? {
                self.index(digest, &what).await?;
            }
            Ok(())
        };
        unlisted
            .await
            .map_err(|e| blob_step_ran_but(e, &what, "deleted", "delete it again"))?;
        Ok(existed)
    }

    async fn list(&self, after: Option<&Digest>, limit: usize) -> Result<Vec<Digest>> {
        let after = after.map(|d| d.to_string().into_bytes());
        let idx = self.0.keys.blobs_all();
        scan_lex(
            &self.0.conn,
            &idx,
            after,
            validate::page_limit(limit),
            "list blobs",
            |members| async move {
                let digests = members
                    .iter()
                    .map(|m| {
                        let s = String::from_utf8_lossy(m);
                        s.parse::<Digest>().map_err(|_| {
                            Error::corrupted(format!("blob index holds a bad digest {s:?}"))
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let present =
                    try_join_all(digests.iter().map(|d| self.exists(d, "list blobs"))).await?;
                Ok(digests
                    .into_iter()
                    .zip(present)
                    .map(|(d, p)| p.then_some(d))
                    .collect())
            },
        )
        .await
    }

    fn max_blob_size(&self) -> u64 {
        MAX_BLOB
    }
}
