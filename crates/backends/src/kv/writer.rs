//! The writer thread of an engine with group commit (the file engine):
//! mutations run one after another on one dedicated thread instead of a
//! blocking-pool thread each.
//!
//! Why: a mutation is short (its fsync is deferred, see `deferred`), so
//! handing each one to a pool thread and back cost more than the work —
//! two thread wake-ups per write, measured as the largest share of CPU
//! under 64 concurrent writers. The writer thread drains its queue
//! without sleeping while work is queued, so a busy store wakes it
//! rarely; callers wait for durability asynchronously, and the fsync
//! rounds run on the blocking pool while the writer goes on with the next
//! mutations (group commit).
//!
//! Engines without group commit (RocksDB, sled) keep running mutations on
//! the blocking pool: their writes wait for their own fsync, and one
//! thread would serialise those waits.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use stowage_core::{Error, Result};

/// A queued mutation.
pub(crate) type Job = Box<dyn FnOnce() + Send>;

/// The handle owned by the store; dropping it stops the thread once the
/// queue is empty.
pub(crate) struct Writer {
    shared: Arc<Shared>,
    /// Mutations submitted and not yet returned to their callers
    /// (including their wait for durability).
    in_flight: AtomicUsize,
}

/// Counts one mutation in flight until dropped (see [`Writer::enter`]).
pub(crate) struct InFlight<'a>(&'a AtomicUsize);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Shared {
    queue: Mutex<Queue>,
    wake: Condvar,
}

#[derive(Default)]
struct Queue {
    jobs: VecDeque<Job>,
    /// The thread is waiting for work (only then does a submit wake it).
    idle: bool,
    closed: bool,
}

impl Writer {
    /// Starts the thread.
    ///
    /// # Errors
    /// `Internal` when the OS refuses a new thread.
    pub(crate) fn start() -> Result<Writer> {
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::default()),
            wake: Condvar::new(),
        });
        let thread_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("stowage-writer".into())
            .spawn(move || run(&thread_shared))
            .map_err(|e| {
                Error::internal("could not start the store's writer thread").with_source(e)
            })?;
        Ok(Writer {
            shared,
            in_flight: AtomicUsize::new(0),
        })
    }

    /// Queues `job`; jobs run in submission order. A job that panics is
    /// dropped (its caller sees its channel close) and the thread goes on.
    pub(crate) fn submit(&self, job: Job) {
        let mut q = self.shared.queue.lock();
        q.jobs.push_back(job);
        if q.idle {
            q.idle = false;
            self.shared.wake.notify_one();
        }
    }

    /// Counts a mutation in flight until the guard is dropped (when its
    /// caller got the result, or gave up waiting).
    pub(crate) fn enter(&self) -> InFlight<'_> {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(&self.in_flight)
    }

    /// Whether the mutation running now is the only one in flight: no
    /// other caller is queued or waiting for a fsync.
    pub(crate) fn alone(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) <= 1
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

fn run(shared: &Shared) {
    let mut batch = Vec::new();
    loop {
        {
            let mut q = shared.queue.lock();
            while q.jobs.is_empty() {
                if q.closed {
                    return;
                }
                q.idle = true;
                shared.wake.wait(&mut q);
            }
            q.idle = false;
            batch.extend(q.jobs.drain(..));
        }
        for job in batch.drain(..) {
            // A panic drops the job's reply channel; the caller reports it.
            let _ = catch_unwind(AssertUnwindSafe(job));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    #[test]
    fn jobs_run_in_submission_order_and_survive_a_panicking_job() {
        let writer = Writer::start().unwrap();
        let (tx, rx) = mpsc::channel();
        for i in 0..100u32 {
            let tx = tx.clone();
            writer.submit(Box::new(move || {
                if i == 50 {
                    panic!("job {i} fails");
                }
                tx.send(i).unwrap();
            }));
        }
        drop(tx);
        let got: Vec<u32> = rx.iter().collect();
        let expected: Vec<u32> = (0..100).filter(|&i| i != 50).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn dropping_the_handle_stops_the_thread_after_the_queued_jobs() {
        let writer = Writer::start().unwrap();
        let (tx, rx) = mpsc::channel();
        let (hold_tx, hold_rx) = mpsc::channel::<()>();
        writer.submit(Box::new(move || {
            let _ = hold_rx.recv();
        }));
        let queued = tx.clone();
        writer.submit(Box::new(move || queued.send("queued").unwrap()));
        let shared = Arc::clone(&writer.shared);
        drop(writer);
        hold_tx.send(()).unwrap();
        assert_eq!(rx.recv().unwrap(), "queued");
        // The thread's own reference goes away when it exits.
        for _ in 0..1000 {
            if Arc::strong_count(&shared) == 1 {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        panic!("the writer thread did not stop");
    }
}
