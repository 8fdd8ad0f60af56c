//! Recording blob references (see `gc` for how they are collected).
//!
//! A reference is recorded before the write that makes it, in a job in
//! the blob's scope, so that a collector never sees the blob unreferenced
//! while the write is on its way. A call whose write may fail records
//! entries of its own ([`CallRefs`]), so that when it fails it takes back
//! what it recorded and nothing else: the referrer's own entry is written
//! by the call's write for a run ([`confirm_refs`]: a run's entries are
//! live while the run exists, so a collector never removes them), and for
//! a release or supersession by blob-scope jobs after it
//! ([`EngineStore::settle_referenced`]: their entries are live only once
//! the record landed, so they must be ordered with collection); the
//! call's entries are removed only after that. So a collector, whatever it
//! interleaves with, finds one of the two.

use futures::future::join_all;

use super::super::cas::scope as blob_scope;
use super::super::EngineStore;
use crate::engine::keys;
use crate::engine::{Table, Txn};
use crate::lifecycle::Referrer;
use crate::{Digest, ErrorKind, Result, Timestamp};

/// The references one call is about to make for `referrer` (creating or
/// finishing a run, appending an event, promoting, putting a
/// supersession, forking a release): entries of its own
/// ([`keys::blob_ref_call`]), recorded before its write like any
/// reference, so that a call that fails takes back exactly what it
/// recorded. When the write succeeds the referrer's own entries are
/// recorded ([`confirm_refs`] in a run's write, or
/// [`EngineStore::settle_referenced`]); [`EngineStore::settle_call`] then
/// removes the call's, unless the outcome is unknown.
#[must_use = "settle the call's references once its write has an outcome"]
pub(in crate::engine::store) struct CallRefs {
    referrer: Referrer,
    token: u64,
    digests: Vec<Digest>,
}

impl CallRefs {
    /// The declared digests, each once.
    pub(in crate::engine::store) fn digests(&self) -> Vec<Digest> {
        self.digests.clone()
    }
}

/// Records, in a successful write, that `referrer` references each of
/// `digests` (its entries: in the same batch as the record or event that
/// makes the references).
pub(in crate::engine::store) fn confirm_refs(
    txn: &mut dyn Txn,
    referrer: &Referrer,
    digests: &[Digest],
    now: Timestamp,
) -> Result<()> {
    let now = now.as_millis().to_be_bytes();
    for digest in digests {
        txn.put(
            Table::BlobRefs,
            keys::blob_ref(digest, referrer),
            now.to_vec(),
        )?;
    }
    Ok(())
}

fn sorted_unique(digests: impl IntoIterator<Item = Digest>) -> Vec<Digest> {
    let mut digests: Vec<Digest> = digests.into_iter().collect();
    digests.sort_unstable();
    digests.dedup();
    digests
}

impl EngineStore {
    /// Records that `referrer` references each of `digests`, each in a job
    /// in the blob's scope, for good (a pin: the entry is the reference).
    pub(in crate::engine::store) async fn reference(
        &self,
        digests: impl IntoIterator<Item = Digest>,
        referrer: Referrer,
    ) -> Result<()> {
        let entries = sorted_unique(digests)
            .into_iter()
            .map(|digest| (digest, keys::blob_ref(&digest, &referrer)));
        self.record_refs(entries).await
    }

    /// Records the references a call for `referrer` is about to make (see
    /// [`CallRefs`]). No write when `digests` is empty, and no removal
    /// later either.
    pub(in crate::engine::store) async fn reference_call(
        &self,
        digests: impl IntoIterator<Item = Digest>,
        referrer: Referrer,
    ) -> Result<CallRefs> {
        let call = CallRefs {
            referrer,
            token: rand::random(),
            digests: sorted_unique(digests),
        };
        let entries = call.digests.iter().map(|digest| {
            let key = keys::blob_ref_call(digest, &call.referrer, call.token);
            (*digest, key)
        });
        match self.record_refs(entries).await {
            Ok(()) => Ok(call),
            Err(e) => {
                // Some entries may be written: take them back.
                self.release_call(call).await;
                Err(e)
            }
        }
    }

    /// Removes the entries of `call` once its write has an outcome.
    ///
    /// Safety rests on the order: call this only after the call's write
    /// returned (the referrer's entries, if it succeeded, are then applied
    /// and readable), never concurrently with it. A write whose outcome is
    /// unknown may still land, so its caller keeps the entries instead
    /// ([`EngineStore::settle_call`]). A removal that fails leaves an entry
    /// that keeps its blob while the referrer references it (as a call cut
    /// short by a crash does): conservative, so it is not reported. The
    /// call does not wait for the removal to be durable
    /// ([`Engine::write_eventually_durable`](crate::engine::Engine::write_eventually_durable)).
    async fn release_call(&self, call: CallRefs) {
        let removals = call.digests.iter().map(|digest| {
            let key = keys::blob_ref_call(digest, &call.referrer, call.token);
            let removal = self.0.engine.write_eventually_durable(
                blob_scope(digest),
                Box::new(move |txn| txn.delete(Table::BlobRefs, key.clone())),
            );
            async move { self.watch(removal.await) }
        });
        // Every removal is tried, whichever fails.
        join_all(removals).await;
    }

    /// Ends `call` after its write answered `outcome`: its entries are
    /// removed unless the outcome is unknown (the write may still land and
    /// then needs them, as after a crash).
    pub(in crate::engine::store) async fn settle_call<T>(
        &self,
        call: CallRefs,
        outcome: Result<T>,
    ) -> Result<T> {
        match &outcome {
            Err(e) if e.kind() == ErrorKind::OutcomeUnknown => {}
            _ => self.release_call(call).await,
        }
        outcome
    }

    /// Ends the call of a referrer whose write does not record its own
    /// entries (a release, a supersession): what makes those live is a
    /// record that the write commits in the referrer's scope, beside
    /// collection, so a collector may judge the referrer's old entry stale
    /// just before the record lands and remove it just after. So once the
    /// write succeeded, the referrer's entries are recorded in jobs in the
    /// blobs' scopes, ordered with collection, and only then do the
    /// call's entries go. If recording them fails, the call's entries stay
    /// (the committed record keeps them live): the outcome is the write's.
    pub(in crate::engine::store) async fn settle_referenced<T>(
        &self,
        call: CallRefs,
        outcome: Result<T>,
    ) -> Result<T> {
        if outcome.is_ok() {
            let entries = call
                .digests
                .iter()
                .map(|digest| (*digest, keys::blob_ref(digest, &call.referrer)));
            if self.record_refs(entries).await.is_err() {
                return outcome;
            }
        }
        self.settle_call(call, outcome).await
    }

    /// Writes each `(digest, key)` reference entry as of now, each in a job
    /// in the blob's scope. Every job runs to its end, so on an error some
    /// entries may be written.
    async fn record_refs(
        &self,
        entries: impl IntoIterator<Item = (Digest, Vec<u8>)>,
    ) -> Result<()> {
        let written = join_all(entries.into_iter().map(|(digest, key)| {
            self.write(blob_scope(&digest), move |shared, txn| {
                let now = shared.now().as_millis().to_be_bytes().to_vec();
                txn.put(Table::BlobRefs, key.clone(), now)
            })
        }))
        .await;
        written.into_iter().collect()
    }
}
