//! `stowage gc`, `stowage pin`, `stowage unpin`, `stowage referrers`.

use std::io::Write;

use serde_json::json;
use stowage_core::lifecycle::{BlobGc, Referrer};
use stowage_core::{Digest, Error, ErrorKind, Result};

use super::{print_totals, sweep, Names, Removed};
use crate::args::{GcArgs, PinArgs, ReferrersArgs};
use crate::table::Table;
use crate::{json_line, open, open_read_only, stdout_failed, Outcome};

/// Runs `stowage gc`.
pub(crate) async fn gc(args: GcArgs) -> Result<Outcome> {
    const NAMES: Names = Names {
        doing: "collecting blobs",
        entities: "blobs",
        verb: "deleted",
        removed: Removed::Bytes,
    };
    let stores = open(&args.url).await?;
    let policy = BlobGc::grace(args.grace).batch(args.sweep.batch);
    let lifecycle = &stores.lifecycle;
    let totals = sweep(&args.sweep, &NAMES, async |after: Option<Digest>| {
        lifecycle.gc_blobs(&policy, after.as_ref()).await
    })
    .await?;
    print_totals(args.sweep.json, &NAMES, totals)?;
    Ok(Outcome::Clean)
}

/// Runs `stowage pin`.
pub(crate) async fn pin(args: PinArgs) -> Result<Outcome> {
    let stores = open(&args.url).await?;
    stores.lifecycle.pin_blob(&args.digest, &args.label).await?;
    let absent = match stores.cas.stat(&args.digest).await {
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::NotFound => true,
        Err(e) => return Err(e),
    };
    let note = if absent {
        " (the store does not hold this blob yet; the pin keeps it once put)"
    } else {
        ""
    };
    let mut out = std::io::stdout().lock();
    writeln!(out, "pinned {} as {:?}{note}", args.digest, args.label).map_err(stdout_failed)?;
    Ok(Outcome::Clean)
}

/// Runs `stowage unpin`: a pin that is not there is a `not_found` error,
/// so a mistyped label does not pass for success.
pub(crate) async fn unpin(args: PinArgs) -> Result<Outcome> {
    let stores = open(&args.url).await?;
    if !stores
        .lifecycle
        .unpin_blob(&args.digest, &args.label)
        .await?
    {
        return Err(Error::not_found(format!(
            "blob {} has no pin {:?}",
            args.digest, args.label
        )));
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "unpinned {} ({:?})", args.digest, args.label).map_err(stdout_failed)?;
    Ok(Outcome::Clean)
}

/// `(kind, what)`: `("run", "0193…")`, `("pin", "golden")`.
fn describe(referrer: &Referrer) -> (&'static str, String) {
    match referrer {
        Referrer::Run(id) => ("run", id.to_string()),
        Referrer::Release(name) => ("release", name.clone()),
        Referrer::Supersession(target) => ("supersession", target.to_string()),
        Referrer::Pin(label) => ("pin", label.clone()),
        other => ("other", format!("{other:?}")),
    }
}

/// Runs `stowage referrers`.
pub(crate) async fn referrers(args: ReferrersArgs) -> Result<Outcome> {
    let stores = open_read_only(&args.url).await?;
    let referrers = stores.lifecycle.blob_referrers(&args.digest).await?;
    let mut out = std::io::stdout().lock();
    if args.json {
        for r in &referrers {
            let (kind, id) = describe(r);
            json_line(&mut out, &json!({ "kind": kind, "id": id }))?;
        }
    } else if referrers.is_empty() {
        writeln!(out, "(no referrers)").map_err(stdout_failed)?;
    } else {
        let mut t = Table::new(&["KIND", "REFERRER"]);
        for r in &referrers {
            let (kind, id) = describe(r);
            t.row(vec![kind.into(), id]);
        }
        out.write_all(t.render().as_bytes())
            .map_err(stdout_failed)?;
    }
    out.flush().map_err(stdout_failed)?;
    Ok(Outcome::Clean)
}
