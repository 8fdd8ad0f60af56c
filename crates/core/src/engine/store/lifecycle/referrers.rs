//! Pins and the list of a blob's referrers, over the reference index (see
//! `gc` for how entries are recorded and collected).

use super::super::cas::scope as blob_scope;
use super::super::EngineStore;
use crate::engine::keys;
use crate::engine::{Direction, Table};
use crate::lifecycle::Referrer;
use crate::validate::{self, MAX_PAGE};
use crate::{Digest, Result};

/// Reference index entries read per job when listing referrers.
const REFERRERS_PAGE: usize = MAX_PAGE;

impl EngineStore {
    pub(super) async fn pin_now(&self, digest: &Digest, label: &str) -> Result<()> {
        validate::identifier("pin label", label)?;
        self.reference([*digest], Referrer::Pin(label.to_owned()))
            .await
    }

    pub(super) async fn unpin_now(&self, digest: &Digest, label: &str) -> Result<bool> {
        validate::identifier("pin label", label)?;
        let key = keys::blob_ref(digest, &Referrer::Pin(label.to_owned()));
        self.write(blob_scope(digest), move |_, txn| {
            if txn.get(Table::BlobRefs, &key)?.is_none() {
                return Ok(false);
            }
            txn.delete(Table::BlobRefs, key.clone())?;
            Ok(true)
        })
        .await
    }

    /// Every referrer of `digest`, in index order, read page after page
    /// (one job each, so a popular blob does not hold the engine): a blob
    /// shared by more runs than a page holds still lists its pins, which
    /// sort after the runs.
    pub(super) async fn referrers_now(&self, digest: &Digest) -> Result<Vec<Referrer>> {
        let digest = *digest;
        let (mut start, end) = keys::blob_refs(&digest);
        let mut referrers = Vec::new();
        loop {
            let (from, to) = (start.clone(), end.clone());
            let (page, next) = self
                .read(move |_, reader| {
                    let page = reader.scan(
                        Table::BlobRefs,
                        &from,
                        to.as_deref(),
                        Direction::Forward,
                        REFERRERS_PAGE,
                    )?;
                    let next = match page.last() {
                        Some((last, _)) if page.len() == REFERRERS_PAGE => {
                            Some(keys::successor(last))
                        }
                        _ => None,
                    };
                    let page = page
                        .iter()
                        .map(|(key, _)| keys::referrer_of(&digest, key))
                        .collect::<Result<Vec<_>>>()?;
                    Ok((page, next))
                })
                .await?;
            referrers.extend(page);
            match next {
                Some(next) => start = next,
                None => break,
            }
        }
        // A run's entry and its calls' sort side by side; another
        // referrer's calls sort after every referrer's own entry. Sorting
        // restores the index order of the referrers' own entries.
        referrers.sort_unstable();
        referrers.dedup();
        Ok(referrers)
    }
}
