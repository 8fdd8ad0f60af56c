//! Fault injection: [`FaultInjector::wrap`] puts any [`Stores`] behind a
//! [`FaultController`] that fails chosen calls and delays others.

mod controller;

use std::fmt;
use std::sync::Arc;

use stowage_core::{ErrorKind, Stores};

pub use controller::FaultController;

use crate::operation::Scope;
use stowage_core::layer::{interpose, Layer};

/// Wraps [`Stores`] so that a test can make chosen calls fail: see
/// [`FaultInjector::wrap`].
#[derive(Debug, Clone, Copy, Default)]
pub struct FaultInjector;

impl FaultInjector {
    /// Wraps `stores` (any backend, a fake, or another wrapper). With no
    /// rules armed the returned bundle behaves exactly like `stores`; arm
    /// rules through the returned [`FaultController`].
    ///
    /// ```
    /// use stowage_core::ErrorKind;
    /// use stowage_fakes::{FakeStores, FaultInjector, Operation};
    ///
    /// # tokio::runtime::Runtime::new().unwrap().block_on(async {
    /// let (stores, faults) = FaultInjector::wrap(FakeStores::new().stores());
    /// faults.fail_next(Operation::CasPut, ErrorKind::Unavailable);
    ///
    /// let blob = bytes::Bytes::from_static(b"payload");
    /// let err = stores.cas.put(blob.clone()).await.unwrap_err();
    /// assert_eq!(err.kind(), ErrorKind::Unavailable);
    /// assert!(err.message().contains("injected") && err.message().contains("cas.put"));
    /// assert!(stores.cas.put(blob).await.is_ok()); // only the next call failed
    /// assert_eq!(faults.calls(Operation::CasPut), 2);
    /// assert_eq!(faults.injected(Operation::CasPut), 1);
    /// # });
    /// ```
    pub fn wrap(stores: Stores) -> (Stores, FaultController) {
        let controller = FaultController::new();
        let wrapped = interpose(stores, Arc::new(controller.interceptor()));
        (wrapped, controller)
    }
}

impl Layer for FaultController {
    /// Wraps `stores` under this controller's rules, exactly as
    /// [`FaultInjector::wrap`] does, so that the injector stacks with other
    /// layers in one chain: `stores.layer(&faults).layer(RetryLayer::new())`.
    /// A controller applied to several stacks counts their calls together.
    fn layer(&self, stores: Stores) -> Stores {
        interpose(stores, Arc::new(self.interceptor()))
    }
}

/// Which of the calls in a rule's scope fail. Calls are counted from the
/// moment the rule is armed, one count per call in its scope.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Trigger {
    /// Only the n-th call in scope (1-based; 0 counts as 1). The rule is
    /// spent — and removed — once it fires.
    Nth(u64),
    /// Each call in scope fails with probability `fraction` (0.0–1.0), drawn
    /// from a generator seeded with `seed`: the same sequence of calls
    /// fails the same way in every run.
    Fraction {
        /// Probability of failing each call, from 0.0 (never) to 1.0 (always).
        fraction: f64,
        /// Seed of the rule's own random generator.
        seed: u64,
    },
    /// Every call in scope, until the rule is removed.
    Always,
}

/// When an injected error replaces the reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Timing {
    /// The call never reaches the wrapped store: nothing is applied.
    #[default]
    BeforeApply,
    /// The call runs against the wrapped store (and is applied if it
    /// succeeds), then its reply is replaced by the error — a lost reply.
    /// Pair with [`ErrorKind::OutcomeUnknown`] to test retries.
    AfterApply,
}

/// A failure rule: which calls fail ([`Scope`] and [`Trigger`]), with which
/// [`ErrorKind`], and whether before or after the call is applied.
///
/// ```
/// use stowage_core::ErrorKind;
/// use stowage_fakes::{Fault, Operation, StoreKind, Timing, Trigger};
///
/// // The 3rd append is applied, but the caller hears OutcomeUnknown.
/// let lost_reply = Fault::nth(Operation::RunsAppendEvent, 3, ErrorKind::OutcomeUnknown)
///     .after_apply();
/// assert_eq!(lost_reply.timing, Timing::AfterApply);
///
/// // A quarter of all session calls are unavailable, reproducibly.
/// let flaky = Fault::fraction(StoreKind::Sessions, 0.25, 42, ErrorKind::Unavailable);
/// assert_eq!(flaky.trigger, Trigger::Fraction { fraction: 0.25, seed: 42 });
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Fault {
    /// Which calls the rule looks at.
    pub scope: Scope,
    /// Which of those fail.
    pub trigger: Trigger,
    /// The kind of the injected error.
    pub kind: ErrorKind,
    /// Before or after the call is applied.
    pub timing: Timing,
}

impl Fault {
    /// Fails the next call in `scope`, before it is applied.
    pub fn next(scope: impl Into<Scope>, kind: ErrorKind) -> Fault {
        Fault::nth(scope, 1, kind)
    }

    /// Fails the `n`-th call in `scope` (1-based), before it is applied.
    pub fn nth(scope: impl Into<Scope>, n: u64, kind: ErrorKind) -> Fault {
        Fault::with_trigger(scope, Trigger::Nth(n), kind)
    }

    /// Fails a seeded, reproducible `fraction` of the calls in `scope`.
    pub fn fraction(scope: impl Into<Scope>, fraction: f64, seed: u64, kind: ErrorKind) -> Fault {
        Fault::with_trigger(scope, Trigger::Fraction { fraction, seed }, kind)
    }

    /// Fails every call in `scope` until removed.
    pub fn always(scope: impl Into<Scope>, kind: ErrorKind) -> Fault {
        Fault::with_trigger(scope, Trigger::Always, kind)
    }

    /// The same rule, but the call is applied first and its reply lost
    /// ([`Timing::AfterApply`]).
    #[must_use]
    pub fn after_apply(mut self) -> Fault {
        self.timing = Timing::AfterApply;
        self
    }

    fn with_trigger(scope: impl Into<Scope>, trigger: Trigger, kind: ErrorKind) -> Fault {
        Fault {
            scope: scope.into(),
            trigger,
            kind,
            timing: Timing::BeforeApply,
        }
    }
}

/// The handle of an armed rule, for [`FaultController::remove`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RuleId(pub(crate) u64);

impl fmt::Display for RuleId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
