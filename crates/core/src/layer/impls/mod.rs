//! The five store traits over an [`Interposed`](super::Interposed) layer. Every method has the
//! same shape: describe the call (operation, entity, args text, seq,
//! idempotency key), then run it through the interceptor with a closure
//! that starts one run of the same method of the wrapped store. Owned
//! arguments go through [`Reuse`](super::Reuse) so that a retry can run the call again.

mod cas;
mod lifecycle;
mod releases;
mod runs;
mod sessions;
mod supersessions;

use crate::validate::preview;
use crate::Digest;

/// An identifier, quoted and shortened.
fn id(value: &str) -> String {
    format!("{:?}", preview(value))
}

fn opt_id(value: Option<&str>) -> String {
    value.map_or_else(|| "none".to_owned(), id)
}

fn opt_u64(value: Option<u64>) -> String {
    value.map_or_else(|| "none".to_owned(), |v| v.to_string())
}

fn opt_digest(value: Option<&Digest>) -> String {
    value.map_or_else(|| "none".to_owned(), Digest::short)
}
