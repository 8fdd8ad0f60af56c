//! [`Call`]: what an interceptor learns about one call, and [`Entity`]: the
//! entity it names.

use std::fmt;

use crate::{AgentKey, Digest, RunId};

use super::Operation;

/// The entity a call names, when it names one (list calls do not).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Entity {
    /// A blob, by digest (`cas.*`).
    Blob(Digest),
    /// A run (`runs.*`).
    Run(RunId),
    /// A release name (`releases.*`).
    Release(String),
    /// A session (`sessions.*`).
    Session(String),
    /// An assertion: the target of a supersession, or the hash resolved.
    Assertion(Digest),
    /// An agent (`supersessions.by_agent`).
    Agent(AgentKey),
}

impl Entity {
    /// What kind of entity it is: `"blob"`, `"run"`, `"release"`,
    /// `"session"`, `"assertion"` or `"agent"`.
    pub fn kind(&self) -> &'static str {
        match self {
            Entity::Blob(_) => "blob",
            Entity::Run(_) => "run",
            Entity::Release(_) => "release",
            Entity::Session(_) => "session",
            Entity::Assertion(_) => "assertion",
            Entity::Agent(_) => "agent",
        }
    }
}

impl fmt::Display for Entity {
    /// The identifier alone: a digest or agent key in hex, a run id, a
    /// name as given.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Blob(d) | Entity::Assertion(d) => fmt::Display::fmt(d, f),
            Entity::Run(run) => fmt::Display::fmt(run, f),
            Entity::Release(name) | Entity::Session(name) => f.write_str(name),
            Entity::Agent(key) => fmt::Display::fmt(key, f),
        }
    }
}

/// One call passing through an interposed store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Call {
    /// Which trait method was called.
    pub op: Operation,
    /// The wrapped backend's name ([`Capabilities::backend`](crate::Capabilities::backend)).
    pub backend: &'static str,
    /// The entity the call names, if any.
    pub entity: Option<Entity>,
    /// The sequence number the arguments name, if any: the seq of
    /// `rollback_to`, an event's `expected_seq`, a promote's
    /// `expected_current_seq`, a `replace_log`'s `expected_next_seq`.
    /// The seq a write was given is in its reply ([`Proceed::seq`](super::Proceed::seq)).
    pub seq: Option<u64>,
    /// Whether the call carries an idempotency key (an event or a log
    /// entry appended with one).
    pub idempotency_key: bool,
    /// Whether the call can run more than once ([`Proceed::attempt`](super::Proceed::attempt)):
    /// every call but `cas.put_stream`, whose reader is consumed by its
    /// first run.
    pub repeatable: bool,
    /// A short description of the key arguments (`"run 0193…, kind \"step\""`);
    /// empty unless the interceptor [wants it](super::Interceptor::wants_args).
    pub args: String,
}

impl Call {
    pub(super) fn new(
        op: Operation,
        backend: &'static str,
        entity: Option<Entity>,
        args: String,
    ) -> Self {
        Call {
            op,
            backend,
            entity,
            seq: None,
            idempotency_key: false,
            repeatable: op != Operation::CasPutStream,
            args,
        }
    }

    pub(super) fn seq(mut self, seq: Option<u64>) -> Self {
        self.seq = seq;
        self
    }

    pub(super) fn keyed(mut self, has_key: bool) -> Self {
        self.idempotency_key = has_key;
        self
    }

    /// Whether running the call again after an unknown outcome
    /// ([`ErrorKind::OutcomeUnknown`](crate::ErrorKind::OutcomeUnknown))
    /// cannot apply it twice: its operation [is idempotent](Operation::is_idempotent)
    /// (reads, `cas.put`, `supersessions.put`), or it is an append that
    /// carries an idempotency key (the store answers the original entry
    /// instead of appending it again).
    pub fn safe_to_repeat(&self) -> bool {
        self.op.is_idempotent()
            || (self.idempotency_key
                && matches!(
                    self.op,
                    Operation::RunsAppendEvent | Operation::SessionsAppendLog
                ))
    }
}
