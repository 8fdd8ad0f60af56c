//! [`FaultController`]: the armed rules and the counters of one injector.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use stowage_core::{Error, ErrorKind};

use super::{Fault, RuleId, Timing, Trigger};
use crate::operation::{Operation, Scope};
use stowage_core::layer::{Call, Interceptor, Proceed};

const OPS: usize = Operation::ALL.len();

/// Arms, removes and counts the faults of one [`FaultInjector`](super::FaultInjector).
/// Clones share the same rules and counters; every method is safe to call
/// while calls are in flight (a change applies from the next call on).
///
/// For each call, in the order calls arrive:
/// 1. the call is counted ([`FaultController::calls`]);
/// 2. the delays of every matching latency rule are added up and slept
///    ([`tokio::time::sleep`], so `tokio::time::pause` makes them instant);
/// 3. every matching fault rule, in the order armed, counts the call (and a
///    [`Trigger::Fraction`] rule draws from its generator) and decides
///    whether it fires; one-shot rules that fire are spent. If any fired, the
///    earliest-armed one decides the error: the call fails before it is
///    applied, or — with [`Timing::AfterApply`] — runs and then fails.
///
/// Injected errors say "injected fault", the rule and the operation, e.g.
/// `injected fault #1: cas.put failed with unavailable before it was applied`.
#[derive(Debug, Clone)]
pub struct FaultController {
    state: Arc<Mutex<State>>,
}

impl Default for FaultController {
    /// [`FaultController::new`].
    fn default() -> Self {
        FaultController::new()
    }
}

#[derive(Debug)]
struct State {
    next_rule: u64,
    faults: Vec<Armed>,
    latencies: Vec<Latency>,
    calls: [u64; OPS],
    injected: [u64; OPS],
}

#[derive(Debug)]
struct Armed {
    id: RuleId,
    fault: Fault,
    seen: u64,
    rng: Option<StdRng>,
}

#[derive(Debug)]
struct Latency {
    id: RuleId,
    scope: Scope,
    delay: Duration,
}

/// What to do with one call.
struct Decision {
    delay: Duration,
    fault: Option<(Error, Timing)>,
}

impl FaultController {
    /// A controller with no rules armed, wrapping nothing yet: apply it
    /// as a [`Layer`](stowage_core::layer::Layer) (`stores.layer(&faults)`)
    /// or get one from [`FaultInjector::wrap`](crate::FaultInjector::wrap).
    pub fn new() -> Self {
        FaultController {
            state: Arc::new(Mutex::new(State {
                next_rule: 1,
                faults: Vec::new(),
                latencies: Vec::new(),
                calls: [0; OPS],
                injected: [0; OPS],
            })),
        }
    }

    pub(super) fn interceptor(&self) -> FaultInterceptor {
        FaultInterceptor {
            controller: self.clone(),
        }
    }

    /// Arms `fault`; returns its handle.
    pub fn inject(&self, fault: Fault) -> RuleId {
        let mut state = self.state.lock();
        let id = state.new_rule_id();
        let rng = match fault.trigger {
            Trigger::Fraction { seed, .. } => Some(StdRng::seed_from_u64(seed)),
            Trigger::Nth(_) | Trigger::Always => None,
        };
        state.faults.push(Armed {
            id,
            fault,
            seen: 0,
            rng,
        });
        id
    }

    /// Fails the next call in `scope` with `kind` ([`Fault::next`]).
    pub fn fail_next(&self, scope: impl Into<Scope>, kind: ErrorKind) -> RuleId {
        self.inject(Fault::next(scope, kind))
    }

    /// Fails the `n`-th call in `scope`, counted from now ([`Fault::nth`]).
    pub fn fail_nth(&self, scope: impl Into<Scope>, n: u64, kind: ErrorKind) -> RuleId {
        self.inject(Fault::nth(scope, n, kind))
    }

    /// Fails a seeded `fraction` of the calls in `scope` ([`Fault::fraction`]).
    pub fn fail_fraction(
        &self,
        scope: impl Into<Scope>,
        fraction: f64,
        seed: u64,
        kind: ErrorKind,
    ) -> RuleId {
        self.inject(Fault::fraction(scope, fraction, seed, kind))
    }

    /// Fails every call in `scope` until removed ([`Fault::always`]).
    pub fn fail_always(&self, scope: impl Into<Scope>, kind: ErrorKind) -> RuleId {
        self.inject(Fault::always(scope, kind))
    }

    /// Delays every call in `scope` by `delay` before it runs (delays of
    /// several matching rules add up). The delay is a [`tokio::time::sleep`],
    /// so calls must run inside a Tokio runtime with time enabled (as
    /// `#[tokio::test]` provides); under `tokio::time::pause` it takes no
    /// real time.
    pub fn add_latency(&self, scope: impl Into<Scope>, delay: Duration) -> RuleId {
        let mut state = self.state.lock();
        let id = state.new_rule_id();
        state.latencies.push(Latency {
            id,
            scope: scope.into(),
            delay,
        });
        id
    }

    /// Disarms a rule. Returns whether it was still armed (a one-shot rule
    /// that already fired is gone).
    pub fn remove(&self, rule: RuleId) -> bool {
        let mut state = self.state.lock();
        let before = state.faults.len() + state.latencies.len();
        state.faults.retain(|f| f.id != rule);
        state.latencies.retain(|l| l.id != rule);
        before != state.faults.len() + state.latencies.len()
    }

    /// Disarms every rule (faults and latencies). Counters are kept.
    pub fn clear(&self) {
        let mut state = self.state.lock();
        state.faults.clear();
        state.latencies.clear();
    }

    /// How many rules (faults and latencies) are armed.
    pub fn armed(&self) -> usize {
        let state = self.state.lock();
        state.faults.len() + state.latencies.len()
    }

    /// How many calls of `op` were made through the wrapper (failed ones too).
    pub fn calls(&self, op: Operation) -> u64 {
        self.state.lock().calls[op.index()]
    }

    /// How many calls of `op` got an injected error.
    pub fn injected(&self, op: Operation) -> u64 {
        self.state.lock().injected[op.index()]
    }

    /// How many calls were made through the wrapper, of every operation.
    pub fn total_calls(&self) -> u64 {
        self.state.lock().calls.iter().sum()
    }

    /// How many calls got an injected error, of every operation.
    pub fn total_injected(&self) -> u64 {
        self.state.lock().injected.iter().sum()
    }

    /// Sets every call and injection counter back to zero (rules keep their
    /// own progress).
    pub fn reset_counters(&self) {
        let mut state = self.state.lock();
        state.calls = [0; OPS];
        state.injected = [0; OPS];
    }

    fn decide(&self, op: Operation) -> Decision {
        self.state.lock().decide(op)
    }
}

impl State {
    fn new_rule_id(&mut self) -> RuleId {
        let id = RuleId(self.next_rule);
        self.next_rule += 1;
        id
    }

    fn decide(&mut self, op: Operation) -> Decision {
        self.calls[op.index()] += 1;
        let delay = self
            .latencies
            .iter()
            .filter(|l| l.scope.matches(op))
            .fold(Duration::ZERO, |sum, l| sum.saturating_add(l.delay));

        let mut chosen: Option<(RuleId, ErrorKind, Timing)> = None;
        let mut spent = Vec::new();
        for armed in self.faults.iter_mut().filter(|a| a.fault.scope.matches(op)) {
            armed.seen += 1;
            let fires = match (armed.fault.trigger, armed.rng.as_mut()) {
                (Trigger::Nth(n), _) => armed.seen == n.max(1),
                (Trigger::Fraction { fraction, .. }, Some(rng)) => rng.gen::<f64>() < fraction,
                (Trigger::Fraction { .. }, None) => false,
                (Trigger::Always, _) => true,
            };
            if matches!(armed.fault.trigger, Trigger::Nth(_)) && fires {
                spent.push(armed.id);
            }
            if fires && chosen.is_none() {
                chosen = Some((armed.id, armed.fault.kind, armed.fault.timing));
            }
        }
        self.faults.retain(|a| !spent.contains(&a.id));

        let fault = chosen.map(|(rule, kind, timing)| {
            self.injected[op.index()] += 1;
            (injected_error(rule, op, kind, timing), timing)
        });
        Decision { delay, fault }
    }
}

fn injected_error(rule: RuleId, op: Operation, kind: ErrorKind, timing: Timing) -> Error {
    let message = match timing {
        Timing::BeforeApply => {
            format!("injected fault {rule}: {op} failed with {kind} before it was applied")
        }
        Timing::AfterApply => format!(
            "injected fault {rule}: {op} ran against the wrapped store, then its reply was \
             replaced by {kind}"
        ),
    };
    Error::new(kind, message)
}

/// The [`Interceptor`] side of a [`FaultController`].
pub(super) struct FaultInterceptor {
    controller: FaultController,
}

#[async_trait]
impl Interceptor for FaultInterceptor {
    async fn around(&self, call: &Call, proceed: Proceed<'_>) -> Option<Error> {
        let decision = self.controller.decide(call.op);
        if !decision.delay.is_zero() {
            tokio::time::sleep(decision.delay).await;
        }
        match decision.fault {
            Some((error, Timing::BeforeApply)) => Some(error),
            Some((error, Timing::AfterApply)) => {
                let _lost = proceed.await;
                Some(error)
            }
            None => {
                let _passed_through = proceed.await;
                None
            }
        }
    }
}
