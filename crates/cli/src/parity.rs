//! Fingerprints of a store's entities, and the parity report between two
//! stores.
//!
//! A fingerprint maps each entity (`blob <digest>`, `run <id>`,
//! `session <id>`, `release <name>`, `supersession <target>`) to what
//! identifies its contents: a blob's size (its key is its digest) and its
//! pins, a run's or session's record digest plus its verified chain length
//! and head, a release name's record count and a digest over all its
//! records, a supersession's record digest. A chain that fails verification
//! fingerprints as its error, so damage shows as a difference. The map
//! holds one short line per entity in memory.

use std::collections::BTreeMap;

use serde::Serialize;
use stowage_core::lifecycle::Referrer;
use stowage_core::{ChainReport, Digest, DigestWriter, Result, RunFilter, Stores};

use crate::export::PAGE;
use crate::format::Coverage;
use crate::supersessions::{cannot_enumerate, list_supersessions};

/// Every entity of a store and what identifies its contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fingerprint {
    /// Entity → contents line, ordered by entity.
    pub entities: BTreeMap<String, String>,
    /// Whether supersessions were enumerated.
    pub supersessions: Coverage,
}

/// One entity that differs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Difference {
    /// The entity (`run 0193…`).
    pub entity: String,
    /// Its line in the source, if it is there.
    pub source: Option<String>,
    /// Its line in the target, if it is there.
    pub target: Option<String>,
}

/// Per-kind entity counts of both sides, and every difference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParityReport {
    /// `(kind, source count, target count)` per kind of entity.
    pub counts: Vec<(String, u64, u64)>,
    /// Entities missing on one side or with different contents.
    pub differences: Vec<Difference>,
    /// Whether supersessions were compared.
    pub supersessions: Coverage,
}

impl ParityReport {
    /// Compares two fingerprints.
    pub fn compare(source: &Fingerprint, target: &Fingerprint) -> ParityReport {
        let kinds = ["blob", "release", "run", "session", "supersession"];
        let count = |f: &Fingerprint, kind: &str| {
            f.entities
                .keys()
                .filter(|k| k.split_once(' ').is_some_and(|(p, _)| p == kind))
                .count() as u64
        };
        let counts = kinds
            .iter()
            .map(|k| (format!("{k}s"), count(source, k), count(target, k)))
            .collect();
        let mut differences = Vec::new();
        let keys: std::collections::BTreeSet<&String> = source
            .entities
            .keys()
            .chain(target.entities.keys())
            .collect();
        for key in keys {
            let (s, t) = (source.entities.get(key), target.entities.get(key));
            if s != t {
                differences.push(Difference {
                    entity: key.clone(),
                    source: s.cloned(),
                    target: t.cloned(),
                });
            }
        }
        let both = source.supersessions == Coverage::Included
            && target.supersessions == Coverage::Included;
        ParityReport {
            counts,
            differences,
            supersessions: if both {
                Coverage::Included
            } else {
                Coverage::Skipped
            },
        }
    }
}

fn record_digest<T: Serialize>(value: &T) -> String {
    let bytes = serde_json::to_vec(value).unwrap_or_default();
    Digest::of(&bytes).to_string()
}

fn chain_line(outcome: Result<ChainReport>) -> String {
    match outcome {
        Ok(r) => format!(
            "chain {} head {}",
            r.len,
            r.head.map_or_else(|| "-".to_owned(), |h| h.to_string())
        ),
        Err(e) => format!("chain error: {}", crate::one_line(&e)),
    }
}

/// A blob's line: its size, and its pins when it has any (an export
/// carries them; a lost pin lets the target's gc delete the blob).
async fn blob_line(stores: &Stores, digest: &Digest, size: u64) -> Result<String> {
    let pins: Vec<String> = stores
        .lifecycle
        .blob_referrers(digest)
        .await?
        .into_iter()
        .filter_map(|r| match r {
            Referrer::Pin(label) => Some(label),
            _ => None,
        })
        .collect();
    Ok(if pins.is_empty() {
        format!("size {size}")
    } else {
        format!("size {size} pins {pins:?}")
    })
}

/// Fingerprints every entity of `stores`.
///
/// # Errors
/// Store errors from listing (a damaged chain is not one: it shows in the
/// fingerprint).
pub async fn fingerprint(stores: &Stores) -> Result<Fingerprint> {
    let mut map = BTreeMap::new();
    let mut after: Option<Digest> = None;
    loop {
        let page = stores.cas.list(after.as_ref(), PAGE).await?;
        let Some(last) = page.last().copied() else {
            break;
        };
        for d in page {
            let size = stores.cas.stat(&d).await?.size;
            map.insert(format!("blob {d}"), blob_line(stores, &d, size).await?);
        }
        after = Some(last);
    }
    let mut after = None;
    loop {
        let page = stores
            .runs
            .list_runs(&RunFilter::default(), after, PAGE)
            .await?;
        let Some(last) = page.last().map(|r| r.id) else {
            break;
        };
        for run in page {
            let chain = chain_line(stores.runs.verify_run(run.id).await);
            let record = stores.runs.get_run(run.id).await?;
            map.insert(
                format!("run {}", run.id),
                format!("record {} {chain}", record_digest(&record)),
            );
        }
        after = Some(last);
    }
    let mut after: Option<String> = None;
    loop {
        let page = stores
            .sessions
            .list_sessions(after.as_deref(), PAGE)
            .await?;
        let Some(last) = page.last().map(|s| s.id.clone()) else {
            break;
        };
        for session in page {
            let chain = chain_line(stores.sessions.verify_log(&session.id).await);
            map.insert(
                format!("session {:?}", session.id),
                format!("record {} {chain}", record_digest(&session)),
            );
        }
        after = Some(last);
    }
    let mut after: Option<String> = None;
    loop {
        let names = stores.releases.list_names(after.as_deref(), PAGE).await?;
        let Some(last) = names.last().cloned() else {
            break;
        };
        for name in names {
            let mut hasher = DigestWriter::new();
            let mut n = 0u64;
            let mut before = None;
            loop {
                let page = stores.releases.history(&name, before, PAGE).await?;
                let Some(seq) = page.last().map(|r| r.seq) else {
                    break;
                };
                for r in &page {
                    hasher.update(&serde_json::to_vec(r).unwrap_or_default());
                    hasher.update(b"\n");
                    n += 1;
                }
                if seq == 0 {
                    break;
                }
                before = Some(seq);
            }
            map.insert(
                format!("release {name:?}"),
                format!("records {n} digest {}", hasher.finish()),
            );
        }
        after = Some(last);
    }
    let mut coverage = Coverage::Included;
    let mut after = None;
    loop {
        let page = match list_supersessions(stores, after, PAGE).await {
            Ok(page) => page,
            Err(e) if cannot_enumerate(&e) => {
                coverage = Coverage::Skipped;
                break;
            }
            Err(e) => return Err(e),
        };
        let Some(last) = page.last().map(|s| s.target) else {
            break;
        };
        for s in page {
            map.insert(
                format!("supersession {}", s.target),
                format!("record {}", record_digest(&s)),
            );
        }
        after = Some(last);
    }
    Ok(Fingerprint {
        entities: map,
        supersessions: coverage,
    })
}
