//! Blob garbage collection. A blob's data, last-put time (`…:at`) and
//! reference hash share its hash tag, so one script can decide on all
//! three at once; a referrer's record lives in another slot, so liveness
//! is judged by the client (with core's types, exactly the engine's rule)
//! and the script trusts only entries it can re-check:
//!
//! 1. read the blob's last put; skip it if within the grace period;
//! 2. page through its reference entries; an entry recorded within the
//!    grace period, or whose referrer still references the blob, keeps the
//!    blob (the stale entries seen before it are dropped, as the engine
//!    does); the others are stale;
//! 3. the `COLLECT` script drops each stale entry only if its recorded
//!    time is unchanged, and on the last page deletes the blob only if it
//!    still exists, its last put is still before the cutoff and no entry
//!    is left at all.
//!
//! A referrer becomes live only through a write that records its entry
//! first, with a fresh time: such an entry either changed a time the
//! script compares (kept) or is an entry the client never judged (blob
//! kept, since the hash is not empty). A `put` after step 1 moves the
//! last-put time past the cutoff (kept). So a blob a `put` returned, or a
//! write referenced, within the grace period is never collected.

use std::sync::Arc;

use futures::future::try_join_all;
use stowage_core::encoding::decode_record;
use stowage_core::lifecycle::{BlobGc, Referrer, Sweep};
use stowage_core::{Digest, Error, ReleaseRecord, Result};

use super::super::conn::{bytes, int, items, status, unexpected, Op};
use super::super::index::scan_lex;
use super::super::Shared;
use super::refs::{entries, referrer_of};
use stowage_core::lifecycle::{batch_limit, cutoff};

/// Stale entries dropped per `COLLECT` call.
const DROP_BATCH: usize = 512;
/// Release records read per `LRANGE` while judging a release reference.
const RELEASE_PAGE: i64 = 256;

/// Whether `referrer` still references `digest` (the engine's `is_live`).
async fn is_live(sh: &Shared, digest: &Digest, referrer: &Referrer) -> Result<bool> {
    match referrer {
        // Its spec, its summary's blobs or its events': live while the run
        // exists (the engine's rule).
        Referrer::Run(id) => {
            let mut cmd = redis::cmd("HEXISTS");
            cmd.arg(sh.keys.run_meta(*id)).arg("rec");
            let reply = sh.conn.query(&cmd, Op::Read, &format!("run {id}")).await?;
            Ok(int(&reply).is_some_and(|n| n == 1))
        }
        Referrer::Release(name) => release_references(sh, name, digest).await,
        Referrer::Supersession(target) => {
            let mut cmd = redis::cmd("HGET");
            cmd.arg(sh.keys.sup_replacements()).arg(target.to_string());
            let reply = sh
                .conn
                .query(&cmd, Op::Read, "supersession reference")
                .await?;
            Ok(match bytes(&reply) {
                None => false,
                Some(replacement) => {
                    target == digest || replacement == digest.to_string().as_bytes()
                }
            })
        }
        Referrer::Pin(_) => Ok(true),
        // An unknown kind of reference is kept.
        _ => Ok(true),
    }
}

/// Whether any record of release `name` has spec `digest`.
async fn release_references(sh: &Shared, name: &str, digest: &Digest) -> Result<bool> {
    let what = format!("release {name:?}");
    let key = sh.keys.release_history(name);
    let mut start = 0i64;
    loop {
        let mut cmd = redis::cmd("LRANGE");
        cmd.arg(&key).arg(start).arg(start + RELEASE_PAGE - 1);
        let page = items(sh.conn.query(&cmd, Op::Read, &what).await?);
        for value in &page {
            let record: ReleaseRecord =
                decode_record(&format!("{what} record"), bytes(value).unwrap_or_default())?;
            if record.spec_digest == *digest {
                return Ok(true);
            }
        }
        if (page.len() as i64) < RELEASE_PAGE {
            return Ok(false);
        }
        start += RELEASE_PAGE;
    }
}

/// One `COLLECT` call: drops `stale` (checked), and with `finish` deletes
/// the blob if nothing is left. Returns the bytes freed, if deleted.
async fn collect_step(
    sh: &Shared,
    digest: &Digest,
    cutoff: &str,
    stale: &[(Vec<u8>, Vec<u8>)],
    finish: bool,
) -> Result<Option<u64>> {
    let what = format!("collect blob {}", digest.short());
    let k = &sh.keys;
    let (data, at, refs) = (k.blob(digest), k.blob_at(digest), k.blob_refs(digest));
    let mut args: Vec<&[u8]> = vec![cutoff.as_bytes(), if finish { b"1" } else { b"" }];
    for (field, time) in stale {
        args.push(field);
        args.push(time);
    }
    let reply = sh
        .conn
        .mutate(
            &sh.scripts.life.collect,
            &sh.counted(&[&data, &at, &refs]),
            &args,
            &what,
        )
        .await?;
    let (word, rest) = status(reply, &what)?;
    match word.as_str() {
        "kept" => Ok(None),
        "ok" => {
            let freed = rest.first().and_then(int).unwrap_or(-1);
            Ok(u64::try_from(freed).ok())
        }
        other => Err(unexpected(&what, other)),
    }
}

/// Collects blob `digest` if nothing references it and it was last put
/// before `cutoff` (ms); drops stale reference entries on the way.
/// Returns the bytes freed.
async fn collect(sh: &Shared, digest: &Digest, cutoff: u64) -> Result<Option<u64>> {
    let what = format!("collect blob {}", digest.short());
    let cutoff_text = cutoff.to_string();
    let mut stale = Vec::new();
    for (field, time) in entries(sh, &sh.keys.blob_refs(digest), &what).await? {
        let recorded = std::str::from_utf8(&time)
            .ok()
            .and_then(|t| t.parse::<u64>().ok())
            .ok_or_else(|| Error::corrupted(format!("{what}: a reference time is not a number")))?;
        let referrer = referrer_of(&field)?;
        if recorded >= cutoff || is_live(sh, digest, &referrer).await? {
            // Referenced: the stale entries seen so far go, the blob stays.
            for chunk in stale.chunks(DROP_BATCH) {
                collect_step(sh, digest, &cutoff_text, chunk, false).await?;
            }
            return Ok(None);
        }
        stale.push((field, time));
    }
    let mut chunks: Vec<&[(Vec<u8>, Vec<u8>)]> = stale.chunks(DROP_BATCH).collect();
    let last = chunks.pop().unwrap_or(&[]);
    for chunk in chunks {
        collect_step(sh, digest, &cutoff_text, chunk, false).await?;
    }
    let freed = collect_step(sh, digest, &cutoff_text, last, true).await?;
    if freed.is_some() {
        unlist(sh, digest, &what).await?;
    }
    Ok(freed)
}

/// Removes a collected blob from the listing, re-adding it if a racing
/// `put` stored it again (as `CasStore::delete` does).
async fn unlist(sh: &Shared, digest: &Digest, what: &str) -> Result<()> {
    let hex = digest.to_string();
    let mut zrem = redis::cmd("ZREM");
    zrem.arg(sh.keys.blobs_all()).arg(&hex);
    sh.conn.query(&zrem, Op::Write, what).await?;
    let mut exists = redis::cmd("EXISTS");
    exists.arg(sh.keys.blob(digest));
    if int(&sh.conn.query(&exists, Op::Read, what).await?) == Some(1) {
        sh.conn
            .mutate(
                &sh.scripts.index_add,
                &[&sh.keys.blobs_all()],
                &[hex.as_bytes()],
                what,
            )
            .await?;
    }
    Ok(())
}

/// The last-put time of `digest` (0 for a blob stored before it was kept),
/// or `None` when the blob is gone.
async fn last_put(sh: &Shared, digest: &Digest) -> Result<Option<u64>> {
    let what = format!("blob {}", digest.short());
    let mut at = redis::cmd("GET");
    at.arg(sh.keys.blob_at(digest));
    let mut exists = redis::cmd("EXISTS");
    exists.arg(sh.keys.blob(digest));
    let (at, present) = futures::try_join!(
        sh.conn.query(&at, Op::Read, &what),
        sh.conn.query(&exists, Op::Read, &what)
    )?;
    if int(&present) != Some(1) {
        return Ok(None);
    }
    Ok(Some(
        int(&at).and_then(|t| u64::try_from(t).ok()).unwrap_or(0),
    ))
}

pub(super) async fn gc_blobs(
    sh: &Arc<Shared>,
    policy: &BlobGc,
    after: Option<&Digest>,
) -> Result<Sweep<Digest>> {
    super::backfill::ensure_indexed(sh).await?;
    let limit = batch_limit(policy.batch);
    let page: Vec<(Digest, u64)> =
        scan_lex(
            &sh.conn,
            &sh.keys.blobs_all(),
            after.map(|d| d.to_string().into_bytes()),
            limit,
            "collect blobs",
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
                try_join_all(digests.into_iter().map(|d| async move {
                    Ok::<_, Error>(last_put(sh, &d).await?.map(|at| (d, at)))
                }))
                .await
            },
        )
        .await?;
    let next = (page.len() == limit).then(|| page[page.len() - 1].0);
    let cutoff = cutoff(sh.env.clock.now(), policy.grace).as_millis();
    let (mut affected, mut removed) = (0, 0);
    for (digest, put_at) in &page {
        if *put_at >= cutoff {
            continue;
        }
        if let Some(bytes) = collect(sh, digest, cutoff).await? {
            affected += 1;
            removed += bytes;
        }
    }
    Ok(Sweep::new(page.len() as u64, affected, removed, next))
}
