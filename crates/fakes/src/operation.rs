//! [`Scope`]: which calls a fault rule or a call-log query applies to.
//! [`Operation`] and [`StoreKind`] live in
//! [`stowage_core::layer`] and are re-exported here.

use std::fmt;

pub use stowage_core::layer::{Operation, StoreKind};

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
