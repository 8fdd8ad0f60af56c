//! The interposer: a [`Stores`] that passes every call through an
//! [`Interceptor`] on its way to the wrapped stores.
//!
//! Fault injection ([`FaultInjector`](crate::FaultInjector)) and call
//! recording ([`Recorder`](crate::Recorder)) are both interceptors; layers
//! stack by wrapping an already-wrapped [`Stores`]. Write your own to pause,
//! count or reorder calls in a test.

mod impls;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use stowage_core::{Error, ErrorKind, Result, Stores};

use crate::operation::Operation;

/// What the wrapped store answered: `Ok` or the kind of its error.
pub type Outcome = std::result::Result<(), ErrorKind>;

/// The call itself, handed to [`Interceptor::around`]: awaiting it runs the
/// call against the wrapped store and yields its [`Outcome`]; dropping it
/// unawaited means the call never reaches the wrapped store.
pub type Proceed<'a> = BoxFuture<'a, Outcome>;

/// One call passing through an interposed store.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Call {
    /// Which trait method was called.
    pub op: Operation,
    /// A short description of the key arguments (`"run 0193…, kind \"step\""`).
    pub args: String,
}

/// Sees every call made through stores wrapped by [`interpose`], and decides
/// what the caller gets back.
///
/// ```
/// use std::sync::atomic::{AtomicUsize, Ordering};
/// use std::sync::Arc;
/// use stowage_core::Error;
/// use stowage_fakes::{interpose, Call, FakeStores, Interceptor, Proceed};
///
/// /// Counts calls and lets each one through unchanged.
/// #[derive(Default)]
/// struct Counter(AtomicUsize);
///
/// #[async_trait::async_trait]
/// impl Interceptor for Counter {
///     async fn around(&self, _call: &Call, proceed: Proceed<'_>) -> Option<Error> {
///         self.0.fetch_add(1, Ordering::SeqCst);
///         let _outcome = proceed.await;
///         None
///     }
/// }
///
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let counter = Arc::new(Counter::default());
/// let stores = interpose(FakeStores::new().stores(), counter.clone());
/// stores.cas.put(bytes::Bytes::from_static(b"x")).await.unwrap();
/// assert_eq!(counter.0.load(Ordering::SeqCst), 1);
/// # });
/// ```
#[async_trait]
pub trait Interceptor: Send + Sync + 'static {
    /// Handles one call. Await `proceed` to run it against the wrapped
    /// store (at most once; it cannot be retried), then return:
    /// - `None` to hand the wrapped store's own reply to the caller, or
    /// - `Some(error)` to give the caller `error` instead — whether or not
    ///   `proceed` ran (without it the call was never applied; after it the
    ///   call was applied and its reply is lost).
    ///
    /// Returning `None` without awaiting `proceed` is a bug in the
    /// interceptor: the caller gets an `Internal` error.
    async fn around(&self, call: &Call, proceed: Proceed<'_>) -> Option<Error>;
}

/// Wraps `stores` so that every async call goes through `interceptor`.
///
/// The returned bundle has the same [`Capabilities`](stowage_core::Capabilities);
/// each method is forwarded to the same method of the wrapped store (default
/// methods too), so one call through the wrapper is exactly one
/// [`Operation`] and one call to the wrapped store. `max_blob_size` is
/// forwarded without interception.
pub fn interpose(stores: Stores, interceptor: Arc<dyn Interceptor>) -> Stores {
    let capabilities = stores.capabilities.clone();
    let closing = stores.clone();
    let layer = Arc::new(Interposed {
        inner: stores,
        interceptor,
    });
    Stores::new(
        layer.clone(),
        layer.clone(),
        layer.clone(),
        layer.clone(),
        layer,
        capabilities,
    )
    .closing(&closing)
}

/// One interposed layer: implements all five traits over `inner`.
struct Interposed {
    inner: Stores,
    interceptor: Arc<dyn Interceptor>,
}

impl Interposed {
    /// Runs `call` (the wrapped store's future) through the interceptor.
    async fn run<T: Send>(
        &self,
        op: Operation,
        args: String,
        call: impl Future<Output = Result<T>> + Send,
    ) -> Result<T> {
        let info = Call { op, args };
        let mut reply: Option<Result<T>> = None;
        let replaced = {
            let slot = &mut reply;
            let proceed: Proceed<'_> = Box::pin(async move {
                let result = call.await;
                let outcome = result.as_ref().map(|_| ()).map_err(Error::kind);
                *slot = Some(result);
                outcome
            });
            self.interceptor.around(&info, proceed).await
        };
        match (replaced, reply) {
            (Some(error), _) => Err(error),
            (None, Some(result)) => result,
            (None, None) => Err(Error::internal(format!(
                "the interceptor neither ran {op} nor replaced its reply"
            ))),
        }
    }
}
