//! Parsing `file:` store URLs into a directory and [`FileOptions`].

use std::path::PathBuf;

use stowage_core::Result;

use super::FileOptions;
use crate::kv::options::{bad_value, KvUrl, OptionSpec};

/// The options only the file engine has; the rest (directory, `durability`,
/// `max_blob_size`) are parsed by [`KvUrl`] like every embedded backend's.
const OWN: [OptionSpec; 4] = [
    ("segment_size", "a whole number of bytes, at least 4096"),
    (
        "max_record_size",
        "a whole number of bytes from 1024 to 4294967295",
    ),
    (
        "checkpoint_interval",
        "a whole number of bytes (0: checkpoint only on close)",
    ),
    ("salvage", "true or false"),
];

/// The directory, options and largest blob named by `url`.
///
/// `file:///abs/dir` names an absolute directory. The `url` crate turns
/// `file:rel/dir` into `file:///rel/dir` before we see it, so relative
/// directories need support in `open()` (see `docs/file-engine.md`).
///
/// # Errors
/// `InvalidInput` for a host, an empty path, or an unknown or malformed
/// option, naming the URL (and the option and its allowed values).
pub(crate) fn parse(url: &url::Url) -> Result<(PathBuf, FileOptions, u64)> {
    let (common, own) = KvUrl::parse_with(url, &OWN)?;
    let mut opts = FileOptions {
        durability: common.durability,
        read_only: common.read_only,
        ..FileOptions::default()
    };
    for (k, v) in own {
        let allowed = OWN
            .iter()
            .find(|(name, _)| *name == k)
            .map_or("", |(_, allowed)| *allowed);
        let bad = || bad_value(url, &k, &v, allowed);
        let num = || v.parse::<u64>().map_err(|_| bad());
        match k.as_str() {
            "segment_size" => {
                opts.segment_size = num()?;
                if opts.segment_size < 4096 {
                    return Err(bad());
                }
            }
            "max_record_size" => {
                opts.max_record_size = usize::try_from(num()?)
                    .ok()
                    .filter(|n| (1024..=u32::MAX as usize).contains(n))
                    .ok_or_else(bad)?;
            }
            "checkpoint_interval" => opts.checkpoint_interval = num()?,
            _ => {
                opts.salvage = match v.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad()),
                }
            }
        }
    }
    Ok((common.dir, opts, common.max_blob_size))
}
