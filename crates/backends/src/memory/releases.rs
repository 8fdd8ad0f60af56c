//! Named release pointers with append-only histories in memory.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use stowage_core::validate::{self, page_limit};
use stowage_core::{Digest, Error, ReleaseMetadata, ReleaseRecord, ReleaseRegistry, Result};

use super::State;

/// One name's history; index = seq. Empty only between registering a name
/// and its first record (a racing first promote that then fails its
/// precondition): such names are invisible.
type Shared = Arc<Mutex<Vec<ReleaseRecord>>>;

/// Every release name, ascending by UTF-8 bytes. The map lock is
/// write-locked only to add a name; each name has its own mutex.
#[derive(Default)]
pub(crate) struct Releases {
    map: RwLock<BTreeMap<String, Shared>>,
}

impl Releases {
    pub(crate) fn snapshot(&self) -> Self {
        let map = self
            .map
            .read()
            .iter()
            .map(|(name, h)| (name.clone(), Arc::new(Mutex::new(h.lock().clone()))))
            .collect();
        Releases {
            map: RwLock::new(map),
        }
    }

    fn get(&self, name: &str) -> Option<Shared> {
        self.map.read().get(name).cloned()
    }

    fn get_or_insert(&self, name: &str) -> Shared {
        if let Some(h) = self.get(name) {
            return h;
        }
        Arc::clone(self.map.write().entry(name.to_owned()).or_default())
    }
}

fn unknown(name: &str) -> Error {
    Error::not_found(format!(
        "release {:?} has never been promoted",
        validate::preview(name)
    ))
}

/// The [`ReleaseRegistry`] of a memory backend.
pub(crate) struct MemoryReleases(pub(crate) Arc<State>);

impl MemoryReleases {
    /// Appends the restoration of the record `pick` chooses from the history.
    fn restore(
        &self,
        name: &str,
        actor: &str,
        pick: impl FnOnce(&ReleaseRecord) -> Result<u64>,
    ) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        validate::identifier("promoted_by", actor)?;
        let _w = self.0.writing();
        let shared = self.0.releases.get(name).ok_or_else(|| unknown(name))?;
        let mut history = shared.lock();
        let head = history.last().ok_or_else(|| unknown(name))?;
        let seq = pick(head)?;
        let restore = usize::try_from(seq)
            .ok()
            .and_then(|i| history.get(i))
            .ok_or_else(|| {
                Error::not_found(format!(
                    "release {:?} has no record #{seq}",
                    validate::preview(name)
                ))
            })?;
        let record = ReleaseRecord::restoration(head, restore, actor, None, self.0.now())?;
        history.push(record.clone());
        Ok(record)
    }
}

#[async_trait]
impl ReleaseRegistry for MemoryReleases {
    async fn promote(
        &self,
        name: &str,
        spec_digest: Digest,
        metadata: ReleaseMetadata,
        expected_next_seq: Option<u64>,
    ) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        metadata.validate()?;
        let _w = self.0.writing();
        let shared = match self.0.releases.get(name) {
            Some(shared) => shared,
            None => {
                // Check the first promotion before registering the name, so
                // a failing one (a wrong expected_next_seq) changes nothing.
                let now = self.0.now();
                ReleaseRecord::promotion(
                    name,
                    spec_digest,
                    metadata.clone(),
                    None,
                    expected_next_seq,
                    now,
                )?;
                self.0.releases.get_or_insert(name)
            }
        };
        let mut history = shared.lock();
        let record = ReleaseRecord::promotion(
            name,
            spec_digest,
            metadata,
            history.last(),
            expected_next_seq,
            self.0.now(),
        )?;
        history.push(record.clone());
        Ok(record)
    }

    async fn rollback(&self, name: &str, promoted_by: &str) -> Result<ReleaseRecord> {
        self.restore(name, promoted_by, ReleaseRecord::rollback_seq)
    }

    async fn rollback_to(&self, name: &str, seq: u64, promoted_by: &str) -> Result<ReleaseRecord> {
        self.restore(name, promoted_by, |_| Ok(seq))
    }

    async fn current(&self, name: &str) -> Result<ReleaseRecord> {
        validate::identifier("release name", name)?;
        let shared = self.0.releases.get(name).ok_or_else(|| unknown(name))?;
        let current = shared.lock().last().cloned();
        current.ok_or_else(|| unknown(name))
    }

    async fn history(
        &self,
        name: &str,
        before: Option<u64>,
        limit: usize,
    ) -> Result<Vec<ReleaseRecord>> {
        validate::identifier("release name", name)?;
        let Some(shared) = self.0.releases.get(name) else {
            return Ok(Vec::new());
        };
        let history = shared.lock();
        let end = before.map_or(history.len(), |b| {
            usize::try_from(b).map_or(history.len(), |b| b.min(history.len()))
        });
        Ok(history
            .get(..end)
            .unwrap_or(&[])
            .iter()
            .rev()
            .take(page_limit(limit))
            .cloned()
            .collect())
    }

    async fn list_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
        let lower = after.map_or(Bound::Unbounded, Bound::Excluded);
        let limit = page_limit(limit);
        let map = self.0.releases.map.read();
        let mut out = Vec::new();
        for (name, shared) in map.range::<str, _>((lower, Bound::Unbounded)) {
            if out.len() >= limit {
                break;
            }
            if !shared.lock().is_empty() {
                out.push(name.clone());
            }
        }
        Ok(out)
    }
}
