//! What the group-committing engines (SQLite, PostgreSQL) share: how the
//! jobs of one group get their answers once the group's transaction ended.

use stowage_core::{Error, Result};
use tokio::sync::oneshot;

/// Where one job's answer goes.
pub(crate) type Reply = oneshot::Sender<Result<()>>;

/// What became of one job of a group.
pub(crate) enum Outcome {
    /// The job's writes are in the group's transaction.
    Staged(Reply),
    /// The job failed; it gets its own error (its writes were dropped).
    Failed(Reply, Error),
}

/// Answers every job: failed jobs their own error, staged ones `result`
/// (the outcome of the group's commit).
pub(crate) fn answer(outcomes: Vec<Outcome>, result: Result<()>) {
    for outcome in outcomes {
        let _ = match outcome {
            Outcome::Staged(reply) => reply.send(match &result {
                Ok(()) => Ok(()),
                Err(e) => Err(copy(e)),
            }),
            Outcome::Failed(reply, e) => reply.send(Err(e)),
        };
    }
}

/// Answers every job of a group that did not run with (a copy of) `e`.
pub(crate) fn fail(replies: impl IntoIterator<Item = Reply>, e: &Error) {
    for reply in replies {
        let _ = reply.send(Err(copy(e)));
    }
}

/// A copy of `e` for one more job (errors are not `Clone`): same kind and
/// message.
fn copy(e: &Error) -> Error {
    Error::new(e.kind(), e.message().to_owned())
}
