//! Faults below the file system on the read side and at open: EIO on a
//! `pread` of a value, of a segment or of a pack at open, and a read that
//! must first write out the WAL's buffered frames when that write fails
//! (injected by [`FaultFs`] around the simulated disk).

use super::super::vfs::Vfs;
use super::faulty_fs::{open_fault, FaultFs};
use super::*;
use stowage_core::ErrorKind;

fn put(table: Table, key: &[u8], value: Vec<u8>) -> Batch {
    let mut b = Batch::default();
    b.put(table, key.to_vec(), value);
    b
}

/// EIO on a `pread` of a value is an error (`Internal`), never `Ok(None)`
/// or wrong bytes, and does not poison the engine: reads resume once the
/// fault is gone.
#[test]
fn eio_on_a_value_read_is_an_error_and_reads_resume() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, small_opts()).unwrap();
    kv.write(put(Table::Meta, b"k", vec![1u8; 300])).unwrap();
    fs.fail_reads_of(Some(".wal"));
    let err = kv.get(Table::Meta, b"k").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    let err = kv
        .scan(Table::Meta, &[], None, Direction::Forward, 10)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    fs.fail_reads_of(None);
    assert_eq!(kv.get(Table::Meta, b"k").unwrap().unwrap(), vec![1u8; 300]);
}

/// EIO reading a segment at open is a clean error, with or without
/// salvage (nothing is given up for it); the next open, the fault gone,
/// has everything.
#[test]
fn eio_reading_a_segment_at_open_is_a_clean_error() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let mut model = Model::new();
    {
        let kv = open_fault(&fs, small_opts()).unwrap();
        for b in workload(5, 30) {
            kv.write(b.clone()).unwrap();
            apply_model(&mut model, &b);
        }
    }
    for salvage in [false, true] {
        fs.fail_reads_of(Some(".wal"));
        let err = open_fault(
            &fs,
            FileOptions {
                salvage,
                ..small_opts()
            },
        )
        .err()
        .unwrap();
        assert_eq!(err.kind(), ErrorKind::Internal, "salvage={salvage}: {err}");
        fs.fail_reads_of(None);
    }
    let kv = open_fault(&fs, small_opts()).unwrap();
    assert_eq!(dump(&kv).unwrap(), model);
}

/// With `salvage=true`, an I/O error (EIO here; EMFILE or ENOMEM alike)
/// while opening an intact pack fails the open instead of being taken for
/// damage: the pack's entries were once dropped (acknowledged data lost)
/// and the file set aside as `.lost` for a transient error. A segment's or
/// checkpoint's read error is propagated the same way.
#[test]
fn salvage_does_not_give_up_an_intact_pack_for_a_read_error() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let mut model = Model::new();
    {
        let kv = open_fault(&fs, small_opts()).unwrap();
        for b in workload(9, 40) {
            kv.write(b.clone()).unwrap();
            apply_model(&mut model, &b);
        }
        kv.compact().unwrap();
        kv.close().unwrap();
    }
    let salvage = FileOptions {
        salvage: true,
        ..small_opts()
    };
    fs.fail_reads_of(Some(".pack"));
    let err = open_fault(&fs, salvage.clone()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    fs.fail_reads_of(None);
    assert!(
        !sim.list(&sim_dir())
            .unwrap()
            .iter()
            .any(|n| n.ends_with(".lost")),
        "nothing is set aside"
    );
    // The disk is fine again: everything acknowledged is still there.
    let kv = open_fault(&fs, salvage).unwrap();
    assert!(kv.recovery_report().lost.is_empty());
    assert_eq!(dump(&kv).unwrap(), model);
}

/// Damage is still salvaged: a pack whose trailer is gone (a cut file) is
/// given up by salvage, its entries reported lost, the file set aside.
#[test]
fn salvage_still_gives_up_a_damaged_pack() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    {
        let kv = open_fault(&fs, small_opts()).unwrap();
        for b in workload(9, 40) {
            kv.write(b).unwrap();
        }
        kv.compact().unwrap();
        kv.close().unwrap();
    }
    let pack = sim
        .list(&sim_dir())
        .unwrap()
        .into_iter()
        .find(|n| n.ends_with(".pack"))
        .expect("a pack");
    sim.edit(&sim_dir().join(&pack), |d| {
        d.pop();
    });
    let err = open_fault(&fs, small_opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    let kv = open_fault(
        &fs,
        FileOptions {
            salvage: true,
            ..small_opts()
        },
    )
    .unwrap();
    let lost = &kv.recovery_report().lost;
    assert!(
        lost.iter()
            .any(|l| l.contains(&pack) && l.contains("damaged") && l.contains(".lost")),
        "{lost:?}"
    );
}

/// A read that must first write out the WAL's buffered frames
/// (`flush_for_read`) and meets a write error gets `Internal`, not
/// `OutcomeUnknown`: a read applies nothing. The writer of the buffered
/// frame is the one whose outcome is unknown, and it is told so.
#[test]
fn a_read_that_meets_a_failed_wal_flush_is_internal_not_outcome_unknown() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, small_opts()).unwrap();
    kv.write(put(Table::Meta, b"a", vec![1u8; 30])).unwrap();
    // Appended and visible, not yet written to the file (sync mode).
    let seq = kv
        .write_deferred(put(Table::Meta, b"b", vec![2u8; 30]))
        .unwrap()
        .expect("a sync store waits for durability");
    fs.fail_writes(true);
    let err = kv.get(Table::Meta, b"a").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "a plain read got: {err}");
    assert!(err.message().contains("writing the log"), "{err}");
    // The engine is poisoned (the index shows a record the file lacks):
    // reads and scans are refused as `Internal`, the buffered record's
    // writer learns that its outcome is unknown.
    let err = kv
        .scan(Table::Meta, &[], None, Direction::Forward, 10)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    let err = kv.wait_durable_blocking(seq).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    fs.fail_writes(false);
    drop(kv);
    let kv = open_fault(&fs, small_opts()).unwrap();
    assert_eq!(kv.get(Table::Meta, b"a").unwrap().unwrap(), vec![1u8; 30]);
}

/// The same for a scan whose values are read as one span.
#[test]
fn a_scan_that_meets_a_failed_wal_flush_is_internal_not_outcome_unknown() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, small_opts()).unwrap();
    for k in [b"a", b"b", b"c"] {
        kv.write(put(Table::Meta, k, vec![1u8; 30])).unwrap();
    }
    kv.write_deferred(put(Table::Meta, b"d", vec![2u8; 30]))
        .unwrap();
    fs.fail_writes(true);
    let err = kv
        .scan(Table::Meta, &[], Some(b"c\xff"), Direction::Forward, 10)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "a plain scan got: {err}");
}
