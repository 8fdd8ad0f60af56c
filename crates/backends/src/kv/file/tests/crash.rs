//! Simulated power loss at every I/O step, torn tails at every byte
//! offset, flipped bytes and missing segments.

use super::super::recovery::segment_name;
use super::*;
use stowage_core::ErrorKind;

/// Runs `batches` (with a checkpoint and a compaction every 15 batches)
/// until the disk "crashes"; returns the model at the last acknowledgement
/// and the batch in flight when it crashed.
fn run_until_crash(kv: &FileKv, batches: &[Batch]) -> (Model, Option<Batch>) {
    let mut model = Model::new();
    for (i, b) in batches.iter().enumerate() {
        if i % 15 == 14 {
            let maintained = kv.checkpoint().and_then(|()| kv.compact());
            if maintained.is_err() {
                return (model, None);
            }
        }
        match kv.write(b.clone()) {
            Ok(()) => apply_model(&mut model, b),
            Err(_) => return (model, Some(b.clone())),
        }
    }
    (model, None)
}

fn opts() -> FileOptions {
    FileOptions {
        checkpoint_interval: 6000,
        ..small_opts()
    }
}

/// Large frames (a blob chunk) are written straight from their buffer,
/// growing the file instead of overwriting zeros (`wal.rs`, `DIRECT_AT`):
/// the same crash at every I/O step, with them mixed among small ones.
#[test]
fn power_loss_at_every_io_step_with_large_values_keeps_the_acknowledged_state() {
    let opts = FileOptions {
        segment_size: 512 << 10,
        checkpoint_interval: 300 << 10,
        ..small_opts()
    };
    let batches: Vec<Batch> = (0u8..20)
        .map(|i| {
            let mut b = Batch::default();
            if i % 3 == 1 {
                let len = (70 << 10) + usize::from(i) * 4000;
                b.put(Table::Blobs, vec![i], vec![i; len]);
            } else {
                b.put(Table::Meta, vec![i % 4], vec![i; 40]);
            }
            if i % 7 == 6 {
                b.delete(Table::Blobs, vec![i - 5]);
            }
            b
        })
        .collect();
    let total = {
        let fs = SimFs::new();
        let kv = open_sim(&fs, opts.clone()).unwrap();
        let (_, inflight) = run_until_crash(&kv, &batches);
        assert!(inflight.is_none());
        fs.ops()
    };
    for step in 1..=total {
        for seed in Loss::all(step * 104_729) {
            let fs = SimFs::new();
            let kv = open_sim(&fs, opts.clone()).unwrap();
            fs.crash_after(step);
            let (model, inflight) = run_until_crash(&kv, &batches);
            drop(kv);
            seed.strike(&fs);
            let kv =
                open_sim(&fs, opts.clone()).unwrap_or_else(|e| panic!("step {step} {seed:?}: {e}"));
            let got = dump(&kv).unwrap();
            let mut with_inflight = model.clone();
            if let Some(b) = &inflight {
                apply_model(&mut with_inflight, b);
            }
            assert!(
                got == model || got == with_inflight,
                "step {step} seed {seed:?}: state differs from the model"
            );
            let mut b = Batch::default();
            b.put(Table::Blobs, b"after".to_vec(), vec![1; 100 << 10]);
            kv.write(b).unwrap();
        }
    }
}

#[test]
fn power_loss_at_every_io_step_keeps_exactly_the_acknowledged_state() {
    let batches = workload(42, 50);
    let total = {
        let fs = SimFs::new();
        let kv = open_sim(&fs, opts()).unwrap();
        let (_, inflight) = run_until_crash(&kv, &batches);
        assert!(inflight.is_none());
        fs.ops()
    };
    assert!(total > 100, "the workload is too small: {total} I/O steps");
    for step in 1..=total {
        for seed in Loss::all(step * 7919) {
            let fs = SimFs::new();
            let kv = match open_sim(&fs, opts()) {
                Ok(kv) => kv,
                Err(e) => panic!("step {step}: {e}"),
            };
            fs.crash_after(step);
            let (model, inflight) = run_until_crash(&kv, &batches);
            drop(kv);
            seed.strike(&fs);
            let kv = open_sim(&fs, opts()).unwrap_or_else(|e| panic!("step {step} {seed:?}: {e}"));
            let got = dump(&kv).unwrap();
            let mut with_inflight = model.clone();
            if let Some(b) = &inflight {
                apply_model(&mut with_inflight, b);
            }
            assert!(
                got == model || got == with_inflight,
                "step {step} seed {seed:?}: state differs from the model"
            );
            // Recovering twice changes nothing, and the store takes writes.
            drop(kv);
            let kv = open_sim(&fs, opts()).unwrap();
            assert_eq!(
                dump(&kv).unwrap(),
                got,
                "step {step}: second recovery differs"
            );
            assert!(kv.recovery_report().truncated_tail.is_none());
            let mut b = Batch::default();
            b.put(Table::Meta, b"after".to_vec(), b"crash".to_vec());
            kv.write(b).unwrap();
        }
    }
}

/// A process killed at any I/O step leaves files and directory entries it
/// never synced: the next open must make what it relies on durable before
/// acknowledging writes (a segment created at rotation whose directory
/// entry was not yet synced, say), so power loss after that open loses
/// nothing it acknowledged.
#[test]
fn writes_after_reopening_from_a_kill_at_every_io_step_survive_power_loss() {
    let batches = workload(43, 50);
    let total = {
        let fs = SimFs::new();
        let kv = open_sim(&fs, opts()).unwrap();
        run_until_crash(&kv, &batches);
        fs.ops()
    };
    for step in 1..=total {
        let fs = SimFs::new();
        let kv = open_sim(&fs, opts()).unwrap();
        fs.crash_after(step);
        run_until_crash(&kv, &batches);
        drop(kv);
        fs.kill();
        let kv = open_sim(&fs, opts()).unwrap_or_else(|e| panic!("step {step}: {e}"));
        let mut want = dump(&kv).unwrap();
        let mut b = Batch::default();
        b.put(Table::Meta, b"after".to_vec(), b"kill".to_vec());
        kv.write(b.clone()).unwrap();
        apply_model(&mut want, &b);
        fs.power_loss(None);
        drop(kv);
        let kv = open_sim(&fs, opts()).unwrap_or_else(|e| panic!("step {step}: {e}"));
        assert!(
            dump(&kv).unwrap() == want,
            "step {step}: power loss after the reopen lost acknowledged data"
        );
    }
}

/// A store of at least `n` batches without checkpoints whose last record
/// is not the first of its segment; returns the fs, the model before and
/// after the last batch, the last segment, the last record's offset and
/// length.
fn store_with_last_record(n: usize) -> (SimFs, Model, Model, u64, u64, usize) {
    for n in n..n + 50 {
        let fs = SimFs::new();
        let kv = open_sim(&fs, small_opts()).unwrap();
        let batches = workload(9, n);
        let mut before = Model::new();
        for b in &batches[..n - 1] {
            kv.write(b.clone()).unwrap();
            apply_model(&mut before, b);
        }
        let (seg, start) = {
            let w = kv.wal.lock();
            (w.active, w.tail)
        };
        kv.write(batches[n - 1].clone()).unwrap();
        let (seg_after, end) = {
            let w = kv.wal.lock();
            (w.active, w.tail)
        };
        if seg_after != seg || start == 24 {
            continue;
        }
        let mut after = before.clone();
        apply_model(&mut after, &batches[n - 1]);
        drop(kv);
        return (fs, before, after, seg, start, (end - start) as usize);
    }
    panic!("no workload length puts two records in the last segment");
}

#[test]
fn a_torn_tail_at_every_byte_offset_is_truncated_and_reported() {
    let (fs, before, after, seg, start, len) = store_with_last_record(30);
    let path = sim_dir().join(segment_name(seg));
    let full = fs.contents(&path).unwrap().len();
    for cut in 0..=len {
        for zero_fill in [false, true] {
            let torn = fs.fork();
            torn.edit(&path, |d| {
                d.truncate(start as usize + cut);
                if zero_fill {
                    d.resize(full, 0);
                }
            });
            let kv = open_sim(&torn, small_opts()).unwrap_or_else(|e| panic!("cut {cut}: {e}"));
            let got = dump(&kv).unwrap();
            if cut == len {
                assert_eq!(got, after, "cut {cut}");
                assert_eq!(kv.recovery_report().truncated_tail, None);
            } else if cut == 0 {
                // Nothing of the record reached the disk (nothing, or the
                // zeros the engine fills ahead with): a clean end.
                assert_eq!(got, before);
                assert_eq!(kv.recovery_report().truncated_tail, None);
            } else {
                assert_eq!(got, before, "cut {cut} zero_fill {zero_fill}");
                let (s, off, _) = kv.recovery_report().truncated_tail.unwrap();
                assert_eq!((s, off), (seg, start), "cut {cut}");
            }
            drop(kv);
            let kv = open_sim(&torn, small_opts()).unwrap();
            assert_eq!(
                kv.recovery_report().truncated_tail,
                None,
                "recovering twice"
            );
            assert_eq!(dump(&kv).unwrap(), got);
        }
    }
}

#[test]
fn a_flipped_byte_in_a_sealed_segment_refuses_to_open_naming_segment_and_offset() {
    let (fs, ..) = store_with_last_record(30);
    let path = sim_dir().join(segment_name(1));
    let len = fs.contents(&path).unwrap().len();
    for at in (0..len).step_by(7) {
        let bad = fs.fork();
        bad.edit(&path, |d| d[at] ^= 0x40);
        let err = open_sim(&bad, small_opts())
            .err()
            .unwrap_or_else(|| panic!("byte {at} flipped, yet it opened"));
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
        assert!(err.message().contains(&segment_name(1)), "{err}");
        assert!(err.message().contains("offset"), "{err}");
    }
}

#[test]
fn a_flip_mid_way_in_the_last_segment_is_not_mistaken_for_a_torn_tail() {
    let (fs, ..) = store_with_last_record(30);
    let seg = {
        let kv = open_sim(&fs, small_opts()).unwrap();
        let active = kv.wal.lock().active;
        active
    };
    let path = sim_dir().join(segment_name(seg));
    // The first record of the segment, followed by valid ones.
    fs.edit(&path, |d| d[24 + 20] ^= 1);
    let err = open_sim(&fs, small_opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains("offset 24"), "{err}");
}

/// A damaged header on the newest segment is an interrupted rotation only
/// when nothing follows it: with records after it, it is damage, not a
/// reason to delete the segment (salvage sets it aside and says so).
#[test]
fn a_flipped_header_byte_of_the_last_segment_with_records_is_damage() {
    let (fs, ..) = store_with_last_record(30);
    let seg = {
        let kv = open_sim(&fs, small_opts()).unwrap();
        let active = kv.wal.lock().active;
        active
    };
    assert!(seg > 1, "the store spans several segments");
    let path = sim_dir().join(segment_name(seg));
    for at in [0, 9, 20] {
        let bad = fs.fork();
        bad.edit(&path, |d| d[at] ^= 0x40);
        let err = open_sim(&bad, small_opts())
            .err()
            .unwrap_or_else(|| panic!("header byte {at} flipped, yet it opened"));
        assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
        assert!(err.message().contains(&segment_name(seg)), "{err}");
        assert!(bad.contents(&path).is_some(), "the segment is kept");
    }
    let bad = fs.fork();
    bad.edit(&path, |d| d[3] ^= 0x40);
    let salvage = FileOptions {
        salvage: true,
        ..small_opts()
    };
    let kv = open_sim(&bad, salvage).unwrap();
    let lost = &kv.recovery_report().lost;
    assert!(
        lost.iter()
            .any(|l| l.contains(&segment_name(seg)) && l.contains("header")),
        "{lost:?}"
    );
}

/// Issue 9 item 7: the disk persisted later frames of an unsynced round
/// but not an earlier one (zeros where it was, then intact frames with a
/// seq jump). Nothing there was acknowledged, so it is a torn tail; the
/// same zeros in a record that a later record proves fsynced are damage.
#[test]
fn a_reordered_torn_write_is_a_torn_tail_unless_a_later_record_proves_it_synced() {
    let opts = || FileOptions {
        checkpoint_interval: 0,
        ..FileOptions::default()
    };
    let fs = SimFs::new();
    let kv = open_sim(&fs, opts()).unwrap();
    let batches = workload(5, 8);
    let mut durable = Model::new();
    for b in &batches[..4] {
        kv.write(b.clone()).unwrap();
        apply_model(&mut durable, b);
    }
    let (seg, start) = {
        let w = kv.wal.lock();
        (w.active, w.tail)
    };
    // One group-commit round's worth of appends, written but not synced.
    let mut first_end = 0;
    for (i, b) in batches[4..].iter().enumerate() {
        assert!(kv.append_batch(b).unwrap().is_some());
        if i == 0 {
            first_end = kv.wal.lock().tail;
        }
    }
    kv.flush_for_read().unwrap();
    let path = sim_dir().join(segment_name(seg));
    let torn = fs.fork();
    torn.power_loss_losing(&path, start..first_end);
    let reopened = open_sim(&torn, opts())
        .unwrap_or_else(|e| panic!("a reordered torn write refused to open: {e}"));
    assert_eq!(dump(&reopened).unwrap(), durable);
    let (s, off, _) = reopened.recovery_report().truncated_tail.unwrap();
    assert_eq!((s, off), (seg, start));
    drop(reopened);
    let again = open_sim(&torn, opts()).unwrap();
    assert_eq!(again.recovery_report().truncated_tail, None);
    assert_eq!(dump(&again).unwrap(), durable);

    // Now a round covers them: a record written after it carries a
    // watermark past the first one, so zeros there are damage to
    // acknowledged data.
    // (The first record written after that round carries it.)
    for key in [&b"later"[..], b"later still"] {
        let mut b = Batch::default();
        b.put(Table::Meta, key.to_vec(), b"x".to_vec());
        kv.write(b).unwrap();
    }
    drop(kv);
    fs.edit(&path, |d| d[start as usize..first_end as usize].fill(0));
    let err = open_sim(&fs, opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains(&format!("offset {start}")), "{err}");
    assert!(err.message().contains("fsynced"), "{err}");
}

#[test]
fn a_missing_segment_refuses_to_open_and_salvage_reports_the_loss() {
    let (fs, ..) = store_with_last_record(30);
    fs.delete(&sim_dir().join(segment_name(2)));
    let err = open_sim(&fs, small_opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains(&segment_name(2)), "{err}");
    let salvage = FileOptions {
        salvage: true,
        ..small_opts()
    };
    let kv = open_sim(&fs, salvage).unwrap();
    assert!(!kv.recovery_report().lost.is_empty());
    assert!(kv
        .recovery_report()
        .lost
        .iter()
        .any(|l| l.contains(&segment_name(3))));
    // What was intact (segment 1) is readable and the store takes writes.
    let mut b = Batch::default();
    b.put(Table::Meta, b"x".to_vec(), b"y".to_vec());
    kv.write(b).unwrap();
    drop(kv);
    let kv = open_sim(&fs, small_opts()).unwrap();
    assert_eq!(kv.get(Table::Meta, b"x").unwrap().unwrap(), b"y");
}

#[test]
fn salvage_keeps_the_records_before_a_flipped_byte() {
    let (fs, ..) = store_with_last_record(30);
    let path = sim_dir().join(segment_name(2));
    fs.edit(&path, |d| d[100] ^= 1);
    let salvage = FileOptions {
        salvage: true,
        ..small_opts()
    };
    let kv = open_sim(&fs, salvage).unwrap();
    let lost = &kv.recovery_report().lost;
    assert!(
        lost.iter()
            .any(|l| l.contains(&segment_name(2)) && l.contains("offset")),
        "{lost:?}"
    );
    drop(kv);
    open_sim(&fs, small_opts()).unwrap();
}

/// Issue 9 item 8: the first open creates the store directory and syncs
/// its parent, so a brand-new store's acknowledged writes survive power
/// loss (the simulated disk drops directories whose entry was not synced).
#[test]
fn a_brand_new_store_in_new_directories_survives_power_loss() {
    let fs = SimFs::new();
    let dir = PathBuf::from("/sim/new/parents/store");
    let kv = FileKv::open_on(Arc::new(fs.clone()), &dir, small_opts()).unwrap();
    let mut b = Batch::default();
    b.put(Table::Meta, b"k".to_vec(), b"v".to_vec());
    kv.write(b).unwrap();
    fs.crash_after(0);
    drop(kv);
    fs.power_loss(None);
    let kv = FileKv::open_on(Arc::new(fs.clone()), &dir, small_opts()).unwrap();
    assert_eq!(kv.get(Table::Meta, b"k").unwrap(), Some(b"v".to_vec()));
}
