//! Layers: wrap any [`Stores`] so that every call passes through an
//! [`Interceptor`] on its way to the wrapped stores.
//!
//! One mechanism serves every wrapper: tracing, metrics, retries and
//! timeouts (crate `stowage-layers`), fault injection and call recording
//! (crate `stowage-fakes`), and your own. A [`Layer`] turns a [`Stores`]
//! into another; [`Stores::layer`] applies one, so layers compose in any
//! order, the last applied being the outermost (it sees the call first):
//!
//! ```
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use stowage_core::layer::{interpose, Call, Interceptor, Layer, Proceed};
//! use stowage_core::{Error, Stores};
//!
//! /// Counts calls and lets each one through unchanged.
//! #[derive(Clone, Default)]
//! struct Counter(Arc<AtomicUsize>);
//!
//! #[async_trait::async_trait]
//! impl Interceptor for Counter {
//!     async fn around(&self, _call: &Call, proceed: Proceed<'_>) -> Option<Error> {
//!         self.0.fetch_add(1, Ordering::SeqCst);
//!         let _outcome = proceed.await;
//!         None
//!     }
//! }
//!
//! impl Layer for Counter {
//!     fn layer(&self, stores: Stores) -> Stores {
//!         interpose(stores, Arc::new(self.clone()))
//!     }
//! }
//!
//! /// A call through the returned stores passes `outer`, then `inner`.
//! fn counted(stores: Stores, inner: &Counter, outer: &Counter) -> Stores {
//!     stores.layer(inner.clone()).layer(outer.clone())
//! }
//! ```

mod call;
mod impls;
mod operation;
mod proceed;

use std::future::Future;
use std::sync::Arc;

use async_trait::async_trait;
use futures::future::{BoxFuture, Either};

use crate::{Error, Result, Stores};

pub use call::{Call, Entity};
pub use operation::{Operation, StoreKind};
pub use proceed::{Outcome, Proceed, Running};

use proceed::{Attempt, Reply};

/// Sees every call made through stores wrapped by [`interpose`], and decides
/// what the caller gets back.
#[async_trait]
pub trait Interceptor: Send + Sync + 'static {
    /// Handles one call. Run it against the wrapped store through
    /// `proceed` (`proceed.await`, or [`Proceed::run`] /
    /// [`Proceed::attempt`] to run it more than once), then return:
    /// - `None` to hand the wrapped store's reply (of the last run) to the
    ///   caller, or
    /// - `Some(error)` to give the caller `error` instead — whether or not
    ///   the call ran (without it the call was never applied; after it the
    ///   call was applied and its reply is lost).
    ///
    /// Dropping a run before it finishes (a timeout) abandons it: the
    /// wrapped store's future is dropped when the next run starts or, at
    /// the latest, when `around` returns. Returning `None` without having run the call is a
    /// bug in the interceptor: the caller gets an `Internal` error.
    async fn around(&self, call: &Call, proceed: Proceed<'_>) -> Option<Error>;

    /// Whether this interceptor reads [`Call::args`]. The text is formatted
    /// for every call only when it does (`true` by default); the layers
    /// that need only the structured fields answer `false` and cost no
    /// formatting.
    fn wants_args(&self) -> bool {
        true
    }

    /// Whether this interceptor has nothing to do with `call` right now
    /// (`false` by default). A skipped call goes straight to the wrapped
    /// store, as if the layer were not there: no [`around`](Interceptor::around),
    /// nothing allocated beyond the interposed method's own future. The tracing layer skips every call while no
    /// subscriber could enable its spans.
    fn skips(&self, call: &Call) -> bool {
        let _ = call;
        false
    }
}

/// Turns a [`Stores`] into another that wraps it, as OpenDAL's layers wrap
/// an accessor. Most layers are an [`Interceptor`] passed to
/// [`interpose`]; apply one with [`Stores::layer`].
pub trait Layer {
    /// Wraps `stores`.
    fn layer(&self, stores: Stores) -> Stores;
}

impl<L: Layer + ?Sized> Layer for &L {
    fn layer(&self, stores: Stores) -> Stores {
        (**self).layer(stores)
    }
}

impl<L: Layer + ?Sized> Layer for Arc<L> {
    fn layer(&self, stores: Stores) -> Stores {
        (**self).layer(stores)
    }
}

impl Stores {
    /// These stores wrapped in `layer`:
    /// `stores.layer(a).layer(b)` puts `b` outermost, so a call passes
    /// `b`, then `a`, then reaches the backend.
    pub fn layer(self, layer: impl Layer) -> Stores {
        layer.layer(self)
    }
}

/// Wraps `stores` so that every async call goes through `interceptor`.
///
/// The returned bundle has the same [`Capabilities`](crate::Capabilities);
/// each method is forwarded to the same method of the wrapped store (default
/// methods too), so one call through the wrapper is exactly one
/// [`Operation`] and — unless the interceptor runs it again — one call to
/// the wrapped store. `max_blob_size` is forwarded without interception.
pub fn interpose(stores: Stores, interceptor: Arc<dyn Interceptor>) -> Stores {
    let capabilities = stores.capabilities.clone();
    // Closing the wrapper closes the wrapped backend (once).
    let closing = stores.clone();
    let layer = Arc::new(Interposed {
        wants_args: interceptor.wants_args(),
        inner: stores,
        interceptor,
    });
    Stores::new(
        layer.clone(),
        layer.clone(),
        layer.clone(),
        layer.clone(),
        layer.clone(),
        layer,
        capabilities,
    )
    .closing(&closing)
}

/// One interposed layer: implements all five store traits and
/// `Lifecycle` over `inner`.
struct Interposed {
    inner: Stores,
    interceptor: Arc<dyn Interceptor>,
    wants_args: bool,
}

impl Interposed {
    /// Describes a call to `op` on `entity`; `args` is formatted only for
    /// an interceptor that [wants it](Interceptor::wants_args).
    fn call(
        &self,
        op: Operation,
        entity: impl Into<Option<Entity>>,
        args: impl FnOnce() -> String,
    ) -> Call {
        let args = if self.wants_args {
            args()
        } else {
            String::new()
        };
        Call::new(op, self.inner.capabilities.backend, entity.into(), args)
    }

    /// Runs the call through the interceptor, unless it
    /// [skips](Interceptor::skips) it. `make(last)` starts one run
    /// against the wrapped store: it clones the call's owned arguments
    /// unless `last` (no run follows), when it moves them. It answers
    /// `None` only once they are gone, which [`Attempt`] never lets happen.
    fn run<'a, T, F, Fut>(
        &'a self,
        call: Call,
        mut make: F,
    ) -> Either<Fut, BoxFuture<'a, Result<T>>>
    where
        T: Reply + Send + 'a,
        F: FnMut(bool) -> Option<Fut> + Send + 'a,
        Fut: Future<Output = Result<T>> + Send + Unpin + 'a,
    {
        // A skipped call is the wrapped store's own future, as is: the
        // layer adds nothing to await.
        if self.interceptor.skips(&call) {
            if let Some(run) = make(true) {
                return Either::Left(run);
            }
        }
        Either::Right(Box::pin(self.intercept(call, make)))
    }

    async fn intercept<T, F, Fut>(&self, call: Call, make: F) -> Result<T>
    where
        T: Reply + Send,
        F: FnMut(bool) -> Option<Fut> + Send,
        Fut: Future<Output = Result<T>> + Send + Unpin,
    {
        let mut reply: Option<Result<T>> = None;
        let replaced = {
            let mut attempts = Attempt::new(call.op, call.repeatable, make, &mut reply);
            let proceed = Proceed::new(&mut attempts);
            self.interceptor.around(&call, proceed).await
        };
        match (replaced, reply) {
            (Some(error), _) => Err(error),
            (None, Some(result)) => result,
            (None, None) => Err(Error::internal(format!(
                "the interceptor neither ran {} nor replaced its reply",
                call.op
            ))),
        }
    }
}

/// An owned argument of a call that may run more than once: cloned for
/// every run but the last, moved into the last.
struct Reuse<T>(Option<T>);

impl<T: Clone> Reuse<T> {
    fn new(value: T) -> Self {
        Reuse(Some(value))
    }

    fn take(&mut self, last: bool) -> Option<T> {
        if last {
            self.0.take()
        } else {
            self.0.clone()
        }
    }
}
