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
//!
//! When more jobs are already queued once a group's mutations ran, the
//! thread hands the group's finishes to a second thread, the syncer,
//! and applies the next group while the syncer leads the fsync: under
//! many writers the fsync of one group overlaps the mutations of the
//! next instead of following them. The syncer answers its groups in the
//! order they were handed, and while it has any, every group goes to it,
//! so answers keep submission order. A group with nothing queued behind
//! it is answered on the writer thread as before (a lone writer pays no
//! hand-off). Mutations queued while an fsync runs join the next group
//! (group commit).
//!
//! Engines without group commit (RocksDB, sled) keep running mutations on
//! the blocking pool: their writes wait for their own fsync, and one
//! thread would serialise those waits.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};

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
    let mut syncer = None;
    let mut group = Vec::new();
    let mut finishes = Vec::new();
    loop {
        {
            let mut q = shared.queue.lock();
            while q.jobs.is_empty() {
                if q.closed {
                    // The syncer answers what it was handed before it stops.
                    drop(q);
                    if let Some(syncer) = syncer {
                        Syncer::stop(syncer);
                    }
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
        if finishes.is_empty() {
            continue;
        }
        let busy = syncer.as_ref().is_some_and(Syncer::busy);
        if !busy && shared.queue.lock().jobs.is_empty() {
            // Nothing waits behind this group: answer it here, with no
            // hand-off (a lone writer's path).
            run_finishes(&mut finishes);
            continue;
        }
        // More work is queued (or earlier answers are still being given):
        // the syncer leads this group's fsync while this thread applies
        // the next group, and answers in submission order.
        if syncer.is_none() {
            syncer = Syncer::start();
        }
        match &syncer {
            Some(s) => s.hand(std::mem::take(&mut finishes)),
            None => run_finishes(&mut finishes),
        }
    }
}

fn run_finishes(finishes: &mut Vec<Finish>) {
    for finish in finishes.drain(..) {
        let _ = catch_unwind(AssertUnwindSafe(finish));
    }
}

/// The thread that leads the fsyncs and gives the answers of groups the
/// writer thread handed off because more work was waiting: the fsync of
/// one group then overlaps the writes of the next. Batches run in the
/// order they were handed, so answers keep submission order; while any
/// is outstanding, the writer hands off every group (never answering one
/// itself ahead of an earlier one).
struct Syncer {
    batches: mpsc::Sender<Vec<Finish>>,
    /// Batches handed and not yet answered.
    outstanding: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<()>,
}

impl Syncer {
    /// `None` when the OS refuses a thread: the writer then answers every
    /// group itself, as it would with nothing queued.
    fn start() -> Option<Syncer> {
        let (batches, rx) = mpsc::channel::<Vec<Finish>>();
        let outstanding = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&outstanding);
        let thread = std::thread::Builder::new()
            .name("stowage-syncer".into())
            .spawn(move || {
                for mut batch in rx {
                    run_finishes(&mut batch);
                    counter.fetch_sub(1, Ordering::Release);
                }
            })
            .ok()?;
        Some(Syncer {
            batches,
            outstanding,
            thread,
        })
    }

    fn busy(&self) -> bool {
        self.outstanding.load(Ordering::Acquire) > 0
    }

    fn hand(&self, batch: Vec<Finish>) {
        self.outstanding.fetch_add(1, Ordering::Relaxed);
        if let Err(refused) = self.batches.send(batch) {
            // The syncer is gone (it cannot be while this handle lives):
            // answer here rather than drop the callers' answers.
            self.outstanding.fetch_sub(1, Ordering::Relaxed);
            run_finishes(&mut { refused.0 });
        }
    }

    /// Waits until every handed batch was answered.
    fn stop(self) {
        drop(self.batches);
        let _ = self.thread.join();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    /// A group whose jobs end with more work queued is answered by the
    /// syncer while the writer applies the next group; answers still come
    /// in submission order, each after its own job.
    #[test]
    fn the_next_group_is_applied_while_the_last_is_answered_in_order() {
        use std::time::Duration;
        let writer = Arc::new(Writer::start().unwrap());
        let (tx, rx) = mpsc::channel();
        let (hold_tx, hold_rx) = mpsc::channel::<()>();
        writer.submit(Box::new(move || {
            let _ = hold_rx.recv();
            None
        }));
        // Finish 0 returns only once job 2 (of the next group) ran: on the
        // writer thread it would wait for itself.
        let (ran_tx, ran_rx) = mpsc::channel::<()>();
        let ran_rx = Mutex::new(Some(ran_rx));
        let (queued_tx, queued_rx) = mpsc::channel::<()>();
        let submit = |i: u32, extra: Option<Box<dyn FnOnce() + Send>>| {
            let tx = tx.clone();
            let wait = (i == 0).then(|| ran_rx.lock().take().unwrap());
            writer.submit(Box::new(move || {
                tx.send(format!("job {i}")).unwrap();
                if let Some(extra) = extra {
                    extra();
                }
                Some(Box::new(move || {
                    if let Some(wait) = wait {
                        wait.recv_timeout(Duration::from_secs(10))
                            .expect("the next group ran while this one was answered");
                    }
                    tx.send(format!("finish {i}")).unwrap();
                }) as Finish)
            }));
        };
        let (started_tx, started_rx) = mpsc::channel::<()>();
        submit(0, None);
        // Job 1 (so its group) waits until the next group is queued.
        submit(
            1,
            Some(Box::new(move || {
                started_tx.send(()).unwrap();
                queued_rx.recv().unwrap();
            })),
        );
        hold_tx.send(()).unwrap();
        started_rx.recv().unwrap();
        submit(2, Some(Box::new(move || ran_tx.send(()).unwrap())));
        submit(3, None);
        queued_tx.send(()).unwrap();
        drop(tx);
        let got: Vec<String> = (0..8)
            .map(|_| rx.recv_timeout(Duration::from_secs(20)).unwrap())
            .collect();
        let at = |s: &str| got.iter().position(|g| g == s).unwrap();
        let finishes: Vec<&String> = got.iter().filter(|g| g.starts_with("finish")).collect();
        assert_eq!(finishes, ["finish 0", "finish 1", "finish 2", "finish 3"]);
        for i in 0..4 {
            assert!(
                at(&format!("job {i}")) < at(&format!("finish {i}")),
                "{got:?}"
            );
        }
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
