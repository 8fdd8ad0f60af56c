//! [`Proceed`]: the call itself, as handed to an interceptor, and the
//! bookkeeping of its runs against the wrapped store.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;

use crate::{
    BlobStat, BlobStream, ChainReport, Digest, Error, ErrorKind, LogEntry, PutOutcome,
    ReleaseRecord, Resolution, Result, Run, RunEvent, RunId, Session, Supersession,
};

use super::Operation;
use crate::lifecycle::{Referrer, StoreStats, Sweep};

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
/// Running it costs no allocation beyond the wrapped store's own.
pub struct Proceed<'a> {
    attempts: &'a mut (dyn Attempts + 'a),
}

impl<'a> Proceed<'a> {
    pub(super) fn new(attempts: &'a mut (dyn Attempts + 'a)) -> Self {
        Proceed { attempts }
    }

    /// Starts the call against the wrapped store, as its last run: no run
    /// may follow (one would answer `Internal` without reaching the store).
    /// Dropping the returned future before it finishes abandons the run
    /// (see [`Interceptor::around`](super::Interceptor::around)).
    pub fn run(&mut self) -> Running<'_> {
        self.attempts.start(true);
        Running {
            attempts: &mut *self.attempts,
        }
    }

    /// Starts the call against the wrapped store and keeps it runnable, so
    /// that it can be run again ([`run`](Proceed::run) for the last time).
    /// A call that is not [repeatable](super::Call::repeatable) runs only
    /// once: this is then its last run.
    pub fn attempt(&mut self) -> Running<'_> {
        self.attempts.start(false);
        Running {
            attempts: &mut *self.attempts,
        }
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
    type IntoFuture = Running<'a>;

    /// Runs the call once, as its last run.
    fn into_future(self) -> Self::IntoFuture {
        let Proceed { attempts } = self;
        attempts.start(true);
        Running { attempts }
    }
}

/// One run of a call in flight ([`Proceed::run`], [`Proceed::attempt`]):
/// resolves to the wrapped store's [`Outcome`].
#[must_use = "a run does nothing unless awaited"]
pub struct Running<'a> {
    attempts: &'a mut (dyn Attempts + 'a),
}

impl Future for Running<'_> {
    type Output = Outcome;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Outcome> {
        self.get_mut().attempts.poll_run(cx)
    }
}

/// The runs of one call, type-erased for [`Proceed`].
pub(super) trait Attempts: Send {
    /// Starts one run (dropping any unfinished one); `last` when no run
    /// may follow.
    fn start(&mut self, last: bool);
    /// Polls the run started last; its reply becomes the caller's.
    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Outcome>;
    /// The seq of the latest reply, if it succeeded and has one.
    fn seq(&self) -> Option<u64>;
}

/// The runs of one call whose reply is a `T`: `make(last)` starts one,
/// and its result lands in `reply`.
pub(super) struct Attempt<'r, T, F, Fut> {
    op: Operation,
    repeatable: bool,
    spent: bool,
    make: F,
    running: Option<Fut>,
    reply: &'r mut Option<Result<T>>,
}

impl<'r, T, F, Fut> Attempt<'r, T, F, Fut> {
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
            running: None,
            reply,
        }
    }
}

fn outcome_of<T>(result: &Result<T>) -> Outcome {
    result.as_ref().map(|_| ()).map_err(Error::kind)
}

impl<T, F, Fut> Attempts for Attempt<'_, T, F, Fut>
where
    T: Reply + Send,
    F: FnMut(bool) -> Option<Fut> + Send,
    Fut: Future<Output = Result<T>> + Send + Unpin,
{
    fn start(&mut self, last: bool) {
        let last = last || !self.repeatable;
        self.running = if self.spent { None } else { (self.make)(last) };
        self.spent |= last;
        if self.running.is_none() {
            *self.reply = Some(Err(Error::internal(format!(
                "{} was run again after its last run: an interceptor must not run a call \
                 after `run` or `.await`",
                self.op
            ))));
        }
    }

    fn poll_run(&mut self, cx: &mut Context<'_>) -> Poll<Outcome> {
        let Some(running) = self.running.as_mut() else {
            return Poll::Ready(match &*self.reply {
                Some(result) => outcome_of(result),
                None => Err(ErrorKind::Internal),
            });
        };
        let result = ready!(Pin::new(running).poll(cx));
        self.running = None;
        let outcome = outcome_of(&result);
        *self.reply = Some(result);
        Poll::Ready(outcome)
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
    Sweep<RunId>,
    Sweep<String>,
    Sweep<Digest>,
    Vec<Referrer>,
    StoreStats,
);
