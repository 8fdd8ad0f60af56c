//! The write path: write jobs queue, and up to a few writers — each a
//! blocking thread holding one connection of the writers' own pool for as
//! long as jobs are queued — run jobs whose scopes do not overlap in
//! groups: one transaction and one `COMMIT` for many jobs (group commit).
//!
//! A caller that queues a job starts a writer when fewer writers run than
//! jobs wait (and fewer than the limit), so a lone caller's job runs at
//! once on a blocking thread with the connection used last — as a job
//! without groups would — and under load the running writers find the
//! queue full and take big groups.
//!
//! A group takes every lock its jobs need before the first job runs, in
//! the one global order every transaction of every process follows
//! (tables by id, then entities by lock key; see `locks`), so groups
//! cannot deadlock with each other or with single jobs. Its jobs run one
//! after another on the connection; each job's writes are staged, and all
//! of them are sent with `COMMIT` in one simple query. Staged writes are
//! invisible to the later jobs of the group, which is why no two jobs of a
//! group overlap: a job that overlaps one already taken waits for a later
//! group (and then reads what the earlier one committed).
//!
//! Only after `COMMIT` does any job of the group get its answer. A job
//! that fails gets its own error and its writes are dropped; the others
//! go on. A statement that fails aborts the transaction: the jobs staged
//! so far get `Unavailable` (nothing was applied) and the jobs not yet
//! started go back to the front of the queue.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use parking_lot::Mutex;
use stowage_core::engine::{Scope, WriteJob};
use stowage_core::{Error, ErrorKind, Result};
use tokio::sync::{oneshot, Notify};

use crate::group_commit::{answer, fail, Outcome, Reply};

use super::jobs;
use super::locks;
use super::pool::{Conn, Pool};
use super::sql::SqlConn;

/// The most jobs one group runs (bounds its locks and its transaction).
const MAX_GROUP: usize = 64;

/// A group starts no further job once its staged writes reach this many
/// bytes of SQL (blob chunks are 1 MiB, twice that as hex).
const MAX_GROUP_SQL: usize = 8 << 20;

/// One queued write job and where its answer goes.
struct Queued {
    scope: Scope,
    job: WriteJob,
    reply: Reply,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Queued>,
    /// Writers running (each takes groups until the queue is empty).
    running: usize,
    closing: bool,
}

struct Shared {
    state: Mutex<State>,
    /// The writers' connections: one per running writer, kept idle between.
    pool: Pool,
    schema: String,
    limit: usize,
    /// Signalled when the last running writer stops.
    stopped: Notify,
}

/// The write queue of one engine and its writers.
pub(super) struct Writers(Arc<Shared>);

impl Writers {
    /// Writers over connections of `pool`, at most `limit` at once.
    pub(super) fn new(pool: Pool, schema: String, limit: usize) -> Writers {
        Writers(Arc::new(Shared {
            state: Mutex::new(State::default()),
            pool,
            schema,
            limit: limit.max(1),
            stopped: Notify::new(),
        }))
    }

    /// Queues `job` and waits for its answer, which comes after its group
    /// committed. The job runs even if the caller stops waiting.
    ///
    /// # Errors
    /// The job's error; `closed()` after [`Writers::close`]; see the module
    /// docs for what a group's failure means.
    pub(super) async fn write(
        &self,
        scope: Scope,
        job: WriteJob,
        closed: impl Fn() -> Error,
    ) -> Result<()> {
        let (reply, answer) = oneshot::channel();
        let start = {
            let mut state = self.0.state.lock();
            if state.closing {
                return Err(closed());
            }
            state.jobs.push_back(Queued { scope, job, reply });
            let start = state.running < self.0.limit && state.jobs.len() > state.running;
            if start {
                state.running += 1;
            }
            start
        };
        if start {
            let writer = Writer(Some(Arc::clone(&self.0)));
            // Detached: the writer runs until the queue is empty.
            drop(tokio::task::spawn_blocking(move || writer.run()));
        }
        answer
            .await
            .map_err(|_| Error::internal("postgres: a writer stopped before answering a write"))?
    }

    /// Refuses new jobs, waits until the writers ran every queued one, and
    /// closes their connections.
    pub(super) async fn close(&self) {
        loop {
            {
                let mut state = self.0.state.lock();
                state.closing = true;
                if state.running == 0 {
                    break;
                }
            }
            self.0.stopped.notified().await;
        }
        self.0.pool.close().await;
    }
}

/// A writer handed to the blocking pool. One that the pool drops without
/// running it (its runtime shutting down) gives its place back: without
/// that, `running` would stay counted, `close` would wait for it forever,
/// and the jobs queued for it would never be answered.
struct Writer(Option<Arc<Shared>>);

impl Writer {
    fn run(mut self) {
        if let Some(shared) = self.0.take() {
            shared.write_groups();
        }
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        let Some(shared) = self.0.take() else {
            return;
        };
        let orphans = {
            let mut state = shared.state.lock();
            state.running -= 1;
            if state.running > 0 {
                return;
            }
            std::mem::take(&mut state.jobs)
        };
        shared.stopped.notify_one();
        let e = Error::new(
            ErrorKind::Unavailable,
            "postgres: the runtime shut down before a writer ran this write; nothing was applied",
        );
        fail(orphans.into_iter().map(|q| q.reply), &e);
    }
}

impl Shared {
    /// One writer: takes groups until the queue is empty.
    fn write_groups(&self) {
        let mut conn: Option<Conn> = None;
        loop {
            let group = {
                let mut state = self.state.lock();
                if state.jobs.is_empty() {
                    if let Some(conn) = conn.take() {
                        self.pool.checkin(conn);
                    }
                    state.running -= 1;
                    if state.running == 0 {
                        self.stopped.notify_one();
                    }
                    return;
                }
                take_group(&mut state.jobs)
            };
            let mut c = match conn.take() {
                Some(c) => c,
                None => match self.pool.checkout() {
                    Ok(c) => c,
                    Err(e) => {
                        fail(group.into_iter().map(|q| q.reply), &e);
                        continue;
                    }
                },
            };
            let unstarted = run_group(&mut c, &self.schema, group);
            if !unstarted.is_empty() {
                let mut state = self.state.lock();
                for queued in unstarted.into_iter().rev() {
                    state.jobs.push_front(queued);
                }
            }
            if c.usable() {
                conn = Some(c);
            }
        }
    }
}

/// Whether a job may share a group: entity scopes (each locks its own
/// entity) and unshared ones (no lock). Table scopes, and scopes this
/// version does not know, run alone.
fn groupable(scope: &Scope) -> bool {
    matches!(scope, Scope::Entity { .. } | Scope::Unshared)
}

/// Takes the next group from the front of `jobs`: the first job, then,
/// while the first is groupable, every later groupable job that overlaps
/// no job taken, up to the first job that is not groupable (so a table
/// scope is never overtaken for long). Jobs skipped stay in order.
fn take_group(jobs: &mut VecDeque<Queued>) -> Vec<Queued> {
    let Some(first) = jobs.pop_front() else {
        return Vec::new();
    };
    let mut group = vec![first];
    if !groupable(&group[0].scope) {
        return group;
    }
    let mut i = 0;
    while group.len() < MAX_GROUP {
        let Some(next) = jobs.get(i) else { break };
        if !groupable(&next.scope) {
            break;
        }
        let overlaps = matches!(next.scope, Scope::Entity { .. })
            && group.iter().any(|taken| taken.scope == next.scope);
        if overlaps {
            i += 1;
        } else if let Some(next) = jobs.remove(i) {
            group.push(next);
        }
    }
    group
}

/// Runs `group` as one transaction on `conn` and answers its jobs;
/// returns the jobs it did not start (the transaction was aborted first).
fn run_group(conn: &mut Conn, schema: &str, group: Vec<Queued>) -> Vec<Queued> {
    if let Err(e) = conn.prepare() {
        fail(group.into_iter().map(|q| q.reply), &e);
        return Vec::new();
    }
    let mut begin = Some(match group.as_slice() {
        [one] => locks::begin_sql(schema, &one.scope),
        _ => locks::begin_group_sql(schema, group.iter().map(|q| &q.scope)),
    });
    let mut outcomes = Vec::with_capacity(group.len());
    let mut staged = Vec::new();
    let mut staged_bytes = 0;
    let mut jobs = group.into_iter();
    while staged_bytes < MAX_GROUP_SQL {
        let Some(Queued { mut job, reply, .. }) = jobs.next() else {
            break;
        };
        let (result, failed, unsent, writes) = {
            let mut txn = SqlConn::new(conn, begin.take());
            let result = catch_unwind(AssertUnwindSafe(|| job(&mut txn))).unwrap_or_else(|_| {
                Err(Error::internal(
                    "postgres: the write job panicked; its writes were dropped",
                ))
            });
            (result, txn.failed(), txn.unsent_begin(), txn.staged())
        };
        // A job that read nothing leaves the opening statements to the next.
        begin = unsent;
        if failed {
            // PostgreSQL aborted the transaction: nothing of it can commit.
            let own = match result {
                Err(e) => e,
                Ok(()) => Error::internal(
                    "postgres: a statement of the write job failed and the job went on; \
                     its writes were rolled back",
                ),
            };
            conn.rollback();
            outcomes.push(Outcome::Failed(reply, own));
            let lost = Error::new(
                ErrorKind::Unavailable,
                "postgres: a write grouped with this one failed and the transaction was \
                 rolled back; nothing was applied",
            );
            answer(outcomes, Err(lost));
            return jobs.collect();
        }
        match result {
            Ok(()) => {
                staged_bytes += writes.iter().map(String::len).sum::<usize>();
                staged.extend(writes);
                outcomes.push(Outcome::Staged(reply));
            }
            Err(e) => outcomes.push(Outcome::Failed(reply, e)),
        }
    }
    let unstarted: Vec<Queued> = jobs.collect();
    let committed = jobs::commit(conn, begin, staged);
    answer(outcomes, committed);
    unstarted
}

#[cfg(test)]
mod tests {
    use stowage_core::engine::Table;

    use super::*;

    fn queued(scope: Scope) -> Queued {
        Queued {
            scope,
            job: Box::new(|_| Ok(())),
            reply: oneshot::channel().0,
        }
    }

    fn scopes(jobs: &[Queued]) -> Vec<Scope> {
        jobs.iter().map(|q| q.scope.clone()).collect()
    }

    #[test]
    fn a_group_takes_non_overlapping_jobs_and_leaves_the_rest_in_order() {
        let run = |k: &[u8]| Scope::entity(Table::Runs, k.to_vec());
        let mut jobs: VecDeque<Queued> = [
            run(b"a"),
            run(b"b"),
            run(b"a"),
            Scope::Unshared,
            run(b"b"),
            run(b"c"),
            Scope::Table(Table::Supersessions),
            run(b"d"),
        ]
        .into_iter()
        .map(queued)
        .collect();
        let group = take_group(&mut jobs);
        assert_eq!(
            scopes(&group),
            vec![run(b"a"), run(b"b"), Scope::Unshared, run(b"c")]
        );
        // The repeated entities wait, in order; the table scope is not
        // overtaken by the job behind it.
        let left: Vec<Queued> = jobs.into_iter().collect();
        assert_eq!(
            scopes(&left),
            vec![
                run(b"a"),
                run(b"b"),
                Scope::Table(Table::Supersessions),
                run(b"d")
            ]
        );
    }

    #[test]
    fn table_scopes_run_alone() {
        let mut jobs: VecDeque<Queued> = [
            Scope::Table(Table::Supersessions),
            Scope::entity(Table::Runs, b"a".to_vec()),
        ]
        .into_iter()
        .map(queued)
        .collect();
        assert_eq!(
            scopes(&take_group(&mut jobs)),
            vec![Scope::Table(Table::Supersessions)]
        );
        assert_eq!(jobs.len(), 1);
    }

    /// A writer the blocking pool drops unrun (its runtime shut down)
    /// answers the queued job `Unavailable` and gives its place back, so
    /// the caller and `close` do not wait forever. No server is needed:
    /// nothing connects.
    #[test]
    fn a_writer_dropped_unrun_answers_its_jobs_and_gives_its_place_back() {
        let pool = Pool::new(
            tokio_postgres::Config::new(),
            super::super::tls::Connector::Plain,
            "test".into(),
            1,
            false,
        );
        let writers = Arc::new(Writers::new(pool, "s".into(), 2));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let handle = rt.handle().clone();
        rt.shutdown_background();
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let err = handle
                .block_on(writers.write(Scope::Unshared, Box::new(|_| Ok(())), || {
                    Error::internal("closed")
                }))
                .unwrap_err();
            handle.block_on(writers.close());
            done.send(err)
        });
        let err = finished
            .recv_timeout(std::time::Duration::from_secs(20))
            .expect("a write or close hung: the dropped writer kept its place");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    }

    #[test]
    fn groups_are_bounded() {
        let mut jobs: VecDeque<Queued> = (0..MAX_GROUP + 3)
            .map(|n| queued(Scope::entity(Table::Runs, n.to_be_bytes().to_vec())))
            .collect();
        assert_eq!(take_group(&mut jobs).len(), MAX_GROUP);
        assert_eq!(jobs.len(), 3);
    }
}
