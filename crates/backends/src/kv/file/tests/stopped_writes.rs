//! A write that fails and cannot be undone (its cut-back fails too) while
//! nothing of it was applied stops writes only: the writer is told
//! `Unsupported` (the medium turned read-only) or `Internal`, never
//! `OutcomeUnknown`; later writes are refused; reads of acknowledged data
//! keep working; whatever was left past the tail is cut by the next open.
//! Injected by [`FaultFs`] around the simulated disk: EROFS mid-life (the
//! medium remounted read-only) and EIO on torn writes and cut-backs.

use super::faulty_fs::{open_fault, FaultFs};
use super::*;
use stowage_core::ErrorKind;

pub(super) fn put(table: Table, key: &[u8], value: Vec<u8>) -> Batch {
    let mut b = Batch::default();
    b.put(table, key.to_vec(), value);
    b
}

pub(super) fn big_segments() -> FileOptions {
    FileOptions {
        segment_size: 8 << 20,
        ..small_opts()
    }
}

/// Writes `n` small acknowledged records into `model`.
fn some_writes(kv: &FileKv, model: &mut Model, n: u64) {
    for b in workload(n, 60) {
        kv.write(b.clone()).unwrap();
        apply_model(model, &b);
    }
}

/// After writes were stopped: reads of acknowledged data work, the engine
/// is not poisoned, every later write is refused with `kind`, and a
/// reopen on a healthy disk finds exactly `model` and takes writes.
fn check_stopped(fs: &FaultFs, kv: FileKv, model: &Model, kind: ErrorKind, opts: FileOptions) {
    check_refusals(&kv, model, kind);
    fs.set_read_only(false);
    fs.fail_creates(false);
    fs.fail_set_len(false);
    fs.tear_writes_from(0);
    kv.close().unwrap();
    drop(kv);
    let kv = open_fault(fs, opts).unwrap();
    assert_eq!(&dump(&kv).unwrap(), model, "after reopening");
    kv.write(put(Table::Meta, b"again", vec![8; 10])).unwrap();
}

/// After writes were stopped, in place: the engine is not poisoned,
/// reads show `seen`, and every later write, checkpoint and compaction
/// is refused with `kind`.
fn check_refusals(kv: &FileKv, seen: &Model, kind: ErrorKind) {
    kv.check_poison().unwrap();
    assert_eq!(&dump(kv).unwrap(), seen, "reads of acknowledged data");
    let err = kv
        .write(put(Table::Meta, b"later", vec![7; 10]))
        .unwrap_err();
    assert_eq!(err.kind(), kind, "a later write: {err}");
    assert!(err.message().contains("refuses writes"), "{err}");
    let err = kv.checkpoint().unwrap_err();
    assert_eq!(err.kind(), kind, "a checkpoint: {err}");
    let err = kv.compact().unwrap_err();
    assert_eq!(err.kind(), kind, "a compaction: {err}");
    assert_eq!(&dump(kv).unwrap(), seen, "reads after refused writes");
}

/// EROFS mid-life, a large record (written directly, past the zeros
/// reserved ahead): the write and its cut-back fail. Nothing was applied,
/// so the writer gets `Unsupported` naming the read-only medium — it once
/// got `OutcomeUnknown` and the engine was poisoned, every later read of
/// acknowledged data failing "after a failed fsync" though none had.
#[test]
fn erofs_under_a_large_write_is_unsupported_and_reads_keep_working() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, big_segments()).unwrap();
    let mut model = Model::new();
    some_writes(&kv, &mut model, 20);
    fs.set_read_only(true);
    let err = kv
        .write(put(Table::Blobs, b"big", vec![3u8; 2 << 20]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("read-only"), "{err}");
    assert!(err.message().contains("not applied"), "{err}");
    check_stopped(&fs, kv, &model, ErrorKind::Unsupported, big_segments());
}

/// EROFS mid-life, a small record that needs more zeros reserved ahead
/// (`fill_ahead`): the zero fill and its cut-back fail before anything is
/// applied.
#[test]
fn erofs_under_a_preallocation_is_unsupported_and_reads_keep_working() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, big_segments()).unwrap();
    let mut model = Model::new();
    some_writes(&kv, &mut model, 5);
    // Fill the reserved zeros almost up, with acknowledged records.
    let mut i = 0u32;
    loop {
        let room = {
            let w = kv.wal.lock();
            w.filled - w.tail
        };
        if room < 40 << 10 {
            break;
        }
        let b = put(Table::Meta, &i.to_be_bytes(), vec![5u8; 30 << 10]);
        kv.write(b.clone()).unwrap();
        apply_model(&mut model, &b);
        i += 1;
    }
    fs.set_read_only(true);
    let err = kv
        .write(put(Table::Meta, b"over", vec![6u8; 50 << 10]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains("preallocation"), "{err}");
    check_stopped(&fs, kv, &model, ErrorKind::Unsupported, big_segments());
}

/// EROFS mid-life at a rotation: the old segment cannot be cut back to
/// seal it. No fsync failed and nothing of the new record was applied:
/// writes stop, reads go on.
#[test]
fn erofs_at_a_rotation_is_unsupported_and_reads_keep_working() {
    a_rotation_refused_by(FaultFs::set_read_only, "seal");
}

/// EROFS mid-life when a rotation starts its next segment, after the
/// old one was sealed: nothing of the new record was applied, so writes
/// stop and reads go on — it once poisoned the engine, failing every read.
#[test]
fn erofs_when_a_new_segment_starts_is_unsupported_and_reads_keep_working() {
    a_rotation_refused_by(FaultFs::fail_creates, "new segment");
}

/// A write that must rotate first, after `fault` turned the medium
/// read-only: `Unsupported` naming `step`, no segment started, writes
/// stopped ([`check_stopped`]).
fn a_rotation_refused_by(fault: fn(&FaultFs, bool), step: &str) {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, small_opts()).unwrap();
    let mut model = Model::new();
    some_writes(&kv, &mut model, 3);
    let segment = kv.wal.lock().active;
    fault(&fs, true);
    // Larger than what is left of the 4 KiB segment: it rotates first.
    let err = kv
        .write(put(Table::Meta, b"next", vec![6u8; 4000]))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    assert!(err.message().contains(step), "{err}");
    assert_eq!(kv.wal.lock().active, segment, "no segment was started");
    check_stopped(&fs, kv, &model, ErrorKind::Unsupported, small_opts());
}

/// EROFS mid-life under a small record: it is appended to the WAL's
/// buffer and shown by the index, and the file system refuses it when the
/// buffer is written out for its fsync. That once poisoned the engine:
/// every later read of acknowledged data failed `Internal`. Now the
/// record is stranded in memory: its writer gets `OutcomeUnknown` (not on
/// disk), reads go on and see it, writes are refused, and a reopen finds
/// exactly what was acknowledged.
#[test]
fn erofs_under_a_buffered_write_strands_it_and_reads_keep_working() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let (kv, model, seen) = a_write_left_in_doubt(&fs, FaultFs::set_read_only);
    check_stranded(&fs, kv, &model, &seen);
}

/// 20 acknowledged writes on `fs`, then `fault` turns the medium
/// read-only and one more small write is answered `OutcomeUnknown` ("a
/// reopen may not find it"). Returns the store, the acknowledged model,
/// and what reads show (the model and that write).
fn a_write_left_in_doubt(fs: &FaultFs, fault: fn(&FaultFs, bool)) -> (FileKv, Model, Model) {
    let kv = open_fault(fs, big_segments()).unwrap();
    let mut model = Model::new();
    some_writes(&kv, &mut model, 20);
    fault(fs, true);
    let doubtful = put(Table::Meta, b"in doubt", vec![4u8; 100]);
    let err = kv.write(doubtful.clone()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(err.message().contains("may not find it"), "{err}");
    let mut seen = model.clone();
    apply_model(&mut seen, &doubtful);
    (kv, model, seen)
}

/// The reads and refusals after records were stranded (`seen`: what
/// reads show, the acknowledged `model` plus the stranded records), then
/// a reopen on a writable medium: exactly `model`, and writes work.
fn check_stranded(fs: &FaultFs, kv: FileKv, model: &Model, seen: &Model) {
    check_refusals(&kv, seen, ErrorKind::Unsupported);
    // Closed on the read-only medium.
    closed_in_doubt(&kv);
    drop(kv);
    fs.set_read_only(false);
    let kv = open_fault(fs, big_segments()).unwrap();
    assert_eq!(&dump(&kv).unwrap(), model, "after reopening");
    kv.write(put(Table::Meta, b"again", vec![8; 10])).unwrap();
}

/// Closes `kv` with records in doubt: every other record is made
/// durable, and the close answers `OutcomeUnknown` (whoever waits for a
/// write after it is answered so), releasing the store all the same.
fn closed_in_doubt(kv: &FileKv) {
    let err = kv.close().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    assert!(err.message().contains("not made durable"), "{err}");
}

/// An fsync of the log refused with EROFS (ext4 after aborting its
/// journal): it once poisoned the engine, failing every read. Now the
/// records it was to make durable are in doubt — their writers get
/// `OutcomeUnknown` — writes stop, and reads go on; a reopen finds every
/// acknowledged write.
#[test]
fn an_fsync_refused_by_a_read_only_medium_puts_its_records_in_doubt() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let (kv, model, seen) = a_write_left_in_doubt(&fs, FaultFs::fail_syncs);
    check_refusals(&kv, &seen, ErrorKind::Unsupported);
    closed_in_doubt(&kv);
    drop(kv);
    fs.fail_syncs(false);
    let kv = open_fault(&fs, big_segments()).unwrap();
    let after = dump(&kv).unwrap();
    for (k, v) in &model {
        assert_eq!(after.get(k), Some(v), "an acknowledged write survives");
    }
}

/// A reader that writes the buffer out for its read (`flush_for_read`)
/// and meets EROFS strands the records and still gets its value; the
/// record's writer, waiting for durability afterwards, is told it is not
/// on disk.
#[test]
fn a_read_that_meets_erofs_gets_the_stranded_value() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, big_segments()).unwrap();
    let mut model = Model::new();
    some_writes(&kv, &mut model, 10);
    let stranded = put(Table::Meta, b"unsynced", vec![5u8; 300]);
    let seq = kv
        .append_batch(&stranded)
        .unwrap()
        .expect("a durable store");
    fs.set_read_only(true);
    assert_eq!(
        kv.get(Table::Meta, b"unsynced").unwrap(),
        Some(vec![5u8; 300])
    );
    let err = kv.block_until_durable(seq).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    let mut seen = model.clone();
    apply_model(&mut seen, &stranded);
    check_stranded(&fs, kv, &model, &seen);
}

/// Many writers while the medium turns read-only: every acknowledged
/// write survives the reopen, every failure is `OutcomeUnknown` (a
/// stranded record) or `Unsupported` (refused), and reads never fail.
#[test]
fn writers_racing_a_read_only_turn_lose_nothing_acknowledged() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = Arc::new(open_fault(&fs, big_segments()).unwrap());
    let acked = Arc::new(parking_lot::Mutex::new(Model::new()));
    let threads: Vec<_> = (0..8u8)
        .map(|t| {
            let (kv, acked) = (Arc::clone(&kv), Arc::clone(&acked));
            std::thread::spawn(move || {
                for i in 0..400u32 {
                    let mut key = vec![t];
                    key.extend_from_slice(&i.to_be_bytes());
                    let b = put(Table::Meta, &key, vec![t; 50 + (i % 7) as usize]);
                    match kv.write(b.clone()) {
                        Ok(()) => apply_model(&mut acked.lock(), &b),
                        Err(e) => assert!(
                            matches!(e.kind(), ErrorKind::OutcomeUnknown | ErrorKind::Unsupported),
                            "{e}"
                        ),
                    }
                    kv.get(Table::Meta, &key).expect("reads never fail");
                }
            })
        })
        .collect();
    // Turned read-only once some writes were acknowledged, while most
    // are still to come.
    while acked.lock().len() < 100 {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    fs.set_read_only(true);
    for t in threads {
        t.join().unwrap();
    }
    let kv = Arc::into_inner(kv).unwrap();
    kv.check_poison().unwrap();
    let shown = dump(&kv).unwrap();
    let acked = acked.lock().clone();
    for (k, v) in &acked {
        assert_eq!(shown.get(k), Some(v), "an acknowledged write is readable");
    }
    // Records were in doubt when the medium turned read-only mid-write.
    if let Err(e) = kv.close() {
        assert_eq!(e.kind(), ErrorKind::OutcomeUnknown, "{e}");
    }
    drop(kv);
    fs.set_read_only(false);
    let kv = open_fault(&fs, big_segments()).unwrap();
    let after = dump(&kv).unwrap();
    for (k, v) in &acked {
        assert_eq!(
            after.get(k),
            Some(v),
            "an acknowledged write survives the reopen"
        );
    }
}

/// A store of 20 writes and one more appended, not yet durable; then a
/// large record torn half-way (EIO) whose cut-back fails too. Returns the
/// store, its model (the pending record in it), the large write's error
/// and the pending record's seq.
fn tear_a_large_write(fs: &FaultFs) -> (FileKv, Model, stowage_core::Error, u64) {
    let kv = open_fault(fs, big_segments()).unwrap();
    let mut model = Model::new();
    some_writes(&kv, &mut model, 20);
    // Appended, buffered, not yet durable: written out (whole) before the
    // large record, and acknowledged after it failed.
    let b = put(Table::Meta, b"pending", vec![9u8; 100]);
    let seq = kv.write_deferred(b.clone()).unwrap().unwrap();
    apply_model(&mut model, &b);
    fs.tear_writes_from(64 << 10);
    fs.fail_set_len(true);
    let err = kv
        .write(put(Table::Blobs, b"big", vec![3u8; 2 << 20]))
        .unwrap_err();
    (kv, model, err, seq)
}

/// EIO (not a read-only medium): a large record torn half-way, and its
/// cut-back failing too. The writer gets `Internal` (nothing applied);
/// half a frame stays past the tail, and the next open cuts it as a torn
/// tail — also once it was fsynced by the rounds of records appended
/// before it, and with their writers acknowledged.
#[test]
fn a_torn_large_write_whose_cut_back_fails_is_internal_and_the_torn_tail_is_cut_at_open() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let (kv, model, err, seq) = tear_a_large_write(&fs);
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(err.message().contains("not applied"), "{err}");
    assert!(!err.message().contains("fsync"), "{err}");
    // The pending record's writer is answered truthfully: its fsync runs.
    kv.wait_durable_blocking(seq).unwrap();
    let tail = kv.wal.lock().tail;
    let seg = sim_dir().join(super::super::recovery::segment_name(kv.wal.lock().active));
    assert!(
        sim.contents(&seg).unwrap().len() as u64 > tail,
        "half a frame lies past the tail"
    );
    check_stopped(&fs, kv, &model, ErrorKind::Internal, big_segments());
}

/// The same torn frame past the tail survives power loss (the round that
/// made the pending record durable synced it too): recovery still cuts
/// it, and every acknowledged record is there.
#[test]
fn a_torn_frame_left_past_the_tail_is_a_torn_tail_after_power_loss() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let (kv, model, _, seq) = tear_a_large_write(&fs);
    kv.wait_durable_blocking(seq).unwrap();
    drop(kv);
    sim.power_loss(None);
    fs.tear_writes_from(0);
    fs.fail_set_len(false);
    let kv = open_fault(&fs, big_segments()).unwrap();
    assert!(
        kv.recovery_report().truncated_tail.is_some(),
        "{:?}",
        kv.recovery_report()
    );
    assert_eq!(dump(&kv).unwrap(), model);
}

/// A failed fsync still poisons everything, reads included (fsyncgate),
/// and says so; a poison after a failed write says that instead.
#[test]
fn the_poison_names_its_cause() {
    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, small_opts()).unwrap();
    kv.write(put(Table::Meta, b"a", vec![1u8; 30])).unwrap();
    sim.fail_next_sync();
    let err = kv.write(put(Table::Meta, b"b", vec![1u8; 30])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    let err = kv.get(Table::Meta, b"a").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(err.message().contains("after a failed fsync"), "{err}");
    drop(kv);

    let sim = SimFs::new();
    let fs = FaultFs::new(&sim);
    let kv = open_fault(&fs, small_opts()).unwrap();
    kv.write(put(Table::Meta, b"a", vec![1u8; 30])).unwrap();
    kv.write_deferred(put(Table::Meta, b"b", vec![1u8; 30]))
        .unwrap();
    fs.fail_writes(true);
    let err = kv.write(put(Table::Meta, b"c", vec![1u8; 30])).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::OutcomeUnknown, "{err}");
    let err = kv.get(Table::Meta, b"a").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Internal, "{err}");
    assert!(err.message().contains("after a failed write"), "{err}");
    assert!(!err.message().contains("fsync"), "{err}");
}
