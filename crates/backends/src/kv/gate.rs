//! The engine behind a door [`Stores::close`](stowage_core::Stores::close)
//! can shut: [`Gate`] forwards every seam call to the engine until it is
//! closed, then refuses them, so handles kept past `close` get a clear
//! error while the engine itself (its lock, its files) is released at once.

use std::sync::Arc;

use bytes::Bytes;
use parking_lot::RwLock;
use stowage_core::{Error, ErrorKind, Result};
use tokio::sync::watch;

use super::seam::{Batch, Direction, DurableFuture, OrderedKv, RangeSize, Table, Visit};

/// Forwards to the engine while open. Every call holds the read lock for
/// its duration (calls never nest), so [`Gate::close`] waits for the
/// calls already running and no call reaches the engine after it.
pub(crate) struct Gate {
    /// The backend's name, for the error after close.
    backend: &'static str,
    /// Asked once at construction: the store layer decides by it whether
    /// to start a writer thread.
    group_commits: bool,
    /// Asked once at construction, as `group_commits`.
    checks_values: bool,
    engine: RwLock<Option<Arc<dyn OrderedKv>>>,
    /// `Some(succeeded)` once the engine's close returned; a failed close
    /// means writes not yet durable may be lost.
    closed: watch::Sender<Option<bool>>,
}

impl Gate {
    pub(crate) fn new(backend: &'static str, engine: Arc<dyn OrderedKv>) -> Gate {
        Gate {
            backend,
            group_commits: engine.group_commits(),
            checks_values: engine.checks_values(),
            engine: RwLock::new(Some(engine)),
            closed: watch::Sender::new(None),
        }
    }

    fn closed(&self) -> Error {
        Error::conflict(format!(
            "the {} store was closed (Stores::close); open it again to use it",
            self.backend
        ))
    }

    /// The answer to a durability wait that found the gate shut: the write
    /// behind it happened before the close, which makes everything durable
    /// unless it fails, so the answer is the close's (which may still be
    /// running).
    fn close_answer(&self) -> impl std::future::Future<Output = Result<()>> + Send + 'static {
        let mut closed = self.closed.subscribe();
        let backend = self.backend;
        async move {
            let answer = closed.wait_for(Option::is_some).await;
            if answer.is_ok_and(|done| *done == Some(true)) {
                return Ok(());
            }
            Err(Error::new(
                ErrorKind::OutcomeUnknown,
                format!(
                    "the {backend} store was closed before this write was durable, and closing \
                     failed"
                ),
            ))
        }
    }

    fn with<T>(&self, f: impl FnOnce(&dyn OrderedKv) -> Result<T>) -> Result<T> {
        match &*self.engine.read() {
            Some(engine) => f(&**engine),
            None => Err(self.closed()),
        }
    }

    /// Shuts the gate, then closes the engine ([`OrderedKv::close`]) and
    /// drops it, which releases it unless a durability wait that started
    /// before still holds it (briefly). Blocking: run it off the runtime.
    ///
    /// # Errors
    /// The engine's close error; the engine is released all the same.
    fn close_blocking(&self) -> Result<()> {
        let engine = self.engine.write().take();
        match engine {
            Some(engine) => {
                let result = engine.close();
                self.closed.send_replace(Some(result.is_ok()));
                result
            }
            // Closed before: the first close's answer stands (a failed one
            // must not turn into a success for the writes waiting on it).
            None => Ok(()),
        }
    }
}

impl OrderedKv for Gate {
    fn get(&self, table: Table, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with(|e| e.get(table, key))
    }

    fn get_bytes(&self, table: Table, key: &[u8]) -> Result<Option<Bytes>> {
        self.with(|e| e.get_bytes(table, key))
    }

    fn checks_values(&self) -> bool {
        self.checks_values
    }

    fn scan(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.with(|e| e.scan(table, start, end, direction, limit))
    }

    fn scan_each(
        &self,
        table: Table,
        start: &[u8],
        end: Option<&[u8]>,
        direction: Direction,
        limit: usize,
        visit: Visit<'_>,
    ) -> Result<()> {
        self.with(|e| e.scan_each(table, start, end, direction, limit, visit))
    }

    fn measure(&self, table: Table, start: &[u8], end: Option<&[u8]>) -> Result<Option<RangeSize>> {
        self.with(|e| e.measure(table, start, end))
    }

    fn write(&self, batch: Batch) -> Result<()> {
        self.with(|e| e.write(batch))
    }

    fn compact(&self) -> Result<()> {
        self.with(|e| e.compact())
    }

    fn group_commits(&self) -> bool {
        self.group_commits
    }

    fn write_deferred(&self, batch: Batch) -> Result<Option<u64>> {
        self.with(|e| e.write_deferred(batch))
    }

    fn unsynced_ticket(&self) -> Option<u64> {
        match &*self.engine.read() {
            Some(engine) => engine.unsynced_ticket(),
            // A job that read a write not yet durable, then met the close:
            // its answer rests on the close making that write durable.
            None if self.group_commits => Some(u64::MAX),
            None => None,
        }
    }

    fn wait_durable_blocking(&self, ticket: u64) -> Result<()> {
        let engine = self.engine.read().clone();
        match engine {
            Some(engine) => engine.wait_durable_blocking(ticket),
            // The writer thread is no runtime thread: it may block on the
            // close's answer.
            None => futures::executor::block_on(self.close_answer()),
        }
    }

    fn wait_durable(self: Arc<Self>, ticket: u64) -> DurableFuture {
        let engine = self.engine.read().clone();
        match engine {
            Some(engine) => engine.wait_durable(ticket),
            None => Box::pin(async move { self.close_answer().await }),
        }
    }

    fn take_maintenance(&self) -> bool {
        self.with(|e| Ok(e.take_maintenance())).unwrap_or(false)
    }

    fn maintain(&self) -> Result<()> {
        self.with(|e| e.maintain())
    }

    fn close(&self) -> Result<()> {
        self.close_blocking()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;

    use futures::FutureExt;
    use parking_lot::Mutex;

    use super::*;

    /// An engine whose close blocks until the test says how it ended.
    struct SlowClose(Mutex<Option<mpsc::Receiver<bool>>>);

    impl OrderedKv for SlowClose {
        fn get(&self, _: Table, _: &[u8]) -> Result<Option<Vec<u8>>> {
            Ok(None)
        }
        fn scan(
            &self,
            _: Table,
            _: &[u8],
            _: Option<&[u8]>,
            _: Direction,
            _: usize,
        ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
            Ok(Vec::new())
        }
        fn write(&self, _: Batch) -> Result<()> {
            Ok(())
        }
        fn close(&self) -> Result<()> {
            let release = self.0.lock().take();
            match release.map(|r| r.recv()) {
                Some(Ok(false)) => Err(Error::internal("the closing fsync failed")),
                _ => Ok(()),
            }
        }
    }

    /// A write whose durability wait starts while the close is still
    /// running is answered by that close, not before it.
    #[test]
    fn a_durability_wait_during_close_gets_the_close_s_answer() {
        for succeeds in [true, false] {
            let (release, until) = mpsc::channel();
            let engine = Arc::new(SlowClose(Mutex::new(Some(until))));
            let gate = Arc::new(Gate::new("test", engine));
            let closing = std::thread::spawn({
                let gate = Arc::clone(&gate);
                move || gate.close()
            });
            while gate.engine.read().is_some() {
                std::thread::yield_now();
            }
            let mut wait = Arc::clone(&gate).wait_durable(7);
            assert!(
                (&mut wait).now_or_never().is_none(),
                "answered before the close"
            );
            release.send(succeeds).unwrap();
            let closed = closing.join().unwrap();
            assert_eq!(closed.is_ok(), succeeds);
            let answer = futures::executor::block_on(wait);
            match answer {
                Ok(()) => assert!(succeeds),
                Err(e) => {
                    assert!(!succeeds);
                    assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
                }
            }
        }
    }

    /// A second close must not turn the first close's failure into a
    /// success for the writes that wait on it. (Found by review.)
    #[test]
    fn a_failed_close_stays_failed_when_closed_again() {
        let (release, until) = mpsc::channel();
        release.send(false).unwrap();
        let engine = Arc::new(SlowClose(Mutex::new(Some(until))));
        let gate = Arc::new(Gate::new("test", engine));
        assert!(gate.close().is_err());
        assert!(gate.close().is_ok(), "closing again is a no-op");
        let answer = futures::executor::block_on(Arc::clone(&gate).wait_durable(7));
        assert_eq!(answer.map_err(|e| e.kind()), Err(ErrorKind::OutcomeUnknown));
        let answer = gate.wait_durable_blocking(7);
        assert_eq!(answer.map_err(|e| e.kind()), Err(ErrorKind::OutcomeUnknown));
    }
}
