//! The model-based test (SPEC §8): random operation sequences over all five
//! stores, checked against a simple sequential reference model after every
//! operation (its outcome) and at the end (everything a reader can observe).

mod compare;
mod reference;
mod step;

use std::future::Future;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use stowage_core::Stores;

use crate::harness::Harness;
use crate::util::open;

/// Random sequences per run of the model-based test.
const CASES: u32 = 24;
/// Longest operation sequence.
const MAX_OPS: usize = 40;
/// How long one sequence may take.
const CASE_TIMEOUT: Duration = Duration::from_secs(120);

/// One operation on the stores. Small index spaces make collisions (same
/// blob, run, name, session, key or target) frequent.
#[derive(Debug, Clone)]
pub(crate) enum Op {
    CasPut(u8),
    CasDelete(u8),
    CasGet(u8),
    RunCreate {
        agent: u8,
        spec: u8,
    },
    RunAppend {
        run: u8,
        key: Option<u8>,
        /// Compare-and-append: `NewEvent::expected_seq`.
        expected: Option<u8>,
    },
    RunFinish {
        run: u8,
        status: u8,
    },
    Promote {
        name: u8,
        spec: u8,
        /// Compare-and-promote: the expected current seq.
        expected: Option<u8>,
    },
    Rollback {
        name: u8,
    },
    RollbackTo {
        name: u8,
        seq: u8,
    },
    SessionCreate {
        id: u8,
    },
    SessionSave {
        id: u8,
        expected: Option<u8>,
    },
    SessionState {
        id: u8,
        state: u8,
    },
    SessionDelete {
        id: u8,
    },
    LogAppend {
        id: u8,
        key: Option<u8>,
    },
    LogReplace {
        id: u8,
        len: u8,
        expected: Option<u8>,
    },
    SupPut {
        target: u8,
        replacement: Option<u8>,
        agent: u8,
        ms: u8,
    },
    /// Close and reopen the store (durable backends only; a no-op elsewhere).
    Reopen,
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let key = proptest::option::of(0..3u8);
    prop_oneof![
        2 => (0..4u8).prop_map(Op::CasPut),
        1 => (0..4u8).prop_map(Op::CasDelete),
        1 => (0..4u8).prop_map(Op::CasGet),
        3 => (0..2u8, 0..3u8).prop_map(|(agent, spec)| Op::RunCreate { agent, spec }),
        4 => (0..4u8, key.clone(), proptest::option::of(0..4u8))
            .prop_map(|(run, key, expected)| Op::RunAppend { run, key, expected }),
        2 => (0..4u8, 0..3u8).prop_map(|(run, status)| Op::RunFinish { run, status }),
        3 => (0..2u8, 0..3u8, proptest::option::of(0..4u8))
            .prop_map(|(name, spec, expected)| Op::Promote { name, spec, expected }),
        2 => (0..2u8).prop_map(|name| Op::Rollback { name }),
        1 => (0..2u8, 0..5u8).prop_map(|(name, seq)| Op::RollbackTo { name, seq }),
        3 => (0..3u8).prop_map(|id| Op::SessionCreate { id }),
        2 => (0..3u8, proptest::option::of(1..5u8))
            .prop_map(|(id, expected)| Op::SessionSave { id, expected }),
        1 => (0..3u8, 0..5u8).prop_map(|(id, state)| Op::SessionState { id, state }),
        1 => (0..3u8).prop_map(|id| Op::SessionDelete { id }),
        5 => (0..3u8, key).prop_map(|(id, key)| Op::LogAppend { id, key }),
        2 => (0..3u8, 0..3u8, proptest::option::of(0..4u8))
            .prop_map(|(id, len, expected)| Op::LogReplace { id, len, expected }),
        4 => (0..4u8, proptest::option::of(0..4u8), 0..2u8, 0..4u8).prop_map(
            |(target, replacement, agent, ms)| Op::SupPut {
                target,
                replacement,
                agent,
                ms
            }
        ),
        1 => Just(Op::Reopen),
    ]
}

/// Runs `ops` on a fresh store and on the reference model, comparing every
/// outcome and then the whole observable state.
/// On durable backends it also reopens the store where the sequence says
/// so and at the end, and compares again after the final reopen.
async fn random_sequences_match_model(h: &dyn Harness, ops: &[Op]) -> Result<(), String> {
    let mut stores = open(h).await;
    let mut model = reference::Model::default();
    for (i, op) in ops.iter().enumerate() {
        if let Op::Reopen = op {
            stores = reopen_if_durable(h, stores).await?;
            continue;
        }
        step::step(&stores, &mut model, i, op)
            .await
            .map_err(|e| format!("op #{i} {op:?}: {e}"))?;
    }
    compare::compare(&stores, &model)
        .await
        .map_err(|e| format!("after {} ops, final state: {e}", ops.len()))?;
    if stores.capabilities.survives_kill() {
        let stores = reopen_if_durable(h, stores).await?;
        compare::compare(&stores, &model)
            .await
            .map_err(|e| format!("after {} ops and a reopen, final state: {e}", ops.len()))?;
    }
    Ok(())
}

/// Reopens a durable store (which must support it); returns others as they are.
async fn reopen_if_durable(h: &dyn Harness, stores: Stores) -> Result<Stores, String> {
    if !stores.capabilities.survives_kill() {
        return Ok(stores);
    }
    let level = stores.capabilities.durability;
    h.reopen(stores).await.map_err(|e| {
        format!(
            "the backend claims durability {level}, which survives closing the store, \
             so its harness must reopen the store: {e}"
        )
    })
}

/// The seed of the model-based test when `STOWAGE_MODEL_SEED` is unset.
pub const DEFAULT_MODEL_SEED: u64 = 0x5704_a6e0;

/// Runs the model-based test: [`CASES`] random sequences of up to
/// [`MAX_OPS`] operations, each on a fresh harness from `factory`.
///
/// The sequences come from a seeded generator, so a run is reproducible and
/// CI never flakes: the seed is `STOWAGE_MODEL_SEED` when set (try other
/// seeds to explore further), else [`DEFAULT_MODEL_SEED`]. A failure
/// message names the seed.
#[doc(hidden)]
pub fn __run_model<H, F, Fut>(factory: F)
where
    H: Harness,
    F: Fn() -> Fut,
    Fut: Future<Output = H>,
{
    let seed = match std::env::var("STOWAGE_MODEL_SEED") {
        Ok(v) => match v.trim().parse() {
            Ok(seed) => seed,
            Err(e) => panic!("STOWAGE_MODEL_SEED={v:?} is not a u64: {e}"),
        },
        Err(_) => DEFAULT_MODEL_SEED,
    };
    __run_model_seeded(factory, seed);
}

/// [`__run_model`] with an explicit seed.
#[doc(hidden)]
pub fn __run_model_seeded<H, F, Fut>(factory: F, seed: u64)
where
    H: Harness,
    F: Fn() -> Fut,
    Fut: Future<Output = H>,
{
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => panic!("cannot build a tokio runtime for the model test: {e}"),
    };
    let config = Config {
        cases: CASES,
        max_shrink_iters: 200,
        failure_persistence: None,
        ..Config::default()
    };
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes);
    let mut runner = TestRunner::new_with_rng(config, rng);
    let strategy = proptest::collection::vec(op_strategy(), 1..=MAX_OPS);
    let result = runner.run(&strategy, |ops| {
        runtime.block_on(async {
            let harness = factory().await;
            match tokio::time::timeout(CASE_TIMEOUT, random_sequences_match_model(&harness, &ops))
                .await
            {
                Ok(outcome) => outcome.map_err(TestCaseError::fail),
                Err(_) => Err(TestCaseError::fail(format!(
                    "sequence did not finish within {CASE_TIMEOUT:?}"
                ))),
            }
        })
    });
    if let Err(e) = result {
        panic!(
            "model-based test (seed {seed}; rerun with STOWAGE_MODEL_SEED={seed}): \
             the backend disagrees with the reference model: {e}"
        );
    }
}
