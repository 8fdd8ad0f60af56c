//! Records in doubt (`stranded.rs`: appended when the medium turned
//! read-only, not known durable) are never reported durable, by any
//! path: a later round's fsync, a job that read one and wrote nothing, a
//! wait answered by the close; and an fsync refused at a rotation's seal
//! stops writes like one refused in a round. Each test failed on the
//! first version of `stranded.rs` (found by review, session 19).

use super::faulty_fs::{open_fault, FaultFs};
use super::stopped_writes::{big_segments, put};
use super::*;
use stowage_core::ErrorKind;

/// Record `a` written to the file (by a reader) but not yet fsynced,
/// record `s` after it still in the WAL's buffer; the medium turns
/// read-only and a read strands `s`. Returns the store and both seqs.
fn written_then_stranded(fs: &FaultFs) -> (FileKv, u64, u64) {
    let kv = open_fault(fs, big_segments()).unwrap();
    for b in workload(3, 10) {
        kv.write(b).unwrap();
    }
    let a = kv
        .append_batch(&put(Table::Meta, b"written", vec![1u8; 100]))
        .unwrap()
        .unwrap();
    // A reader writes the buffer out: `a` is in the file, not fsynced.
    assert!(kv.get(Table::Meta, b"written").unwrap().is_some());
    let s = kv
        .append_batch(&put(Table::Meta, b"stranded", vec![2u8; 100]))
        .unwrap()
        .unwrap();
    fs.set_read_only(true);
    // This read meets EROFS writing the buffer out: `s` is stranded.
    assert_eq!(
        kv.get(Table::Meta, b"stranded").unwrap(),
        Some(vec![2u8; 100])
    );
    assert_eq!(kv.in_doubt_from(), Some(s));
    (kv, a, s)
}

/// `a`'s writer leads a round after `s` was stranded; the fsync works (a
/// read-only ext4 answers fsync with 0; FaultFs models it so). The round
/// once marked everything up to `next_seq` synced — `s` included — and
/// `unsynced_seq` then said nothing was pending, so a job that read the
/// stranded value was answered without any wait (next test).
#[test]
fn a_round_after_a_strand_leaves_the_stranded_record_unsynced() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let (kv, a, s) = written_then_stranded(&fs);
    kv.block_until_durable(a).unwrap();
    let err = kv.block_until_durable(s).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(
        kv.commit.lock().synced <= s,
        "synced = {} covers the stranded record {s}",
        kv.commit.lock().synced
    );
    assert_eq!(
        kv.unsynced_seq(),
        Some(s),
        "the stranded record is reported as not pending"
    );
}

/// The same through the store layer: a write job that reads the stranded
/// value and writes nothing (a conditional write that finds the key) was
/// answered Ok, resting on a value a reopen will not find.
#[test]
fn a_job_that_read_a_stranded_value_is_not_acknowledged() {
    use stowage_core::engine::{Engine, Scope};
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let (kv, a, _s) = written_then_stranded(&fs);
    kv.block_until_durable(a).unwrap();
    let kv = Arc::new(kv);
    let caps = crate::kv::file::capabilities(kv.opts.durability, 1 << 30);
    let engine =
        crate::kv::engine::KvEngine::new(Arc::clone(&kv) as Arc<dyn OrderedKv>, caps).unwrap();
    let rt = runtime();
    let outcome = rt.block_on(async {
        let durable = engine
            .write(
                Scope::entity(Table::Meta, b"stranded".to_vec()),
                Box::new(|txn| {
                    let seen = txn.get(Table::Meta, b"stranded")?;
                    assert_eq!(seen, Some(vec![2u8; 100]));
                    Ok(())
                }),
            )
            .await?;
        durable.wait().await
    });
    let err = outcome.expect_err("answered Ok after reading a value in doubt");
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
}

/// A write appended (ticket taken) whose frame is then stranded, and the
/// store closed before its durability wait runs (a finish queued behind
/// the syncer, or an async `Durable` not yet polled). The close once
/// succeeded (it waits only for the records before those in doubt), and
/// the gate answers every wait that finds it shut with the close's
/// answer: the write was acknowledged, yet a reopen does not find it.
#[test]
fn a_close_after_a_strand_does_not_acknowledge_the_stranded_write() {
    use crate::kv::gate::Gate;
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, big_segments()).unwrap();
    for b in workload(3, 10) {
        kv.write(b).unwrap();
    }
    let gate = Gate::new("file", Arc::new(kv) as Arc<dyn OrderedKv>);
    let ticket = gate
        .write_deferred(put(Table::Meta, b"stranded", vec![2u8; 100]))
        .unwrap()
        .expect("a durable store hands a ticket");
    fs.set_read_only(true);
    // A reader strands the frame.
    assert!(gate.get(Table::Meta, b"stranded").unwrap().is_some());
    let closed = gate.close();
    let waited = gate.wait_durable_blocking(ticket);
    fs.set_read_only(false);
    let kv = open_fault(&fs, big_segments()).unwrap();
    let found = kv.get(Table::Meta, b"stranded").unwrap();
    assert!(found.is_none(), "the stranded write never reached the disk");
    assert!(
        waited.is_err(),
        "the stranded write was acknowledged durable (close: {closed:?}), but a reopen \
         does not find it"
    );
}

/// An fsync refused with EROFS (FaultFs::fail_syncs, "an ext4 that
/// aborted its journal") met first by a rotation's seal instead of by a
/// round: the docs say a medium turning read-only under applied records
/// stops writes instead of poisoning, and a refused start of the next
/// segment does so; the seal's fsync once poisoned (`sync_log`), so
/// every read of acknowledged data failed. The same happened when a round
/// met EROFS first and a rotation already past `check_writable` (the
/// writer thread, concurrent with the syncer) then sealed.
#[test]
fn an_fsync_refused_at_a_seal_stops_writes_instead_of_poisoning() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, small_opts()).unwrap();
    let mut model = Model::new();
    for b in workload(3, 3) {
        kv.write(b.clone()).unwrap();
        apply_model(&mut model, &b);
    }
    fs.fail_syncs(true);
    // Larger than what is left of the 4 KiB segment: it rotates first.
    let err = kv
        .write(put(Table::Meta, b"next", vec![6u8; 4000]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    kv.check_poison().expect("not poisoned");
    assert_eq!(dump(&kv).unwrap(), model, "reads of acknowledged data");
}
