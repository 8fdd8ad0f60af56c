//! [`RetryLayer`]: runs failed calls again, with exponential backoff and
//! jitter, when that cannot apply them twice.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rand::Rng;
use stowage_core::layer::{interpose, Call, Interceptor, Layer, Proceed};
use stowage_core::{Error, ErrorKind, Stores};

/// Runs a call again when it failed in a way that is safe to retry, up to
/// a maximum number of attempts, sleeping an exponentially growing,
/// jittered delay between attempts.
///
/// What is retried:
///
/// - [`ErrorKind::Unavailable`] (the only [retryable](ErrorKind::is_retryable)
///   kind: nothing was applied), for every call;
/// - [`ErrorKind::OutcomeUnknown`] (the call may have been applied) only
///   when running it again cannot apply it twice
///   ([`Call::safe_to_repeat`]): reads; `cas.put` (content-addressed: the
///   same bytes are the same blob and answer the same digest);
///   `supersessions.put` (the identical record again is
///   `AlreadyPresent`, which after a retry may be this call's own first
///   attempt); `lifecycle.pin_blob` and `lifecycle.compact`; and an event
///   or log entry appended **with an idempotency key** (the store answers
///   the original instead of appending it again). An append without a
///   key, a state transition, a promote, a delete, an unpin or a sweep
///   (whose answer says what *this* call removed: a second run would
///   answer "nothing") are never retried after an unknown outcome: the
///   caller gets `OutcomeUnknown` and must find out what happened.
///
/// Every other error is returned at once. `cas.put_stream` runs once (its
/// reader cannot be read again). The caller gets the reply of the last
/// attempt.
///
/// Delay before retry `n` (1-based): `min(max_delay, base_delay · 2ⁿ⁻¹)`,
/// with jitter a uniformly random value in its upper half (`[d/2, d]`), so
/// that clients failing together do not retry together. Defaults: 3
/// attempts, 50 ms base, 2 s max, jitter on. Sleeps use
/// [`tokio::time::sleep`]: run it on a Tokio runtime with the time driver.
///
/// Below a [`TimeoutLayer`](crate::TimeoutLayer) the deadline bounds all
/// attempts together; above it, each attempt.
#[derive(Debug, Clone)]
pub struct RetryLayer {
    max_attempts: u32,
    base_delay: Duration,
    max_delay: Duration,
    jitter: bool,
}

impl Default for RetryLayer {
    fn default() -> Self {
        RetryLayer {
            max_attempts: 3,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(2),
            jitter: true,
        }
    }
}

impl RetryLayer {
    /// The defaults: 3 attempts, 50 ms base delay, 2 s max delay, jitter.
    pub fn new() -> Self {
        RetryLayer::default()
    }

    /// At most `attempts` runs of one call, the first included (0 counts
    /// as 1: no retry).
    #[must_use]
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts.max(1);
        self
    }

    /// The delay before the first retry; each next one doubles it.
    #[must_use]
    pub fn with_base_delay(mut self, delay: Duration) -> Self {
        self.base_delay = delay;
        self
    }

    /// The longest delay between two attempts.
    #[must_use]
    pub fn with_max_delay(mut self, delay: Duration) -> Self {
        self.max_delay = delay;
        self
    }

    /// Whether to randomise each delay within its upper half (on by
    /// default; off gives exact, reproducible delays).
    #[must_use]
    pub fn with_jitter(mut self, jitter: bool) -> Self {
        self.jitter = jitter;
        self
    }

    /// The delay before retry `retry` (1 for the first retry), jitter
    /// applied.
    pub fn delay(&self, retry: u32) -> Duration {
        let doublings = retry.saturating_sub(1).min(31);
        let full = self
            .base_delay
            .saturating_mul(1u32 << doublings)
            .min(self.max_delay);
        if !self.jitter || full.is_zero() {
            return full;
        }
        let half = full / 2;
        let extra = rand::thread_rng().gen_range(0..=(full - half).as_nanos());
        half + Duration::from_nanos(u64::try_from(extra).unwrap_or(u64::MAX))
    }

    /// Whether a call that failed with `kind` may run again.
    fn should_retry(call: &Call, kind: ErrorKind) -> bool {
        kind.is_retryable() || (kind == ErrorKind::OutcomeUnknown && call.safe_to_repeat())
    }
}

impl Layer for RetryLayer {
    fn layer(&self, stores: Stores) -> Stores {
        interpose(stores, Arc::new(self.clone()))
    }
}

#[async_trait]
impl Interceptor for RetryLayer {
    async fn around(&self, call: &Call, mut proceed: Proceed<'_>) -> Option<Error> {
        let mut attempt = 1;
        loop {
            let last = attempt >= self.max_attempts || !call.repeatable;
            let outcome = if last {
                proceed.run().await
            } else {
                proceed.attempt().await
            };
            match outcome {
                Err(kind) if !last && RetryLayer::should_retry(call, kind) => {
                    tokio::time::sleep(self.delay(attempt)).await;
                    attempt += 1;
                }
                _ => return None,
            }
        }
    }

    fn wants_args(&self) -> bool {
        false
    }
}
