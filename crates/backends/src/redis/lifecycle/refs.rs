//! The blob reference index: one hash per blob, `{P:blob:<hex>}:refs`,
//! field = referrer (`1:<run id>`, `2:<release name>`, `3:<target hex>`,
//! `4:<pin label>`, so bytewise field order is the engine's index order),
//! value = when it was recorded (ms, decimal). It shares the blob's hash
//! tag, so recording a reference, a `put` refreshing the blob and
//! collecting it are ordered on one slot, on a single node and a cluster.
//!
//! A reference is recorded before the write that makes it (creating a
//! run, finishing one with `RunSummary::blobs`, promoting, forking a
//! release, putting a supersession), as the engine does: the entity's keys
//! are in another slot, so one script cannot do both on a cluster.

use std::sync::Arc;

use futures::future::try_join_all;
use stowage_core::lifecycle::Referrer;
use stowage_core::validate::{self, MAX_PAGE};
use stowage_core::{Digest, Error, Result, RunId};

use super::super::conn::{bytes, items, status, unexpected, Op};
use super::super::Shared;

/// Fields read per `HSCAN` call.
const SCAN_PAGE: usize = 256;

/// The hash field of `referrer`.
pub(crate) fn field(referrer: &Referrer) -> String {
    match referrer {
        Referrer::Run(id) => format!("1:{id}"),
        Referrer::Release(name) => format!("2:{name}"),
        Referrer::Supersession(target) => format!("3:{target}"),
        Referrer::Pin(label) => format!("4:{label}"),
        // `Referrer` is non-exhaustive; a new kind needs a tag here.
        other => format!("9:{other:?}"),
    }
}

/// The referrer a hash field names.
///
/// # Errors
/// `Corrupted` for a malformed field.
pub(crate) fn referrer_of(field: &[u8]) -> Result<Referrer> {
    let damaged = || {
        Error::corrupted(format!(
            "a blob reference field {:?} is malformed",
            String::from_utf8_lossy(field)
        ))
    };
    let text = std::str::from_utf8(field).map_err(|_| damaged())?;
    let (tag, id) = text.split_once(':').ok_or_else(damaged)?;
    match tag {
        "1" => id
            .parse::<RunId>()
            .map(Referrer::Run)
            .map_err(|_| damaged()),
        "2" => Ok(Referrer::Release(id.to_owned())),
        "3" => id
            .parse::<Digest>()
            .map(Referrer::Supersession)
            .map_err(|_| damaged()),
        "4" => Ok(Referrer::Pin(id.to_owned())),
        _ => Err(damaged()),
    }
}

/// Records that `referrer` references each of `digests` (one script per
/// distinct blob, concurrently). Call before the write that makes the
/// reference.
///
/// # Errors
/// Connection errors (the referencing write must then not be made).
pub(crate) async fn reference(
    sh: &Shared,
    digests: impl IntoIterator<Item = Digest>,
    referrer: &Referrer,
) -> Result<()> {
    let mut digests: Vec<Digest> = digests.into_iter().collect();
    digests.sort_unstable();
    digests.dedup();
    let field = field(referrer);
    let now = sh.env.clock.now().as_millis().to_string();
    try_join_all(digests.iter().map(|digest| {
        let (field, now) = (&field, &now);
        async move {
            let what = format!("reference blob {}", digest.short());
            let refs = sh.keys.blob_refs(digest);
            sh.conn
                .mutate(
                    &sh.scripts.life.reference,
                    &sh.counted(&[&refs]),
                    &[field.as_bytes(), now.as_bytes()],
                    &what,
                )
                .await
        }
    }))
    .await
    .map(drop)
}

pub(super) async fn pin(sh: &Arc<Shared>, digest: &Digest, label: &str) -> Result<()> {
    validate::identifier("pin label", label)?;
    reference(sh, [*digest], &Referrer::Pin(label.to_owned())).await
}

pub(super) async fn unpin(sh: &Arc<Shared>, digest: &Digest, label: &str) -> Result<bool> {
    validate::identifier("pin label", label)?;
    let what = format!("unpin blob {}", digest.short());
    let refs = sh.keys.blob_refs(digest);
    let field = field(&Referrer::Pin(label.to_owned()));
    let reply = sh
        .conn
        .mutate(
            &sh.scripts.life.unreference,
            &sh.counted(&[&refs]),
            &[field.as_bytes()],
            &what,
        )
        .await?;
    let (word, _) = status(reply, &what)?;
    match word.as_str() {
        "ok" => Ok(true),
        "none" => Ok(false),
        other => Err(unexpected(&what, other)),
    }
}

/// Every entry of the reference hash `refs`: (field, recorded-at text),
/// sorted by field. `HSCAN` is not atomic; callers that act on entries
/// re-check them in a script.
pub(super) async fn entries(
    sh: &Shared,
    refs: &[u8],
    what: &str,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let mut out = Vec::new();
    let mut cursor = String::from("0");
    loop {
        let mut scan = redis::cmd("HSCAN");
        scan.arg(refs).arg(&cursor).arg("COUNT").arg(SCAN_PAGE);
        let mut reply = items(sh.conn.query(&scan, Op::Read, what).await?).into_iter();
        let next = reply
            .next()
            .as_ref()
            .and_then(bytes)
            .map(|b| String::from_utf8_lossy(b).into_owned())
            .ok_or_else(|| unexpected(what, "HSCAN cursor"))?;
        let pairs = reply.next().map(items).unwrap_or_default();
        for pair in pairs.chunks(2) {
            if let (Some(f), Some(v)) = (pair.first().and_then(bytes), pair.get(1).and_then(bytes))
            {
                out.push((f.to_vec(), v.to_vec()));
            }
        }
        if next == "0" {
            break;
        }
        cursor = next;
    }
    // HSCAN may return an entry twice (while the hash is rehashed).
    out.sort();
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(out)
}

pub(super) async fn referrers(sh: &Arc<Shared>, digest: &Digest) -> Result<Vec<Referrer>> {
    let what = format!("referrers of blob {}", digest.short());
    let all = entries(sh, &sh.keys.blob_refs(digest), &what).await?;
    all.iter()
        .take(MAX_PAGE)
        .map(|(f, _)| referrer_of(f))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_round_trip_and_sort_like_the_engine() {
        let all = [
            Referrer::Run("018bcfe5-6800-74c7-8df8-df798675e32e".parse().unwrap()),
            Referrer::Release("r".into()),
            Referrer::Supersession(Digest::of(b"t")),
            Referrer::Pin("keep".into()),
        ];
        let fields: Vec<String> = all.iter().map(field).collect();
        let mut sorted = fields.clone();
        sorted.sort();
        assert_eq!(fields, sorted);
        for (r, f) in all.iter().zip(&fields) {
            assert_eq!(&referrer_of(f.as_bytes()).unwrap(), r);
        }
        assert!(referrer_of(b"7:x").is_err());
    }
}
