//! The one place that enumerates supersessions: ascending by target,
//! through `SupersessionStore::list`.

use stowage_core::{Digest, Error, Result, Stores, Supersession};

/// One page of supersession records, ascending by target, strictly after
/// `after`, at most `limit`.
///
/// # Errors
/// As `SupersessionStore::list`.
pub async fn list_supersessions(
    stores: &Stores,
    after: Option<Digest>,
    limit: usize,
) -> Result<Vec<Supersession>> {
    stores.supersessions.list(after, limit).await
}

/// Whether `err` says the store cannot enumerate supersessions (a
/// third-party backend whose `list` is `Unsupported`).
pub fn cannot_enumerate(err: &Error) -> bool {
    err.kind() == stowage_core::ErrorKind::Unsupported
}
