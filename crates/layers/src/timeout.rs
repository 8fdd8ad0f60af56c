//! [`TimeoutLayer`]: a deadline per store call.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use stowage_core::layer::{interpose, Call, Interceptor, Layer, Proceed};
use stowage_core::{Error, ErrorKind, Stores};

/// Gives every store call a deadline. A call still running when it passes
/// is cancelled (its future is dropped) and the caller gets:
///
/// - for a write ([`Operation::is_write`](stowage_core::layer::Operation::is_write)):
///   [`ErrorKind::OutcomeUnknown`] — its request may already have been
///   sent or applied, so it may or may not have happened (retry it only if
///   it is [safe to repeat](Call::safe_to_repeat), as
///   [`RetryLayer`](crate::RetryLayer) does);
/// - for a read: [`ErrorKind::Unavailable`] — a read changes nothing, so
///   it is safe to retry.
///
/// The message names the operation, the entity and the deadline. Timing
/// uses [`tokio::time`]: run it on a Tokio runtime with the time driver.
/// Cancelling drops the backend's future at an await point: what a
/// backend already committed stays committed (which is exactly why a
/// timed-out write is `OutcomeUnknown`).
#[derive(Debug, Clone, Copy)]
pub struct TimeoutLayer {
    deadline: Duration,
}

impl TimeoutLayer {
    /// Each call gets `deadline` to answer.
    pub fn new(deadline: Duration) -> Self {
        TimeoutLayer { deadline }
    }

    /// The deadline of each call.
    pub fn deadline(&self) -> Duration {
        self.deadline
    }

    fn timed_out(&self, call: &Call) -> Error {
        let what = match &call.entity {
            Some(entity) => format!("{} on {} {entity}", call.op, entity.kind()),
            None => call.op.to_string(),
        };
        if call.op.is_write() {
            Error::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "{what} did not answer within {:?}: it was cancelled and may or may not \
                     have been applied",
                    self.deadline
                ),
            )
        } else {
            Error::new(
                ErrorKind::Unavailable,
                format!(
                    "{what} did not answer within {:?}: the read was cancelled",
                    self.deadline
                ),
            )
        }
    }
}

impl Layer for TimeoutLayer {
    fn layer(&self, stores: Stores) -> Stores {
        interpose(stores, Arc::new(*self))
    }
}

#[async_trait]
impl Interceptor for TimeoutLayer {
    async fn around(&self, call: &Call, mut proceed: Proceed<'_>) -> Option<Error> {
        match tokio::time::timeout(self.deadline, proceed.run()).await {
            Ok(_outcome) => None,
            Err(_elapsed) => Some(self.timed_out(call)),
        }
    }

    fn wants_args(&self) -> bool {
        false
    }
}
