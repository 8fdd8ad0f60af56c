//! The conformance suite's durability-level check over the real store
//! layer on the simulated disk, whose harness can lose power.

use async_trait::async_trait;
use stowage_conformance::harness::Harness;
use stowage_core::{Durability, DurabilityLevel, Stores};

use super::*;

/// A file store on a simulated disk; `claim` overrides the durability
/// level its capabilities declare (to prove that the check catches a lie).
struct SimHarness {
    fs: SimFs,
    durability: Durability,
    claim: Option<DurabilityLevel>,
}

impl SimHarness {
    fn new(durability: Durability, claim: Option<DurabilityLevel>) -> Self {
        SimHarness {
            fs: SimFs::new(),
            durability,
            claim,
        }
    }

    fn stores(&self) -> Result<Stores> {
        let opts = FileOptions {
            durability: self.durability,
            ..small_opts()
        };
        let kv = Arc::new(open_sim(&self.fs, opts)?);
        let mut stores = stores_over(&kv)?;
        if let Some(level) = self.claim {
            stores.capabilities.durability = level;
        }
        Ok(stores)
    }
}

#[async_trait]
impl Harness for SimHarness {
    async fn open(&self) -> Result<Stores> {
        self.stores()
    }

    async fn reopen(&self, stores: Stores) -> Result<Stores> {
        drop(stores);
        self.stores()
    }

    async fn lose_power(&self, stores: Stores) -> Result<Stores> {
        // The process dies first (nothing more reaches the disk, not even
        // the checkpoint a clean drop writes), then the power goes.
        self.fs.crash_after(0);
        drop(stores);
        self.fs.power_loss(None);
        self.stores()
    }
}

#[test]
fn a_power_loss_claim_holds_on_the_simulated_disk() {
    runtime().block_on(async {
        let h = SimHarness::new(Durability::Sync, None);
        stowage_conformance::durability::power_loss_keeps_what_was_acknowledged(&h).await;
    });
}

/// The check fails a backend that claims `PowerLoss` but acknowledges
/// before the fsync (`buffered`).
#[test]
#[should_panic(expected = "acknowledged writes were lost at a simulated power loss")]
fn a_false_power_loss_claim_fails_the_check() {
    runtime().block_on(async {
        let h = SimHarness::new(Durability::Buffered, Some(DurabilityLevel::PowerLoss));
        stowage_conformance::durability::power_loss_keeps_what_was_acknowledged(&h).await;
    });
}
