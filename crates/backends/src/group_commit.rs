//! What the group-committing engines (SQLite, PostgreSQL) share: how the
//! jobs of one group get their answers once the group's transaction ended.

use stowage_core::{Error, ErrorKind, Result};
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
/// (the outcome of the group's commit). When several jobs shared a commit
/// the server refused for what one of them wrote (`InvalidInput` or
/// `Conflict`: a value it would not take), which one cannot be told: each
/// gets `Unavailable` — nothing was applied, and a retry, likely alone,
/// gets its own answer — rather than one job's error. Other kinds
/// (`OutcomeUnknown`, `StorageFull`, …) say the same to every job.
pub(crate) fn answer(outcomes: Vec<Outcome>, result: Result<()>) {
    let staged = outcomes
        .iter()
        .filter(|o| matches!(o, Outcome::Staged(_)))
        .count();
    let result = match result {
        Err(e) if staged > 1 && one_job_s(e.kind()) => Err(Error::new(
            ErrorKind::Unavailable,
            format!(
                "a write grouped with this one was refused at commit ({}); nothing was \
                 applied: retry",
                e.message()
            ),
        )),
        other => other,
    };
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

/// Whether a failed commit of kind `kind` is about what one job wrote.
fn one_job_s(kind: ErrorKind) -> bool {
    matches!(kind, ErrorKind::InvalidInput | ErrorKind::Conflict)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn staged(n: usize) -> (Vec<Outcome>, Vec<oneshot::Receiver<Result<()>>>) {
        (0..n)
            .map(|_| {
                let (tx, rx) = oneshot::channel();
                (Outcome::Staged(tx), rx)
            })
            .unzip()
    }

    fn kinds(answers: Vec<oneshot::Receiver<Result<()>>>) -> Vec<Option<ErrorKind>> {
        answers
            .into_iter()
            .map(|mut rx| rx.try_recv().unwrap().err().map(|e| e.kind()))
            .collect()
    }

    /// A commit refused for what one job wrote is that job's answer when it
    /// was alone, and `Unavailable` for each when others shared it.
    #[test]
    fn a_refused_commit_is_not_pinned_on_the_jobs_that_shared_it() {
        let refused = || Err(Error::invalid_input("timestamp out of range"));
        let (outcomes, answers) = staged(1);
        answer(outcomes, refused());
        assert_eq!(kinds(answers), [Some(ErrorKind::InvalidInput)]);
        let (outcomes, answers) = staged(3);
        answer(outcomes, refused());
        assert_eq!(kinds(answers), [Some(ErrorKind::Unavailable); 3]);
        let (outcomes, answers) = staged(3);
        let lost = Error::new(ErrorKind::OutcomeUnknown, "connection lost at COMMIT");
        answer(outcomes, Err(lost));
        assert_eq!(kinds(answers), [Some(ErrorKind::OutcomeUnknown); 3]);
    }
}
