//! Parsing `file:` store URLs into a directory and [`FileOptions`].

use std::path::PathBuf;

use stowage_core::{Error, Result};

use super::FileOptions;
use crate::kv::options::KvUrl;

/// The options only the file engine has; the rest (directory, `durability`,
/// `max_blob_size`) are parsed by [`KvUrl`] like every embedded backend's.
const OWN: [&str; 4] = [
    "segment_size",
    "max_record_size",
    "checkpoint_interval",
    "salvage",
];

/// The directory, options and largest blob named by `url`.
///
/// `file:///abs/dir` names an absolute directory. The `url` crate turns
/// `file:rel/dir` into `file:///rel/dir` before we see it, so relative
/// directories need support in `open()` (see `docs/file-engine.md`).
///
/// # Errors
/// `InvalidInput` for a host, an empty path, or an unknown or malformed
/// option.
pub(crate) fn parse(url: &url::Url) -> Result<(PathBuf, FileOptions, u64)> {
    let bad = |why: String| Error::invalid_input(format!("file store URL {url}: {why}"));
    let mut shared = url.clone();
    let (own, rest): (Vec<_>, Vec<_>) = url
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .partition(|(k, _)| OWN.contains(&k.as_str()));
    if rest.is_empty() {
        shared.set_query(None);
    } else {
        shared.query_pairs_mut().clear().extend_pairs(rest);
    }
    let common = KvUrl::parse(&shared)?;
    let mut opts = FileOptions {
        durability: common.durability,
        read_only: common.read_only,
        ..FileOptions::default()
    };
    for (k, v) in own {
        let num = || {
            v.parse::<u64>()
                .map_err(|_| bad(format!("option {k}={v} is not a whole number")))
        };
        match k.as_str() {
            "segment_size" => opts.segment_size = num()?,
            "max_record_size" => {
                opts.max_record_size = usize::try_from(num()?)
                    .map_err(|_| bad(format!("max_record_size={v} is too large")))?
            }
            "checkpoint_interval" => opts.checkpoint_interval = num()?,
            _ => {
                opts.salvage = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad(format!("salvage={v}: expected true or false"))),
                }
            }
        }
    }
    Ok((common.dir, opts, common.max_blob_size))
}
