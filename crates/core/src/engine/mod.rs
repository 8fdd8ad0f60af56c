//! The engine seam: what a backend supplies so that every store rule runs
//! over it, written once here.
//!
//! A backend implements [`Engine`] — consistent reads, and write jobs run
//! as transactions serialized by [`Scope`] — over an ordered byte
//! key-value model split into [`Table`]s. Everything else lives in core,
//! once: key layout, the order of checks of every mutation (validate →
//! idempotency → state → sequence and hash chain → write), record
//! construction, paging, chunked blobs. [`stores`] turns an engine into
//! the five store traits. This is the split OpenDAL makes between its
//! public `Operator` and a backend's small `Accessor`: backends supply
//! storage primitives, not rules, so they cannot drift.
//!
//! # The contract an engine keeps
//!
//! * **Reads are consistent.** A [`ReadJob`] sees one point in time;
//!   everything a write job reads comes from a state no overlapping write
//!   job changes until it is done. An engine without snapshots (the
//!   embedded key-value engines of `stowage-backends`) must at least show
//!   every single read whole write batches; the rules then tolerate what
//!   such a job can see (an entity deleted or a log extended between two
//!   reads), and the engine runs a job that reported `Corrupted` again
//!   before returning it, since a state that never existed looks like
//!   damage.
//! * **Writes are atomic and serialized by scope.** A [`WriteJob`] stages
//!   writes through [`Txn`]; when it returns `Ok` the engine applies all of
//!   them or none. Two write jobs whose [`Scope`]s overlap never interleave:
//!   the later one reads everything the earlier one wrote. An engine
//!   shared between processes ([`Capabilities::shared`](crate::Capabilities::shared))
//!   keeps this across processes (SQLite: `BEGIN IMMEDIATE`).
//! * **Applied before durable, acknowledged after.** [`Engine::write`]
//!   returns once the writes are visible to later reads, with a
//!   [`Durable`] that resolves once they are durable at the engine's
//!   declared [`DurabilityLevel`](crate::DurabilityLevel). Stores await it
//!   before answering, so an engine may group many writes into one sync
//!   (group commit); an engine may as well answer only once durable,
//!   with a ready `Durable`. The `Durable` of a job also covers what the
//!   job read that was not yet durable. A write no caller waits for goes
//!   through [`Engine::write_eventually_durable`].
//! * **Jobs run to completion.** Once `write` was called, the job runs to
//!   the end, or not at all, even if the caller's future is dropped.
//! * **Errors mean what they say.** A job's own error is returned as is and
//!   nothing is applied; `Unavailable` means nothing was applied;
//!   `OutcomeUnknown` means the writes may have been applied. Library
//!   errors are mapped into [`Error`](crate::Error) with their source.
//! * **Any method may be called from any number of tasks at once.**
//!   Blocking engines run jobs off the async runtime (`spawn_blocking`, a
//!   dedicated thread); an engine never needs its caller to lock.
//!
//! The conformance suite (`stowage-conformance`) checks all of it through
//! the stores: `stowage_conformance::conformance_tests!` over a harness
//! whose `open` returns `stowage_core::engine::stores(engine, env)`.
//!
//! # Stability
//!
//! The seam follows the crate's semver: methods are added only with
//! defaults, and [`Table`] and [`Scope`] are `#[non_exhaustive]`, so an
//! engine must store every table alike and treat an unknown scope as
//! serializing against everything. Key and value bytes are opaque to
//! engines; their layout belongs to core and changes only with a
//! documented format version.
//!
//! # A whole engine
//!
//! The simplest correct engine serializes every write behind one lock.
//! (The `memory://` backend is this, with a snapshot `fork`.)
//!
//! ```
//! use std::collections::BTreeMap;
//! use std::ops::Bound;
//! use std::sync::{Arc, RwLock};
//!
//! use async_trait::async_trait;
//! use stowage_core::engine::{
//!     Direction, Durable, Engine, Entry, ReadJob, Reader, Scope, Staging, Table, Write,
//!     WriteJob,
//! };
//! use stowage_core::{Capabilities, DurabilityLevel, Error, Result, StoreEnv};
//!
//! type Tables = BTreeMap<(Table, Vec<u8>), Vec<u8>>;
//!
//! #[derive(Default)]
//! struct MapEngine(RwLock<Tables>);
//!
//! struct View<'a>(&'a Tables);
//!
//! impl Reader for View<'_> {
//!     fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
//!         Ok(self.0.get(&(table, key.to_vec())).cloned())
//!     }
//!     fn scan(&self, table: Table, start: &[u8], end: Option<&[u8]>,
//!             direction: Direction, limit: usize) -> Result<Vec<Entry>> {
//!         if end.is_some_and(|end| end <= start) {
//!             return Ok(Vec::new());
//!         }
//!         let upper = match end {
//!             Some(end) => Bound::Excluded((table, end.to_vec())),
//!             None => Bound::Excluded((table, vec![0xFF; 1024])),
//!         };
//!         let range = self.0.range((Bound::Included((table, start.to_vec())), upper));
//!         let entry = |((_, k), v): (&(Table, Vec<u8>), &Vec<u8>)| (k.clone(), v.clone());
//!         Ok(match direction {
//!             Direction::Forward => range.take(limit).map(entry).collect(),
//!             Direction::Reverse => range.rev().take(limit).map(entry).collect(),
//!         })
//!     }
//! }
//!
//! #[async_trait]
//! impl Engine for MapEngine {
//!     fn capabilities(&self) -> Capabilities {
//!         Capabilities::new("map", DurabilityLevel::None, false, 1 << 20)
//!     }
//!     async fn read(&self, mut job: ReadJob) -> Result<()> {
//!         let tables = self.0.read().map_err(|_| Error::internal("poisoned"))?;
//!         job(&View(&tables))
//!     }
//!     async fn write(&self, _scope: Scope, mut job: WriteJob) -> Result<Durable> {
//!         let mut tables = self.0.write().map_err(|_| Error::internal("poisoned"))?;
//!         // Reads go to the map; writes are staged and applied in order.
//!         let view = View(&tables);
//!         let mut staged = Staging::new(&view);
//!         job(&mut staged)?;
//!         for write in staged.into_writes() {
//!             match write {
//!                 Write::Put { table, key, value } => {
//!                     tables.insert((table, key), value);
//!                 }
//!                 Write::Delete { table, key } => {
//!                     tables.remove(&(table, key));
//!                 }
//!                 Write::DeleteRange { table, start, end } => {
//!                     tables.retain(|(t, k), _| *t != table || *k < start || *k >= end);
//!                 }
//!                 other => return Err(Error::unsupported(format!("{other:?}"))),
//!             }
//!         }
//!         Ok(Durable::ready())
//!     }
//! }
//!
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! let stores = stowage_core::engine::stores(Arc::new(MapEngine::default()), StoreEnv::default());
//! let digest = stores.cas.put(bytes::Bytes::from_static(b"hello")).await.unwrap();
//! assert_eq!(&stores.cas.get(&digest).await.unwrap()[..], b"hello");
//! # });
//! ```
//!
//! Such an engine passes the whole conformance suite in one line of a test
//! file (`stowage_conformance::conformance_tests!(harness)`), as the
//! workspace's own engines do.

mod keys;
mod memory;
mod seam;
mod staging;
mod store;
pub mod tamper;

pub use memory::MemoryEngine;
pub use seam::{
    measure_by_scan, Direction, Durable, Engine, Entry, RangeSize, ReadJob, Reader, Scope, Table,
    Txn, Visit, WriteJob,
};
pub use staging::{Staging, Write};
pub use store::{stores, StoreCache};
