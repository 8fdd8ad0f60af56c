//! Compaction and checkpoints racing writers, and damaged checkpoints.

use super::super::index::Loc;
use super::super::{checkpoint, pack};
use super::*;
use stowage_core::ErrorKind;

#[test]
fn compaction_racing_writers_never_resurrects_an_old_value() {
    let fs = SimFs::new();
    let kv = Arc::new(open_sim(&fs, small_opts()).unwrap());
    let writers: Vec<_> = (0u8..4)
        .map(|t| {
            let kv = kv.clone();
            std::thread::spawn(move || {
                for round in 0u32..150 {
                    let mut b = Batch::default();
                    // Each writer owns keys [t, 0..8]; the value names the round.
                    let key = vec![t, (round % 8) as u8];
                    let mut value = round.to_be_bytes().to_vec();
                    value.resize(200, t);
                    b.put(Table::Runs, key, value);
                    if round % 10 == 9 {
                        b.delete(Table::Runs, vec![t, 3]);
                    }
                    kv.write(b).unwrap();
                }
            })
        })
        .collect();
    let maintainer = {
        let kv = kv.clone();
        std::thread::spawn(move || {
            let mut removed = 0;
            for _ in 0..30 {
                kv.checkpoint().unwrap();
                removed += kv.compact().unwrap();
                std::thread::yield_now();
            }
            removed
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    let removed = maintainer.join().unwrap() + kv.compact().unwrap();
    assert!(removed > 0, "compaction never ran while racing");
    // The model: the last write of each key wins.
    let mut model = Model::new();
    for t in 0u8..4 {
        for round in 0u32..150 {
            let mut value = round.to_be_bytes().to_vec();
            value.resize(200, t);
            model.insert((Table::Runs, vec![t, (round % 8) as u8]), value);
            if round % 10 == 9 {
                model.remove(&(Table::Runs, vec![t, 3]));
            }
        }
    }
    assert_eq!(dump(&kv).unwrap(), model);
    drop(kv);
    let kv = open_sim(&fs, small_opts()).unwrap();
    assert_eq!(dump(&kv).unwrap(), model);
}

#[test]
fn a_damaged_checkpoint_refuses_to_open_and_salvage_replays_around_it() {
    let fs = SimFs::new();
    let mut model = Model::new();
    {
        let kv = open_sim(&fs, small_opts()).unwrap();
        for b in workload(21, 40) {
            kv.write(b.clone()).unwrap();
            apply_model(&mut model, &b);
        }
        kv.close().unwrap();
    }
    let ckp = sim_dir().join(checkpoint::file_name(40));
    fs.edit(&ckp, |d| d[20] ^= 1);
    let err = open_sim(&fs, small_opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains(&checkpoint::file_name(40)), "{err}");
    // No compaction ran, so the whole log is still there to replay.
    let salvage = FileOptions {
        salvage: true,
        ..small_opts()
    };
    let kv = open_sim(&fs, salvage).unwrap();
    assert!(!kv.recovery_report().lost.is_empty());
    assert_eq!(dump(&kv).unwrap(), model);
}

#[test]
fn compaction_does_not_install_a_value_overwritten_after_it_was_read() {
    let fs = SimFs::new();
    let kv = open_sim(&fs, small_opts()).unwrap();
    let put = |key: &[u8], value: &[u8]| {
        let mut b = Batch::default();
        b.put(Table::Meta, key.to_vec(), value.to_vec());
        b
    };
    kv.write(put(b"k", b"old")).unwrap();
    kv.write(put(b"j", b"same")).unwrap();
    // What compaction read before the writes below.
    let loc = |key: &[u8]| kv.index.read().table(Table::Meta).get(key).unwrap();
    let (old_k, old_j) = (loc(b"k"), loc(b"j"));
    kv.write(put(b"k", b"new")).unwrap();
    // A pack holding the copies compaction read.
    let id = pack::PACK_BIT | 7;
    let mut writer = pack::PackWriter::create(&fs, &sim_dir().join(pack::pack_name(id))).unwrap();
    let mut moved = Vec::new();
    for (key, value, old) in [(b"k", b"old".as_slice(), old_k), (b"j", b"same", old_j)] {
        let off = writer.push(Table::Meta, key, value).unwrap();
        moved.push((
            Table::Meta,
            key.to_vec(),
            old,
            Loc {
                seg: id,
                off,
                ..old
            },
        ));
    }
    let new_j = moved[1].3;
    kv.install(id, Arc::new(writer.finish(id).unwrap()), moved);
    assert_eq!(kv.get(Table::Meta, b"k").unwrap().unwrap(), b"new");
    assert_eq!(loc(b"j"), new_j, "an unchanged key moves to the pack");
    assert_eq!(kv.get(Table::Meta, b"j").unwrap().unwrap(), b"same");
}

#[test]
fn sixty_four_group_committed_writers_lose_no_acknowledged_write_at_power_loss() {
    // Leadership passes between writers and segments rotate (4 KiB) while
    // others wait; power loss keeps only what a fsync covered.
    let fs = SimFs::new();
    let kv = Arc::new(open_sim(&fs, small_opts()).unwrap());
    let writers: Vec<_> = (0u8..64)
        .map(|t| {
            let kv = kv.clone();
            std::thread::spawn(move || {
                for i in 0u8..10 {
                    let mut b = Batch::default();
                    b.put(Table::SessionLog, vec![t, i], vec![t; 100]);
                    kv.write(b).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    fs.power_loss(None);
    drop(kv);
    let kv = open_sim(&fs, small_opts()).unwrap();
    let all = kv
        .scan(Table::SessionLog, &[], None, Direction::Forward, usize::MAX)
        .unwrap();
    assert_eq!(all.len(), 64 * 10);
    assert!(all.iter().all(|(k, v)| v == &vec![k[0]; 100]));
}

/// 64 group-committed writers crash mid-way on a disk that reorders the
/// writes of the unsynced round: the store opens (a torn tail, not
/// damage) and every acknowledged write is there.
#[test]
fn a_reordering_disk_crashing_under_sixty_four_writers_keeps_every_acknowledged_write() {
    let opts = || FileOptions {
        segment_size: 1 << 16,
        ..small_opts()
    };
    for round in 0..64u64 {
        let fs = SimFs::new();
        let kv = Arc::new(open_sim(&fs, opts()).unwrap());
        fs.crash_after(40 + round * 7);
        let acked = Arc::new(parking_lot::Mutex::new(Vec::new()));
        let writers: Vec<_> = (0u8..64)
            .map(|t| {
                let (kv, acked) = (kv.clone(), acked.clone());
                std::thread::spawn(move || {
                    for i in 0u8..10 {
                        let mut b = Batch::default();
                        b.put(Table::SessionLog, vec![t, i], vec![t; 60]);
                        if kv.write(b).is_err() {
                            return;
                        }
                        acked.lock().push(vec![t, i]);
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        drop(kv);
        fs.power_loss_reordered(round * 7919 + 1);
        let kv = open_sim(&fs, opts())
            .unwrap_or_else(|e| panic!("round {round}: a reordered crash refused to open: {e}"));
        for key in acked.lock().iter() {
            let got = kv.get(Table::SessionLog, key).unwrap();
            assert_eq!(got, Some(vec![key[0]; 60]), "round {round}: {key:?} lost");
        }
    }
}
