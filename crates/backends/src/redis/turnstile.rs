//! In-process turnstiles: the write jobs of one scope in one process take
//! turns, so they do not fail each other's guards (and pay a rerun). Only
//! a speed-up: correctness comes from the guards. One turnstile per scope
//! in use, so jobs of different scopes never wait for each other (a fixed
//! table of hashed slots made unrelated runs queue behind each other and
//! cut the pipelining of a shared connection).

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;
use stowage_core::engine::Scope;
use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// The turnstiles of the scopes that have a job waiting or running.
#[derive(Default)]
pub(super) struct Turnstiles(Mutex<HashMap<Scope, Gate>>);

/// One scope's turnstile and the number of jobs waiting at it or in it.
type Gate = (Arc<AsyncMutex<()>>, usize);

/// A job's turn: held while it runs; dropping it lets the next job of
/// the scope in (and removes the turnstile when nobody else uses it).
pub(super) struct Turn<'a> {
    turnstiles: &'a Turnstiles,
    scope: Scope,
    lock: Arc<AsyncMutex<()>>,
    held: Option<OwnedMutexGuard<()>>,
}

impl Turnstiles {
    /// Waits for `scope`'s turn. Cancel-safe: a dropped wait leaves no
    /// turnstile behind.
    pub(super) async fn enter(&self, scope: &Scope) -> Turn<'_> {
        let lock = {
            let mut map = self.0.lock();
            let (lock, users) = map.entry(scope.clone()).or_default();
            *users += 1;
            Arc::clone(lock)
        };
        // Built before the wait, so a cancelled wait is counted out too.
        let mut turn = Turn {
            turnstiles: self,
            scope: scope.clone(),
            lock,
            held: None,
        };
        turn.held = Some(Arc::clone(&turn.lock).lock_owned().await);
        turn
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        drop(self.held.take());
        let mut map = self.turnstiles.0.lock();
        if let Some((_, users)) = map.get_mut(&self.scope) {
            *users -= 1;
            if *users == 0 {
                map.remove(&self.scope);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stowage_core::engine::Table;

    #[tokio::test]
    async fn one_scope_takes_turns_others_do_not_wait_and_nothing_is_left() {
        let t = Turnstiles::default();
        let a = Scope::entity(Table::Runs, b"a".to_vec());
        let b = Scope::entity(Table::Runs, b"b".to_vec());
        let first = t.enter(&a).await;
        // Another scope enters at once.
        let other = t.enter(&b).await;
        // The same scope waits.
        let mut second = Box::pin(t.enter(&a));
        assert!(futures::poll!(second.as_mut()).is_pending());
        drop(first);
        let second = second.await;
        drop((second, other));
        assert!(t.0.lock().is_empty());
        // A cancelled wait leaves nothing behind either.
        let held = t.enter(&a).await;
        let mut waiting = Box::pin(t.enter(&a));
        assert!(futures::poll!(waiting.as_mut()).is_pending());
        drop(waiting);
        drop(held);
        assert!(t.0.lock().is_empty());
    }
}
