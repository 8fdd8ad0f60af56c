//! [`Operation`]: a name for every async method of the five store traits,
//! and [`StoreKind`]: the trait it belongs to.

use std::fmt;

/// One of the five store traits, named like the fields of
/// [`Stores`](crate::Stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreKind {
    /// [`CasStore`](crate::CasStore) (`stores.cas`).
    Cas,
    /// [`RunLedger`](crate::RunLedger) (`stores.runs`).
    Runs,
    /// [`ReleaseRegistry`](crate::ReleaseRegistry) (`stores.releases`).
    Releases,
    /// [`SessionStore`](crate::SessionStore) (`stores.sessions`).
    Sessions,
    /// [`SupersessionStore`](crate::SupersessionStore) (`stores.supersessions`).
    Supersessions,
    /// [`Lifecycle`](crate::Lifecycle) (`stores.lifecycle`).
    Lifecycle,
}

impl StoreKind {
    /// The field name in [`Stores`](crate::Stores) (`"cas"`, `"runs"`, …).
    pub const fn as_str(self) -> &'static str {
        match self {
            StoreKind::Cas => "cas",
            StoreKind::Runs => "runs",
            StoreKind::Releases => "releases",
            StoreKind::Sessions => "sessions",
            StoreKind::Supersessions => "supersessions",
            StoreKind::Lifecycle => "lifecycle",
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! operations {
    ($($variant:ident => $store:ident, $method:literal, $access:ident;)*) => {
        /// Every async method of the store traits, as seen by an
        /// [`Interceptor`](crate::layer::Interceptor): for span names, metric
        /// labels, fault rules and call records. Displays as `store.method`,
        /// e.g. `"runs.append_event"`.
        ///
        /// Default methods (`complete_run`, `verify_run`, `cas.verify`,
        /// `put_stream`, `resolve`, …) are operations of their own: an
        /// interposed store forwards them to the same method of the wrapped
        /// store, so one call is one operation. The synchronous
        /// `CasStore::max_blob_size` is forwarded untouched and is not an
        /// operation.
        ///
        /// ```
        /// use stowage_core::layer::{Operation, StoreKind};
        /// assert_eq!(Operation::RunsAppendEvent.to_string(), "runs.append_event");
        /// assert_eq!(Operation::CasPut.store(), StoreKind::Cas);
        /// assert_eq!(Operation::CasPut.method(), "put");
        /// assert_eq!(Operation::ALL.len(), 53);
        /// ```
        ///
        /// Non-exhaustive: new store methods add operations.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        #[non_exhaustive]
        pub enum Operation {
            $(
                #[doc = concat!("`", stringify!($store), ".", $method, "`")]
                $variant,
            )*
        }

        impl Operation {
            /// Every operation, grouped by store in trait declaration order.
            pub const ALL: [Operation; operations!(@count $($variant)*)] = [$(Operation::$variant,)*];

            /// The store trait the method belongs to.
            pub const fn store(self) -> StoreKind {
                match self {
                    $(Operation::$variant => StoreKind::$store,)*
                }
            }

            /// Whether the method may change stored state (`put`, `append_event`,
            /// `delete_session`, …); reads (`get`, `list_runs`, `verify_log`,
            /// …) never do.
            pub const fn is_write(self) -> bool {
                match self {
                    $(Operation::$variant => operations!(@write $access),)*
                }
            }

            /// The method name (`"append_event"`).
            pub const fn method(self) -> &'static str {
                match self {
                    $(Operation::$variant => $method,)*
                }
            }

            /// `store.method` (`"runs.append_event"`), as displayed.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Operation::$variant => {
                        operations!(@name $store, $method)
                    })*
                }
            }
        }
    };
    (@write write) => { true };
    (@write read) => { false };
    (@count) => { 0 };
    (@count $head:ident $($tail:ident)*) => { 1 + operations!(@count $($tail)*) };
    (@name Cas, $method:literal) => { concat!("cas.", $method) };
    (@name Runs, $method:literal) => { concat!("runs.", $method) };
    (@name Releases, $method:literal) => { concat!("releases.", $method) };
    (@name Sessions, $method:literal) => { concat!("sessions.", $method) };
    (@name Supersessions, $method:literal) => { concat!("supersessions.", $method) };
    (@name Lifecycle, $method:literal) => { concat!("lifecycle.", $method) };
}

operations! {
    CasPut => Cas, "put", write;
    CasGet => Cas, "get", read;
    CasContains => Cas, "contains", read;
    CasStat => Cas, "stat", read;
    CasDelete => Cas, "delete", write;
    CasList => Cas, "list", read;
    CasVerify => Cas, "verify", read;
    CasPutStream => Cas, "put_stream", write;
    CasGetStream => Cas, "get_stream", read;
    RunsCreateRun => Runs, "create_run", write;
    RunsAppendEvent => Runs, "append_event", write;
    RunsCompleteRun => Runs, "complete_run", write;
    RunsFailRun => Runs, "fail_run", write;
    RunsCancelRun => Runs, "cancel_run", write;
    RunsFinishRun => Runs, "finish_run", write;
    RunsGetRun => Runs, "get_run", read;
    RunsReadEvents => Runs, "read_events", read;
    RunsListRuns => Runs, "list_runs", read;
    RunsVerifyRun => Runs, "verify_run", read;
    ReleasesPromote => Releases, "promote", write;
    ReleasesRollback => Releases, "rollback", write;
    ReleasesRollbackTo => Releases, "rollback_to", write;
    ReleasesCurrent => Releases, "current", read;
    ReleasesHistory => Releases, "history", read;
    ReleasesListNames => Releases, "list_names", read;
    SessionsCreateSession => Sessions, "create_session", write;
    SessionsLoadSession => Sessions, "load_session", read;
    SessionsSaveSession => Sessions, "save_session", write;
    SessionsSetSessionState => Sessions, "set_session_state", write;
    SessionsListSessions => Sessions, "list_sessions", read;
    SessionsDeleteSession => Sessions, "delete_session", write;
    SessionsAppendLog => Sessions, "append_log", write;
    SessionsReadLog => Sessions, "read_log", read;
    SessionsReplaceLog => Sessions, "replace_log", write;
    SessionsVerifyLog => Sessions, "verify_log", read;
    SupersessionsPut => Supersessions, "put", write;
    SupersessionsGet => Supersessions, "get", read;
    SupersessionsIsSuperseded => Supersessions, "is_superseded", read;
    SupersessionsByAgent => Supersessions, "by_agent", read;
    SupersessionsList => Supersessions, "list", read;
    SupersessionsResolve => Supersessions, "resolve", read;
    LifecycleDeleteRun => Lifecycle, "delete_run", write;
    LifecyclePruneRuns => Lifecycle, "prune_runs", write;
    LifecycleExpireSessions => Lifecycle, "expire_sessions", write;
    LifecyclePruneSessions => Lifecycle, "prune_sessions", write;
    LifecyclePinBlob => Lifecycle, "pin_blob", write;
    LifecycleUnpinBlob => Lifecycle, "unpin_blob", write;
    LifecycleBlobReferrers => Lifecycle, "blob_referrers", read;
    LifecycleGcBlobs => Lifecycle, "gc_blobs", write;
    LifecycleForkSession => Lifecycle, "fork_session", write;
    LifecycleForkRelease => Lifecycle, "fork_release", write;
    LifecycleStats => Lifecycle, "stats", read;
    LifecycleCompact => Lifecycle, "compact", write;
}

impl Operation {
    /// Position in [`Operation::ALL`] (for per-operation counters).
    pub const fn index(self) -> usize {
        self as usize
    }

    /// Whether running the method again after an unknown outcome
    /// ([`ErrorKind::OutcomeUnknown`](crate::ErrorKind::OutcomeUnknown))
    /// cannot apply it twice, whatever its arguments:
    ///
    /// - every read (it changes nothing);
    /// - `cas.put` and `cas.put_stream`: blobs are content-addressed, and
    ///   storing the same bytes again stores nothing new and answers the
    ///   same digest;
    /// - `supersessions.put`: the identical record again answers
    ///   [`PutOutcome::AlreadyPresent`](crate::PutOutcome::AlreadyPresent)
    ///   and changes nothing (so after a retry, `AlreadyPresent` may mean
    ///   that this call's own first attempt stored it);
    /// - `lifecycle.pin_blob` and `lifecycle.compact`: running them again
    ///   changes nothing more and answers the same.
    ///
    /// Not the other lifecycle writes: `delete_run`, `unpin_blob` and the
    /// sweeps would change nothing more either, but their answer reports
    /// what *this* call removed, and a second run after an applied first
    /// one answers "nothing was there" (`Ok(false)`, a sweep of 0): a
    /// wrong answer in place of an honest `OutcomeUnknown`. Forks fail
    /// `AlreadyExists` against their own copy.
    ///
    /// Appends are safe to repeat only with an idempotency key: see
    /// [`Call::safe_to_repeat`](crate::layer::Call::safe_to_repeat).
    pub const fn is_idempotent(self) -> bool {
        !self.is_write()
            || matches!(
                self,
                Operation::CasPut
                    | Operation::CasPutStream
                    | Operation::SupersessionsPut
                    | Operation::LifecyclePinBlob
                    | Operation::LifecycleCompact
            )
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
