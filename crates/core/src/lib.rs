//! # stowage-core
//!
//! The contract of stowage: the five store traits ([`CasStore`],
//! [`RunLedger`], [`ReleaseRegistry`], [`SessionStore`],
//! [`SupersessionStore`]), their types, the one [`Error`], and every rule
//! that does not depend on storage — validation ([`validate`]), canonical
//! encodings ([`encoding`]), the event hash chain ([`chain`]), state
//! machines and Ed25519 signatures — written once so that backends cannot
//! drift.
//!
//! This crate never depends on a backend. Backends live in
//! `stowage-backends`; the conformance suite in `stowage-conformance`.

pub mod cas;
pub mod chain;
mod digest;
pub mod encoding;
pub mod engine;
mod error;
mod ids;
pub mod layer;
pub mod lifecycle;
mod log_entry;
pub mod release;
pub mod run;
mod run_event;
pub mod session;
mod stores;
pub mod supersession;
mod time;
pub mod validate;

pub use cas::{BlobReader, BlobStat, BlobStream, CasStore};
pub use chain::ChainReport;
pub use digest::{Digest, DigestWriter};
pub use error::{Error, ErrorKind, Result};
pub use ids::{IdGenerator, RandomIds, RunId};
pub use lifecycle::Lifecycle;
pub use release::{ReleaseMetadata, ReleaseRecord, ReleaseRegistry};
pub use run::{NewEvent, Run, RunEvent, RunFilter, RunLedger, RunMetadata, RunStatus, RunSummary};
pub use session::{LogEntry, LogKind, NewLogEntry, Session, SessionState, SessionStore};
pub use stores::{Capabilities, Close, Durability, DurabilityLevel, StoreEnv, Stores};
pub use supersession::{
    AgentKey, PutOutcome, Resolution, Signature, SigningKey, Supersession, SupersessionCursor,
    SupersessionDraft, SupersessionKind, SupersessionStore,
};
pub use time::{Clock, Hlc, SystemClock, Timestamp};

#[cfg(test)]
mod send_sync {
    use super::*;
    fn assert_send_sync<T: Send + Sync>() {}
    #[test]
    fn public_types_are_send_and_sync() {
        assert_send_sync::<Error>();
        assert_send_sync::<Stores>();
        assert_send_sync::<std::sync::Arc<dyn RunLedger>>();
        assert_send_sync::<Supersession>();
    }
}
