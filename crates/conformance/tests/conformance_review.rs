//! Review of the conformance suite itself: checks that fail against a
//! correct backend (timing assumptions), and a third-party-style harness
//! written only from the public docs.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use stowage_backends::memory::MemoryBackend;
use stowage_conformance::{self as suite, Harness, Tamper};
use stowage_core::layer::{interpose, Call, Interceptor, Proceed};
use stowage_core::{DurabilityLevel, Error, Result, StoreEnv, Stores};

/// A correct store whose every call takes `delay` (a loaded CI machine, a
/// remote database, a `WAIT`ing Redis): the rules it keeps are exactly the
/// memory backend's.
struct Slow(Duration);

#[async_trait]
impl Interceptor for Slow {
    async fn around(&self, _call: &Call, proceed: Proceed<'_>) -> Option<Error> {
        tokio::time::sleep(self.0).await;
        let _ = proceed.await;
        None
    }
}

/// A harness on the system clock (no `open_with`, which is optional per
/// the crate docs) over a correct but slow memory store.
struct SlowHarness {
    backend: MemoryBackend,
    delay: Duration,
}

#[async_trait]
impl Harness for SlowHarness {
    async fn open(&self) -> Result<Stores> {
        Ok(interpose(self.backend.stores(), Arc::new(Slow(self.delay))))
    }
}

fn slow(delay_ms: u64) -> SlowHarness {
    SlowHarness {
        backend: MemoryBackend::new(StoreEnv::default()),
        delay: Duration::from_millis(delay_ms),
    }
}

/// `lifecycle::gc_spares_recent_puts` on the wall clock assumes that the
/// re-`put` of a blob, one more `put` and the `gc_blobs` call all fit in
/// one second (the grace period): a correct backend whose calls take
/// 600 ms each sees the re-put blob collected (it really is older than the
/// grace period by then), and the check fails. Flaky under load.
#[test]
fn gc_spares_recent_puts_passes_on_a_correct_slow_backend() {
    suite::__run(async {
        suite::lifecycle::gc_spares_recent_puts(&slow(600)).await;
    });
}

/// Same shape: `log_activity_defers_expiry` on the wall clock needs the
/// append and the `expire_sessions` that follows it to be less than one
/// second apart.
#[test]
fn log_activity_defers_expiry_passes_on_a_correct_slow_backend() {
    suite::__run(async {
        suite::lifecycle::log_activity_defers_expiry(&slow(1_100)).await;
    });
}

/// A third-party harness written from the crate docs only: a store that
/// claims to survive `kill -9` and whose "reopen" opens the same data again
/// (as a durable engine would, from its files). Everything public.
struct ThirdParty {
    backend: MemoryBackend,
}

fn claim_durable(mut stores: Stores) -> Stores {
    stores.capabilities.durability = DurabilityLevel::ProcessCrash;
    stores
}

#[async_trait]
impl Harness for ThirdParty {
    async fn open(&self) -> Result<Stores> {
        Ok(claim_durable(self.backend.stores()))
    }

    async fn reopen(&self, stores: Stores) -> Result<Stores> {
        drop(stores);
        Ok(claim_durable(self.backend.stores()))
    }

    async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
        Ok(claim_durable(MemoryBackend::new(env).stores()))
    }

    async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
        suite::tamper_engine(self.backend.engine(), target).await
    }
}

async fn third_party() -> ThirdParty {
    ThirdParty {
        backend: MemoryBackend::new(StoreEnv::default()),
    }
}

mod third_party_suite {
    use super::third_party;
    stowage_conformance::conformance_tests!(third_party);
}

// ---------------------------------------------------------------------------
// Blob references left behind by rejected calls: no check catches them.
// ---------------------------------------------------------------------------

mod leaky {
    use std::panic::{catch_unwind, AssertUnwindSafe};
    use std::sync::Arc;

    use async_trait::async_trait;
    use stowage_backends::memory::MemoryBackend;
    use stowage_conformance::{self as suite, Harness, Tamper};
    use stowage_core::{
        AgentKey, Digest, Lifecycle, PutOutcome, ReleaseMetadata, ReleaseRecord, ReleaseRegistry,
        Resolution, Result, StoreEnv, Stores, Supersession, SupersessionCursor, SupersessionStore,
        Timestamp,
    };

    /// A release registry whose *rejected* promotes leave a reference to
    /// their spec blob behind (as a backend that records its call's
    /// reference before the write, SPEC §10 / ARCHITECTURE, and forgets to
    /// drop it when the write is refused): the blob is never collected.
    struct LeakyReleases {
        inner: Arc<dyn ReleaseRegistry>,
        lifecycle: Arc<dyn Lifecycle>,
    }

    #[async_trait]
    impl ReleaseRegistry for LeakyReleases {
        async fn promote(
            &self,
            name: &str,
            spec: Digest,
            meta: ReleaseMetadata,
            expected: Option<u64>,
        ) -> Result<ReleaseRecord> {
            let out = self.inner.promote(name, spec, meta, expected).await;
            if out.is_err() {
                let _ = self
                    .lifecycle
                    .pin_blob(&spec, "leaked-by-a-rejected-call")
                    .await;
            }
            out
        }
        async fn rollback(&self, name: &str, by: &str) -> Result<ReleaseRecord> {
            self.inner.rollback(name, by).await
        }
        async fn rollback_to(&self, name: &str, seq: u64, by: &str) -> Result<ReleaseRecord> {
            self.inner.rollback_to(name, seq, by).await
        }
        async fn current(&self, name: &str) -> Result<ReleaseRecord> {
            self.inner.current(name).await
        }
        async fn history(
            &self,
            name: &str,
            before: Option<u64>,
            limit: usize,
        ) -> Result<Vec<ReleaseRecord>> {
            self.inner.history(name, before, limit).await
        }
        async fn list_names(&self, after: Option<&str>, limit: usize) -> Result<Vec<String>> {
            self.inner.list_names(after, limit).await
        }
    }

    /// The same for supersessions: a rejected put (bad signature, cycle,
    /// conflict) leaves a reference to its target and replacement.
    struct LeakySupersessions {
        inner: Arc<dyn SupersessionStore>,
        lifecycle: Arc<dyn Lifecycle>,
    }

    #[async_trait]
    impl SupersessionStore for LeakySupersessions {
        async fn put(&self, record: Supersession) -> Result<PutOutcome> {
            let (target, replacement) = (record.target, record.replacement);
            let out = self.inner.put(record).await;
            if out.is_err() {
                for d in std::iter::once(target).chain(replacement) {
                    let _ = self
                        .lifecycle
                        .pin_blob(&d, "leaked-by-a-rejected-call")
                        .await;
                }
            }
            out
        }
        async fn get(&self, target: &Digest) -> Result<Option<Supersession>> {
            self.inner.get(target).await
        }
        async fn is_superseded(&self, target: &Digest) -> Result<bool> {
            self.inner.is_superseded(target).await
        }
        async fn by_agent(
            &self,
            agent: &AgentKey,
            from: Timestamp,
            to: Option<Timestamp>,
            after: Option<SupersessionCursor>,
            limit: usize,
        ) -> Result<Vec<Supersession>> {
            self.inner.by_agent(agent, from, to, after, limit).await
        }
        async fn list(&self, after: Option<Digest>, limit: usize) -> Result<Vec<Supersession>> {
            self.inner.list(after, limit).await
        }
        async fn resolve(&self, hash: &Digest) -> Result<Resolution> {
            self.inner.resolve(hash).await
        }
    }

    fn leaky(inner: Stores) -> Stores {
        let mut s = inner.clone();
        s.releases = Arc::new(LeakyReleases {
            inner: inner.releases,
            lifecycle: inner.lifecycle.clone(),
        });
        s.supersessions = Arc::new(LeakySupersessions {
            inner: inner.supersessions,
            lifecycle: inner.lifecycle,
        });
        s
    }

    struct LeakyHarness {
        backend: MemoryBackend,
    }

    #[async_trait]
    impl Harness for LeakyHarness {
        async fn open(&self) -> Result<Stores> {
            Ok(leaky(self.backend.stores()))
        }
        async fn open_with(&self, env: StoreEnv) -> Result<Stores> {
            Ok(leaky(MemoryBackend::new(env).stores()))
        }
        async fn tamper(&self, _stores: &Stores, target: Tamper) -> Result<()> {
            suite::tamper_engine(self.backend.engine(), target).await
        }
    }

    /// Runs every named check on a fresh leaky harness; returns those that failed.
    macro_rules! failing {
        ($($module:ident :: $check:ident),* $(,)?) => {{
            let mut failed: Vec<&str> = Vec::new();
            $(
                let outcome = catch_unwind(AssertUnwindSafe(|| {
                    suite::__run(async {
                        let h = LeakyHarness { backend: MemoryBackend::new(StoreEnv::default()) };
                        suite::$module::$check(&h).await;
                    })
                }));
                if outcome.is_err() {
                    failed.push(concat!(stringify!($module), "::", stringify!($check)));
                }
            )*
            failed
        }};
    }

    /// SPEC §2 "invalid input changes nothing" and §10 GC: a promote or
    /// supersession put that is refused (`InvalidInput`, `Conflict`) must
    /// leave no blob reference, or the blob is never collected. Only run
    /// calls are checked for this (`lifecycle::failed_run_calls_reference_nothing`);
    /// the "changed nothing" snapshot (`util::snapshot`) sees no pins or
    /// references. `lifecycle::failed_release_calls_reference_nothing`
    /// catches it.
    #[test]
    fn some_check_catches_references_left_by_rejected_calls() {
        // The bug is observable: a blob named only by a refused promote
        // survives GC with grace 0.
        suite::__run(async {
            let s = leaky(MemoryBackend::new(StoreEnv::default()).stores());
            let d = s.cas.put(bytes::Bytes::from_static(b"spec")).await.unwrap();
            let refused = s
                .releases
                .promote("bad\nname", d, ReleaseMetadata::new("v1", "ci"), None)
                .await;
            assert_eq!(
                refused.unwrap_err().kind(),
                stowage_core::ErrorKind::InvalidInput
            );
            let gc = stowage_core::lifecycle::BlobGc::grace(std::time::Duration::ZERO);
            s.lifecycle.gc_blobs(&gc, None).await.unwrap();
            assert!(s.cas.contains(&d).await.unwrap(), "the leak keeps the blob");
        });
        let failed = failing!(
            releases::promote_current_round_trip,
            releases::unknown_name_not_found,
            releases::compare_and_promote,
            releases::hostile_input_rejected,
            releases::racing_compare_and_promote,
            releases::compare_and_promote_after_rollbacks,
            supersessions::put_idempotent_and_append_only,
            supersessions::bad_signatures_rejected,
            supersessions::invalid_records_rejected,
            supersessions::cycles_rejected,
            supersessions::racing_puts_one_stored,
            supersessions::racing_cycle_rejected,
            lifecycle::gc_collects_only_unreferenced,
            lifecycle::gc_spares_recent_puts,
            lifecycle::pins,
            lifecycle::gc_race_keeps_referenced,
            lifecycle::failed_run_calls_reference_nothing,
            lifecycle::failed_release_calls_reference_nothing,
            lifecycle::fork_release_copies_history,
            lifecycle::stats_count_what_is_stored,
            lifecycle::gc_keeps_every_release_spec,
            hostile::bad_identifiers_everywhere,
            hostile::identifier_length_edges,
        );
        assert!(
            !failed.is_empty(),
            "no conformance check notices blob references left behind by rejected promotes \
             and supersession puts"
        );
    }
}
