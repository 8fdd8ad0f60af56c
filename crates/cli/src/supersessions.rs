//! The one place that enumerates supersessions.
//!
//! Today's `SupersessionStore` can list records only per agent
//! (`by_agent`), so no backend can enumerate all of them. A
//! `SupersessionStore::list(after, limit)` (ascending by target) is being
//! added; once it lands, replace the body of [`list_supersessions`] with
//! `stores.supersessions.list(after, limit).await` and every command —
//! `inspect … supersessions`, `verify`, `stats`, `export`, `migrate` — uses it.

use stowage_core::{Digest, Error, Result, Stores, Supersession};

/// One page of supersession records, ascending by target, strictly after
/// `after`, at most `limit`.
///
/// # Errors
/// `Unsupported` while the store trait has no way to enumerate
/// supersessions (see the module docs).
pub async fn list_supersessions(
    stores: &Stores,
    after: Option<Digest>,
    limit: usize,
) -> Result<Vec<Supersession>> {
    let _ = (after, limit);
    Err(Error::unsupported(format!(
        "the {} backend cannot enumerate supersessions yet (only per agent: use \
         `inspect URL supersessions --agent KEY`); export and migrate need \
         --skip-supersessions until SupersessionStore::list exists",
        stores.capabilities.backend
    )))
}

/// Whether `err` is the "cannot enumerate" answer of [`list_supersessions`].
pub fn cannot_enumerate(err: &Error) -> bool {
    err.kind() == stowage_core::ErrorKind::Unsupported
}
