//! [`Proceed`]: the call itself, as handed to an interceptor, and the
//! bookkeeping of its runs against the wrapped store.

use std::future::{Future, IntoFuture};

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::{
    BlobStat, BlobStream, ChainReport, Digest, Error, ErrorKind, LogEntry, PutOutcome,
    ReleaseRecord, Resolution, Result, Run, RunEvent, RunId, Session, Supersession,
};

use super::Operation;

/// What the wrapped store answered: `Ok` or the kind of its error.
pub type Outcome = std::result::Result<(), ErrorKind>;

/// The call itself, handed to [`Interceptor::around`](super::Interceptor::around).
///
/// - `proceed.await` runs it once against the wrapped store and yields its
///   [`Outcome`];
/// - [`run`](Proceed::run) does the same and keeps `proceed`, to read the
///   reply's [`seq`](Proceed::seq) afterwards;
/// - [`attempt`](Proceed::attempt) runs it and lets it run again (a retry):
///   its owned arguments are cloned for the run.
///
/// Each run replaces the reply the caller will get. Dropping `proceed`
/// without running it means the call never reaches the wrapped store.
pub struct Proceed<'a> {
    attempts: &'a mut (dyn Attempts + 'a),
}

impl<'a> Proceed<'a> {
    pub(super) fn new(attempts: &'a mut (dyn Attempts + 'a)) -> Self {
        Proceed { attempts }
    }

    /// Runs the call against the wrapped store, as its last run: no run
    /// may follow (one would answer `Internal` without reaching the store).
    pub async fn run(&mut self) -> Outcome {
        self.attempts.attempt(true).await
    }

    /// Runs the call against the wrapped store and keeps it runnable, so
    /// that it can be run again ([`run`](Proceed::run) for the last time).
    /// A call that is not [repeatable](super::Call::repeatable) runs only
    /// once: this is then its last run.
    pub async fn attempt(&mut self) -> Outcome {
        self.attempts.attempt(false).await
    }

    /// The sequence number of the latest reply, when it succeeded and
    /// carries one: the event, log entry or release record written or read
    /// (`append_event`, `append_log`, `promote`, `rollback*`, `current`).
    pub fn seq(&self) -> Option<u64> {
        self.attempts.seq()
    }
}

impl<'a> IntoFuture for Proceed<'a> {
    type Output = Outcome;
    type IntoFuture = BoxFuture<'a, Outcome>;

    /// Runs the call once, as its last run.
    fn into_future(self) -> Self::IntoFuture {
        let Proceed { attempts } = self;
        attempts.attempt(true)
    }
}

/// The runs of one call, type-erased for [`Proceed`].
pub(super) trait Attempts: Send {
    /// Starts one run; `last` when no run may follow.
    fn attempt(&mut self, last: bool) -> BoxFuture<'_, Outcome>;
    /// The seq of the latest reply, if it succeeded and has one.
    fn seq(&self) -> Option<u64>;
}

/// The runs of one call whose reply is a `T`: `make(last)` starts one,
/// and its result lands in `reply`.
pub(super) struct Attempt<'r, T, F> {
    op: Operation,
    repeatable: bool,
    spent: bool,
    make: F,
    reply: &'r mut Option<Result<T>>,
}

impl<'r, T, F> Attempt<'r, T, F> {
    pub(super) fn new(
        op: Operation,
        repeatable: bool,
        make: F,
        reply: &'r mut Option<Result<T>>,
    ) -> Self {
        Attempt {
            op,
            repeatable,
            spent: false,
            make,
            reply,
        }
    }
}

impl<'r, T, F, Fut> Attempts for Attempt<'r, T, F>
where
    T: Reply + Send,
    F: FnMut(bool) -> Option<Fut> + Send,
    Fut: Future<Output = Result<T>> + Send + 'r,
{
    fn attempt(&mut self, last: bool) -> BoxFuture<'_, Outcome> {
        let last = last || !self.repeatable;
        let started = if self.spent { None } else { (self.make)(last) };
        self.spent |= last;
        let op = self.op;
        let slot = &mut *self.reply;
        Box::pin(async move {
            let result = match started {
                Some(call) => call.await,
                None => Err(Error::internal(format!(
                    "{op} was run again after its last run: an interceptor must not \
                     run a call after `run` or `.await`"
                ))),
            };
            let outcome = result.as_ref().map(|_| ()).map_err(Error::kind);
            *slot = Some(result);
            outcome
        })
    }

    fn seq(&self) -> Option<u64> {
        match &*self.reply {
            Some(Ok(reply)) => reply.seq(),
            _ => None,
        }
    }
}

/// A store method's reply, as far as an interceptor sees it.
pub(super) trait Reply {
    /// The seq of the event, entry or record the reply is, if it is one.
    fn seq(&self) -> Option<u64> {
        None
    }
}

impl Reply for RunEvent {
    fn seq(&self) -> Option<u64> {
        Some(self.seq)
    }
}

impl Reply for LogEntry {
    fn seq(&self) -> Option<u64> {
        Some(self.seq)
    }
}

impl Reply for ReleaseRecord {
    fn seq(&self) -> Option<u64> {
        Some(self.seq)
    }
}

macro_rules! no_seq {
    ($($t:ty),* $(,)?) => { $(impl Reply for $t {})* };
}

no_seq!(
    (),
    bool,
    Bytes,
    Digest,
    BlobStat,
    BlobStream,
    ChainReport,
    PutOutcome,
    Resolution,
    Run,
    RunId,
    Session,
    Option<Session>,
    Option<Supersession>,
    Vec<Digest>,
    Vec<Run>,
    Vec<RunEvent>,
    Vec<ReleaseRecord>,
    Vec<String>,
    Vec<Session>,
    Vec<LogEntry>,
    Vec<Supersession>,
);
