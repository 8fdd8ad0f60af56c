//! Automatic maintenance around a damaged live value: the checkpoints go
//! on, the failing compaction is not re-run on every write (its file is
//! left out until the key is written again; the rest is packed as usual),
//! the damaged value stays `Corrupted` and nothing else is lost.

use super::super::recovery::segment_name;
use super::super::vfs::Vfs;
use super::*;
use stowage_core::ErrorKind;

fn put(table: Table, key: &[u8], value: &[u8]) -> Batch {
    let mut b = Batch::default();
    b.put(table, key.to_vec(), value.to_vec());
    b
}

fn count(fs: &SimFs, ext: &str) -> usize {
    fs.list(&sim_dir())
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(ext))
        .count()
}

fn opts() -> FileOptions {
    FileOptions {
        segment_size: 4096,
        checkpoint_interval: 6000,
        ..small_opts()
    }
}

/// A store whose value of `Meta/x` sits in a sealed segment, flipped
/// when `damage`; with the model of everything written.
fn store(damage: bool) -> (SimFs, FileKv, Model) {
    let fs = SimFs::new();
    let kv = open_sim(&fs, opts()).unwrap();
    let mut model = Model::new();
    let mut write = |kv: &FileKv, b: Batch| {
        kv.write(b.clone()).unwrap();
        apply_model(&mut model, &b);
    };
    write(&kv, put(Table::Meta, b"x", &[0xAB; 500]));
    // Fill a few segments so x's segment is sealed.
    for i in 0..8u32 {
        write(
            &kv,
            put(Table::Blobs, &i.to_be_bytes(), &b"text ".repeat(100)),
        );
    }
    if damage {
        let (loc, _) = kv.locate(Table::Meta, b"x").unwrap().unwrap();
        assert!(
            loc.seg < kv.wal.lock().active,
            "{loc:?} is in the active segment"
        );
        let path = sim_dir().join(segment_name(loc.seg));
        fs.edit(&path, |b| b[loc.off as usize + 10] ^= 0xFF);
        model.remove(&(Table::Meta, b"x".to_vec()));
    }
    (fs, kv, model)
}

/// 100 writes (~50 KB of log, interval 6000 B): the checkpoints left and
/// the I/O calls they took.
fn keep_writing(fs: &SimFs, kv: &FileKv, model: &mut Model) -> (usize, u64) {
    let before = fs.ops();
    let mut since = Vec::new();
    for i in 100..200u32 {
        let b = put(Table::Blobs, &(i % 7).to_be_bytes(), &b"text ".repeat(100));
        kv.write(b.clone()).unwrap();
        apply_model(model, &b);
        since.push(kv.wal.lock().since_checkpoint);
    }
    // The interval starts again: maintenance ran and checkpointed.
    assert!(
        since.iter().all(|&n| n < 2 * opts().checkpoint_interval),
        "the log grew past two intervals without a checkpoint (to {:?} bytes)",
        since.iter().max()
    );
    (count(fs, ".ckp"), fs.ops() - before)
}

/// Everything but the damaged value reads back; it is `Corrupted`.
fn check(kv: &FileKv, model: &Model) {
    let err = kv.get(Table::Meta, b"x").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    for ((t, k), v) in model {
        assert_eq!(kv.get(*t, k).unwrap().as_ref(), Some(v), "{t:?} {k:?}");
    }
    for t in [Table::Blobs, Table::SessionLog] {
        let got = kv
            .scan(t, &[], None, Direction::Forward, usize::MAX)
            .unwrap();
        let want: Vec<_> = model
            .iter()
            .filter(|((mt, _), _)| *mt == t)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect();
        assert_eq!(got, want);
    }
}

#[test]
fn a_damaged_live_value_does_not_stop_automatic_checkpoints() {
    let (fs, kv, mut model) = store(false);
    let (healthy_ckps, healthy_ops) = keep_writing(&fs, &kv, &mut model);
    assert!(healthy_ckps > 0, "control: maintenance checkpoints");
    let healthy_wals = count(&fs, ".wal");

    let (fs, kv, mut model) = store(true);
    let (ckps, ops) = keep_writing(&fs, &kv, &mut model);
    assert!(ckps > 0, "no checkpoint after one damaged value");
    // The failing compaction ran once, not on every write (which took
    // several times the I/O calls of the undamaged store).
    assert!(
        ops <= healthy_ops + healthy_ops / 4,
        "I/O calls {ops} vs {healthy_ops} without the damage"
    );
    // The rest of the log was packed as without the damage: only the
    // damaged value's segment is left out.
    assert!(count(&fs, ".pack") > 0, "nothing packed");
    assert_eq!(count(&fs, ".wal"), healthy_wals + 1);
    check(&kv, &model);
    // An explicit compaction still reports the damage, and removes nothing.
    let err = kv.compact().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    check(&kv, &model);
    drop(kv);
    let kv = open_sim(&fs, opts()).unwrap();
    check(&kv, &model);
}

#[test]
fn a_damaged_value_written_again_lets_automatic_compaction_take_its_segment() {
    let (fs, kv, mut model) = store(true);
    let (loc, _) = kv.locate(Table::Meta, b"x").unwrap().unwrap();
    let seg = sim_dir().join(segment_name(loc.seg));
    keep_writing(&fs, &kv, &mut model);
    assert!(
        fs.contents(&seg).is_some(),
        "the damaged segment was removed"
    );
    // Once the key is written again, nothing damaged is live there.
    let b = put(Table::Meta, b"x", b"fresh");
    kv.write(b.clone()).unwrap();
    apply_model(&mut model, &b);
    keep_writing(&fs, &kv, &mut model);
    assert!(
        fs.contents(&seg).is_none(),
        "the segment was not packed once its damaged value was replaced"
    );
    assert_eq!(dump(&kv).unwrap(), model);
    drop(kv);
    let kv = open_sim(&fs, opts()).unwrap();
    assert_eq!(dump(&kv).unwrap(), model);
}
