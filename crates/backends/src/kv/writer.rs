//! The writer thread of an engine with group commit (the file engine):
//! mutations run one after another on one dedicated thread instead of a
//! blocking-pool thread each, and the thread makes them durable in
//! groups.
//!
//! Why: a mutation is short (its fsync is deferred), so handing each one
//! to a pool thread and back cost more than the work — two thread
//! wake-ups per write, measured as the largest share of CPU under 64
//! concurrent writers. The writer thread drains its queue without
//! sleeping while work is queued, so a busy store wakes it rarely.
//!
//! Each job runs in two stages. The thread takes every queued job, runs
//! their first stages (the mutations) in submission order, then their
//! finishes in the same order: a finish waits for its mutation to be
//! durable and answers the caller. The first finish leads one fsync that
//! covers every mutation of the group, so the others find theirs durable
//! and answer at once. A caller is woken once per write, by its answer,
//! and a lone writer's fsync runs on this thread with no hand-off at all.
//! Mutations queued meanwhile wait for the fsync: the next group is as
//! large as what arrived during it (group commit).
//!
//! Engines without group commit (RocksDB, sled) keep running mutations on
//! the blocking pool: their writes wait for their own fsync, and one
//! thread would serialise those waits.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::{Condvar, Mutex};
use stowage_core::{Error, Result};

/// A queued mutation: its first stage runs the mutation and returns what
/// is left to do once every job of its group ran (the wait for
/// durability and the answer), if anything.
pub(crate) type Job = Box<dyn FnOnce() -> Option<Finish> + Send>;

/// The second stage of a [`Job`].
pub(crate) type Finish = Box<dyn FnOnce() + Send>;

/// The handle owned by the store; dropping it stops the thread once the
/// queue is empty.
pub(crate) struct Writer {
    shared: Arc<Shared>,
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
        Ok(Writer { shared })
    }

    /// Queues `job`; jobs run in submission order, and so do their
    /// finishes. A stage that panics is dropped (its caller sees its
    /// channel close) and the thread goes on.
    pub(crate) fn submit(&self, job: Job) {
        let mut q = self.shared.queue.lock();
        q.jobs.push_back(job);
        if q.idle {
            q.idle = false;
            self.shared.wake.notify_one();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.shared.queue.lock().closed = true;
        self.shared.wake.notify_one();
    }
}

fn run(shared: &Shared) {
    let mut group = Vec::new();
    let mut finishes = Vec::new();
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
            group.extend(q.jobs.drain(..));
        }
        // A panic drops the stage's reply channel; the caller reports it.
        for job in group.drain(..) {
            if let Ok(Some(finish)) = catch_unwind(AssertUnwindSafe(job)) {
                finishes.push(finish);
            }
        }
        for finish in finishes.drain(..) {
            let _ = catch_unwind(AssertUnwindSafe(finish));
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
                None
            }));
        }
        drop(tx);
        let got: Vec<u32> = rx.iter().collect();
        let expected: Vec<u32> = (0..100).filter(|&i| i != 50).collect();
        assert_eq!(got, expected);
    }

    /// The finishes of a group run after all of its first stages, in
    /// submission order; a panicking finish takes only itself down.
    #[test]
    fn a_group_s_finishes_run_after_its_jobs_in_order() {
        let writer = Writer::start().unwrap();
        let (hold_tx, hold_rx) = mpsc::channel::<()>();
        // Holds the thread so the next jobs are queued as one group.
        writer.submit(Box::new(move || {
            let _ = hold_rx.recv();
            None
        }));
        let (tx, rx) = mpsc::channel();
        for i in 0..4u32 {
            let tx = tx.clone();
            writer.submit(Box::new(move || {
                tx.send(format!("job {i}")).unwrap();
                Some(Box::new(move || {
                    if i == 2 {
                        panic!("finish {i} fails");
                    }
                    tx.send(format!("finish {i}")).unwrap();
                }) as Finish)
            }));
        }
        drop(tx);
        hold_tx.send(()).unwrap();
        let got: Vec<String> = rx.iter().collect();
        assert_eq!(
            got,
            ["job 0", "job 1", "job 2", "job 3", "finish 0", "finish 1", "finish 3"]
        );
    }

    #[test]
    fn dropping_the_handle_stops_the_thread_after_the_queued_jobs() {
        let writer = Writer::start().unwrap();
        let (tx, rx) = mpsc::channel();
        let (hold_tx, hold_rx) = mpsc::channel::<()>();
        writer.submit(Box::new(move || {
            let _ = hold_rx.recv();
            None
        }));
        let queued = tx.clone();
        writer.submit(Box::new(move || {
            queued.send("queued").unwrap();
            None
        }));
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
