//! Making the blob reference index complete on a store written before it
//! existed, once, before the first collection (as the engine does, see
//! `stowage_core`'s `lifecycle::gc`): every run, release record and
//! supersession has its references recorded, then the `refs_indexed` flag
//! is set in the counters hash. No collector deletes before the flag
//! exists, and everything written meanwhile records its own references.
//! The stores are read through their public traits.

use std::sync::Arc;

use stowage_core::lifecycle::Referrer;
use stowage_core::validate::MAX_PAGE;
use stowage_core::{ReleaseRegistry, Result, RunFilter, RunLedger, SupersessionStore};

use super::super::conn::{int, Op};
use super::super::releases::RedisReleases;
use super::super::runs::RedisRuns;
use super::super::supersessions::RedisSupersessions;
use super::super::Shared;
use super::refs::reference;

/// The flag's field in the counters hash.
const FLAG: &str = "refs_indexed";

/// Records the references of everything stored, unless already done.
///
/// # Errors
/// Connection errors; `Corrupted` for an undecodable record.
pub(super) async fn ensure_indexed(sh: &Arc<Shared>) -> Result<()> {
    let mut get = redis::cmd("HGET");
    get.arg(sh.keys.stats()).arg(FLAG);
    let flag = sh
        .conn
        .query(&get, Op::Read, "reference index flag")
        .await?;
    if int(&flag).is_some() {
        return Ok(());
    }
    let runs = RedisRuns(sh.clone());
    let mut after = None;
    loop {
        let page = runs.list_runs(&RunFilter::all(), after, MAX_PAGE).await?;
        for run in &page {
            let mut digests = vec![run.spec_digest];
            if let Some(summary) = &run.summary {
                digests.extend(summary.blobs.iter().copied());
            }
            reference(sh, digests, &Referrer::Run(run.id)).await?;
        }
        match page.last() {
            Some(last) if page.len() == MAX_PAGE => after = Some(last.id),
            _ => break,
        }
    }
    let releases = RedisReleases(sh.clone());
    let mut after: Option<String> = None;
    loop {
        let names = releases.list_names(after.as_deref(), MAX_PAGE).await?;
        for name in &names {
            let mut before = None;
            loop {
                let history = releases.history(name, before, MAX_PAGE).await?;
                let digests = history.iter().map(|r| r.spec_digest);
                reference(sh, digests, &Referrer::Release(name.clone())).await?;
                match history.last() {
                    Some(last) if history.len() == MAX_PAGE => before = Some(last.seq),
                    _ => break,
                }
            }
        }
        match names.last() {
            Some(last) if names.len() == MAX_PAGE => after = Some(last.clone()),
            _ => break,
        }
    }
    let supersessions = RedisSupersessions(sh.clone());
    let mut after = None;
    loop {
        let page = supersessions.list(after, MAX_PAGE).await?;
        for s in &page {
            let digests = [Some(s.target), s.replacement].into_iter().flatten();
            reference(sh, digests, &Referrer::Supersession(s.target)).await?;
        }
        match page.last() {
            Some(last) if page.len() == MAX_PAGE => after = Some(last.target),
            _ => break,
        }
    }
    let mut set = redis::cmd("HSET");
    set.arg(sh.keys.stats()).arg(FLAG).arg(1);
    sh.conn
        .query(&set, Op::Write, "reference index flag")
        .await
        .map(drop)
}
