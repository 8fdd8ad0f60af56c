//! [`Operation`]: a name for every async method of the five store traits.

use std::fmt;

/// One of the five store traits, named like the fields of
/// [`Stores`](stowage_core::Stores).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum StoreKind {
    /// [`CasStore`](stowage_core::CasStore) (`stores.cas`).
    Cas,
    /// [`RunLedger`](stowage_core::RunLedger) (`stores.runs`).
    Runs,
    /// [`ReleaseRegistry`](stowage_core::ReleaseRegistry) (`stores.releases`).
    Releases,
    /// [`SessionStore`](stowage_core::SessionStore) (`stores.sessions`).
    Sessions,
    /// [`SupersessionStore`](stowage_core::SupersessionStore) (`stores.supersessions`).
    Supersessions,
}

impl StoreKind {
    /// The field name in [`Stores`](stowage_core::Stores) (`"cas"`, `"runs"`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            StoreKind::Cas => "cas",
            StoreKind::Runs => "runs",
            StoreKind::Releases => "releases",
            StoreKind::Sessions => "sessions",
            StoreKind::Supersessions => "supersessions",
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
        /// Every async method of the store traits, for fault rules and call
        /// records. Displays as `store.method`, e.g. `"runs.append_event"`.
        ///
        /// Default methods (`complete_run`, `verify_run`, `cas.verify`,
        /// `put_stream`, `resolve`, …) are operations of their own: an
        /// interposed store forwards them to the same method of the wrapped
        /// store, so one call is one operation. The synchronous
        /// `CasStore::max_blob_size` is forwarded untouched and is not an
        /// operation.
        ///
        /// ```
        /// use stowage_fakes::{Operation, StoreKind};
        /// assert_eq!(Operation::RunsAppendEvent.to_string(), "runs.append_event");
        /// assert_eq!(Operation::CasPut.store(), StoreKind::Cas);
        /// assert_eq!(Operation::CasPut.method(), "put");
        /// assert_eq!(Operation::ALL.len(), 41);
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
            pub fn store(self) -> StoreKind {
                match self {
                    $(Operation::$variant => StoreKind::$store,)*
                }
            }

            /// Whether the method may change stored state (`put`, `append_event`,
            /// `delete_session`, …); reads (`get`, `list_runs`, `verify_log`,
            /// …) never do.
            pub fn is_write(self) -> bool {
                match self {
                    $(Operation::$variant => operations!(@write $access),)*
                }
            }

            /// The method name (`"append_event"`).
            pub fn method(self) -> &'static str {
                match self {
                    $(Operation::$variant => $method,)*
                }
            }

            /// `store.method` (`"runs.append_event"`), as displayed.
            pub fn as_str(self) -> &'static str {
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
}

impl Operation {
    /// Position in [`Operation::ALL`] (for per-operation counters).
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which calls a rule applies to: any call, every write or every read,
/// every call to one store, or one operation. An [`Operation`] or a [`StoreKind`] converts into a scope.
///
/// ```
/// use stowage_fakes::{Operation, Scope, StoreKind};
/// assert!(Scope::Any.matches(Operation::CasPut));
/// assert!(Scope::Writes.matches(Operation::SessionsAppendLog));
/// assert!(Scope::Reads.matches(Operation::RunsVerifyRun));
/// assert!(Scope::from(StoreKind::Runs).matches(Operation::RunsGetRun));
/// assert!(!Scope::from(Operation::CasGet).matches(Operation::CasPut));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every operation.
    Any,
    /// Every operation that may change stored state ([`Operation::is_write`]).
    Writes,
    /// Every operation that only reads.
    Reads,
    /// Every operation of one store.
    Store(StoreKind),
    /// One operation.
    Op(Operation),
}

impl Scope {
    /// Whether `op` is in this scope.
    pub fn matches(self, op: Operation) -> bool {
        match self {
            Scope::Any => true,
            Scope::Writes => op.is_write(),
            Scope::Reads => !op.is_write(),
            Scope::Store(store) => op.store() == store,
            Scope::Op(only) => op == only,
        }
    }
}

impl From<Operation> for Scope {
    fn from(op: Operation) -> Self {
        Scope::Op(op)
    }
}

impl From<StoreKind> for Scope {
    fn from(store: StoreKind) -> Self {
        Scope::Store(store)
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Any => f.write_str("any operation"),
            Scope::Writes => f.write_str("any write"),
            Scope::Reads => f.write_str("any read"),
            Scope::Store(store) => write!(f, "{store}.*"),
            Scope::Op(op) => write!(f, "{op}"),
        }
    }
}
