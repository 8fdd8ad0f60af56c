//! [`Recorder`]: wraps any [`Stores`] and records every call made through it.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use stowage_core::{Error, Stores};

use crate::operation::{Operation, Scope};
use stowage_core::layer::{interpose, Call, Interceptor, Layer, Outcome, Proceed};

/// Records the calls made through a [`Stores`]: see [`Recorder::wrap`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Recorder;

impl Recorder {
    /// Wraps `stores`; every call made through the returned bundle is
    /// forwarded unchanged and recorded in the returned [`CallLog`].
    ///
    /// Wrap a [`FaultInjector`](crate::FaultInjector)'s stores to see the
    /// injected errors in the log, or wrap the stores *it* wraps to see only
    /// the calls that reached them.
    ///
    /// ```
    /// use stowage_core::{Digest, ErrorKind};
    /// use stowage_fakes::{FakeStores, Operation, Recorder};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (stores, log) = Recorder::wrap(FakeStores::new().stores());
    /// let digest = stores.cas.put(bytes::Bytes::from_static(b"hello")).await.unwrap();
    /// let missing = stores.cas.get(&Digest::of(b"nope")).await;
    /// assert!(missing.is_err());
    ///
    /// assert_eq!(log.ops(), [Operation::CasPut, Operation::CasGet]);
    /// let calls = log.calls();
    /// assert_eq!(calls[0].to_string(), "cas.put(5 bytes) -> ok");
    /// assert_eq!(calls[1].outcome, Err(ErrorKind::NotFound));
    /// # let _ = digest;
    /// # });
    /// ```
    pub fn wrap(stores: Stores) -> (Stores, CallLog) {
        let log = CallLog::default();
        let wrapped = interpose(stores, Arc::new(RecordingInterceptor { log: log.clone() }));
        (wrapped, log)
    }
}

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedCall {
    /// Which trait method was called.
    pub op: Operation,
    /// A short description of its key arguments.
    pub args: String,
    /// What the wrapped store answered: `Ok` or the kind of its error.
    pub outcome: Outcome,
}

impl fmt::Display for RecordedCall {
    /// `op(args) -> ok` or `op(args) -> err(kind)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}({}) -> ", self.op, self.args)?;
        match self.outcome {
            Ok(()) => f.write_str("ok"),
            Err(kind) => write!(f, "err({kind})"),
        }
    }
}

/// The calls recorded by [`Recorder::wrap`], in the order they returned
/// (for sequential code, the order they were made). A call whose future
/// was dropped before it returned is not recorded. Clones share the log;
/// all methods are safe to call while calls are in flight.
#[derive(Debug, Clone, Default)]
pub struct CallLog {
    calls: Arc<Mutex<Vec<RecordedCall>>>,
}

impl CallLog {
    /// A copy of every recorded call, oldest first.
    pub fn calls(&self) -> Vec<RecordedCall> {
        self.calls.lock().clone()
    }

    /// The operations of every recorded call, oldest first.
    pub fn ops(&self) -> Vec<Operation> {
        self.calls.lock().iter().map(|c| c.op).collect()
    }

    /// The recorded calls in `scope` (an [`Operation`], a
    /// [`StoreKind`](crate::StoreKind) or [`Scope::Any`]), oldest first.
    pub fn calls_to(&self, scope: impl Into<Scope>) -> Vec<RecordedCall> {
        let scope = scope.into();
        self.calls
            .lock()
            .iter()
            .filter(|c| scope.matches(c.op))
            .cloned()
            .collect()
    }

    /// How many recorded calls are in `scope`.
    pub fn count(&self, scope: impl Into<Scope>) -> usize {
        let scope = scope.into();
        self.calls
            .lock()
            .iter()
            .filter(|c| scope.matches(c.op))
            .count()
    }

    /// The most recent call, if any.
    pub fn last(&self) -> Option<RecordedCall> {
        self.calls.lock().last().cloned()
    }

    /// How many calls were recorded.
    pub fn len(&self) -> usize {
        self.calls.lock().len()
    }

    /// Whether nothing was recorded.
    pub fn is_empty(&self) -> bool {
        self.calls.lock().is_empty()
    }

    /// Removes and returns every recorded call, oldest first.
    pub fn take(&self) -> Vec<RecordedCall> {
        std::mem::take(&mut *self.calls.lock())
    }

    /// Forgets every recorded call.
    pub fn clear(&self) {
        self.calls.lock().clear();
    }
}

impl Layer for CallLog {
    /// Wraps `stores`, recording every call made through them into this
    /// log, exactly as [`Recorder::wrap`] does: `stores.layer(&log)`.
    fn layer(&self, stores: Stores) -> Stores {
        interpose(stores, Arc::new(RecordingInterceptor { log: self.clone() }))
    }
}

struct RecordingInterceptor {
    log: CallLog,
}

#[async_trait]
impl Interceptor for RecordingInterceptor {
    async fn around(&self, call: &Call, proceed: Proceed<'_>) -> Option<Error> {
        let outcome = proceed.await;
        self.log.calls.lock().push(RecordedCall {
            op: call.op,
            args: call.args.clone(),
            outcome,
        });
        None
    }
}
