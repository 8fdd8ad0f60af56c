//! Packs: what compaction leaves on disk, how it reads back, reopens,
//! merges and reports damage.

use super::super::pack::{self, Pack, PackWriter, PACK_BIT};
use super::super::vfs::{VFile, Vfs};
use super::*;
use stowage_core::ErrorKind;

fn files(fs: &SimFs, ext: &str) -> Vec<String> {
    let mut names: Vec<String> = fs
        .list(&sim_dir())
        .unwrap()
        .into_iter()
        .filter(|n| n.ends_with(ext))
        .collect();
    names.sort();
    names
}

fn bytes_of(fs: &SimFs, ext: &str) -> usize {
    files(fs, ext)
        .iter()
        .map(|n| fs.contents(&sim_dir().join(n)).unwrap().len())
        .sum()
}

/// Event-like values: a counter, a random-looking digest, a JSON payload.
fn events(kv: &FileKv, model: &mut Model, runs: u8, per_run: u64) {
    let mut rng = 0x9E37_79B9_7F4A_7C15u64;
    for seq in 0..per_run {
        for run in 0..runs {
            let mut key = vec![run; 16];
            key.extend_from_slice(&seq.to_be_bytes());
            let mut value = seq.to_le_bytes().to_vec();
            for _ in 0..4 {
                rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                value.extend_from_slice(&rng.to_le_bytes());
            }
            value.extend_from_slice(
                format!(r#"{{"step":{seq},"tool":"search","args":{{"query":"weather","k":5}}}}"#)
                    .as_bytes(),
            );
            let mut b = Batch::default();
            b.put(Table::RunEvents, key.clone(), value.clone());
            kv.write(b).unwrap();
            model.insert((Table::RunEvents, key), value);
        }
    }
}

#[test]
fn compaction_packs_the_log_into_less_space_and_every_value_reads_back() {
    let fs = SimFs::new();
    let opts = FileOptions {
        segment_size: 64 << 10,
        ..small_opts()
    };
    let kv = open_sim(&fs, opts.clone()).unwrap();
    let mut model = Model::new();
    events(&kv, &mut model, 10, 300);
    let log_before = bytes_of(&fs, ".wal");
    assert!(files(&fs, ".wal").len() > 3);
    kv.compact().unwrap();
    assert_eq!(
        files(&fs, ".wal").len(),
        1,
        "only the new active segment is left"
    );
    assert_eq!(files(&fs, ".pack").len(), 1);
    let packed = bytes_of(&fs, ".pack");
    assert!(packed * 2 < log_before, "pack {packed} vs log {log_before}");
    assert_eq!(dump(&kv).unwrap(), model);
    drop(kv);
    let kv = open_sim(&fs, opts).unwrap();
    assert_eq!(dump(&kv).unwrap(), model);
}

#[test]
fn repeated_compactions_merge_small_packs_and_repack_garbage() {
    let fs = SimFs::new();
    let kv = open_sim(&fs, small_opts()).unwrap();
    let mut model = Model::new();
    for round in 0..5u64 {
        for b in workload(round + 40, 60) {
            kv.write(b.clone()).unwrap();
            apply_model(&mut model, &b);
        }
        kv.compact().unwrap();
        assert_eq!(files(&fs, ".pack").len(), 1, "round {round}");
        assert_eq!(dump(&kv).unwrap(), model, "round {round}");
    }
    // Delete almost everything: the pack is mostly garbage and goes.
    let mut b = Batch::default();
    for table in TABLES {
        b.delete_range(table, vec![0], vec![0xff]);
    }
    kv.write(b.clone()).unwrap();
    apply_model(&mut model, &b);
    let before = files(&fs, ".pack");
    kv.compact().unwrap();
    assert_ne!(files(&fs, ".pack"), before);
    assert_eq!(bytes_of(&fs, ".pack"), 0);
    assert_eq!(dump(&kv).unwrap(), model);
    drop(kv);
    assert_eq!(dump(&open_sim(&fs, small_opts()).unwrap()).unwrap(), model);
}

#[test]
fn a_pack_no_checkpoint_names_is_removed_on_open() {
    let fs = SimFs::new();
    let kv = open_sim(&fs, small_opts()).unwrap();
    let mut model = Model::new();
    for b in workload(7, 50) {
        kv.write(b.clone()).unwrap();
        apply_model(&mut model, &b);
    }
    kv.close().unwrap();
    drop(kv);
    // What a compaction that died before its checkpoint leaves.
    let orphan = sim_dir().join(pack::pack_name(PACK_BIT | 99));
    let mut w = PackWriter::create(&fs, &orphan).unwrap();
    w.push(Table::Meta, b"k", b"stale").unwrap();
    w.finish(PACK_BIT | 99).unwrap();
    let tmp = sim_dir().join("0000000000000064.pack.tmp");
    fs.create(&tmp).unwrap().write_at(b"partial", 0).unwrap();
    let kv = open_sim(&fs, small_opts()).unwrap();
    assert!(files(&fs, ".pack").is_empty());
    assert!(files(&fs, ".tmp").is_empty());
    assert_eq!(dump(&kv).unwrap(), model);
}

#[test]
fn a_damaged_pack_block_is_corrupted_when_read_and_a_damaged_table_refuses_to_open() {
    let fs = SimFs::new();
    let kv = open_sim(&fs, small_opts()).unwrap();
    let mut model = Model::new();
    events(&kv, &mut model, 2, 100);
    kv.compact().unwrap();
    kv.close().unwrap();
    drop(kv);
    let path = sim_dir().join(&files(&fs, ".pack")[0]);
    // A byte inside the first block.
    fs.edit(&path, |d| d[40] ^= 0x55);
    let kv = open_sim(&fs, small_opts()).unwrap();
    let err = dump(&kv).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains(".pack"), "{err}");
    drop(kv);
    fs.edit(&path, |d| d[40] ^= 0x55);
    assert_eq!(dump(&open_sim(&fs, small_opts()).unwrap()).unwrap(), model);
    // The block table's checksum.
    fs.edit(&path, |d| {
        let at = d.len() - 20;
        d[at] ^= 1;
    });
    let err = open_sim(&fs, small_opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains("block table"), "{err}");
    let salvage = FileOptions {
        salvage: true,
        ..small_opts()
    };
    let kv = open_sim(&fs, salvage).unwrap();
    assert!(
        kv.recovery_report().lost.iter().any(|l| l.contains("pack")),
        "{:?}",
        kv.recovery_report().lost
    );
}

#[test]
fn reads_span_blocks_and_incompressible_blocks_are_stored_as_is() {
    let fs = SimFs::new();
    let path = sim_dir().join("x.pack");
    fs.create_dir_all(&sim_dir()).unwrap();
    let mut w = PackWriter::create(&fs, &path).unwrap();
    let mut rng = 1u64;
    let mut noise = vec![0u8; 3 * pack::BLOCK_LEN];
    for b in noise.iter_mut() {
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        *b = (rng >> 56) as u8;
    }
    let text = b"tool_call ".repeat(9000);
    let mut at = Vec::new();
    for (i, value) in [&noise[..], &text[..], &noise[..100], &text[..5]]
        .iter()
        .enumerate()
    {
        at.push((
            w.push(Table::Blobs, &[i as u8], value).unwrap(),
            value.to_vec(),
        ));
    }
    let written = w.finish(PACK_BIT | 1).unwrap();
    let stored = fs.contents(&path).unwrap().len();
    assert!(stored < noise.len() + 100 + text.len() / 4, "{stored}");
    let reopened = Pack::open(PACK_BIT | 1, fs.open(&path).unwrap())
        .unwrap()
        .unwrap();
    for pack in [&written, &reopened] {
        for (off, value) in &at {
            let mut buf = vec![0u8; value.len()];
            pack.read_at(&mut buf, *off).unwrap();
            assert_eq!(&buf, value);
        }
        let mut past = [0u8; 2];
        let end = pack.len().unwrap() - 1;
        let err = pack.read_at(&mut past, end).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::UnexpectedEof);
    }
}

#[test]
fn garbage_never_panics_the_pack_reader() {
    let fs = SimFs::new();
    fs.create_dir_all(&sim_dir()).unwrap();
    let path = sim_dir().join("x.pack");
    let mut w = PackWriter::create(&fs, &path).unwrap();
    for i in 0..50u8 {
        w.push(Table::Meta, &[i], &[i; 300]).unwrap();
    }
    w.finish(PACK_BIT | 2).unwrap();
    let good = fs.contents(&path).unwrap();
    let mut rng = 5u64;
    for round in 0..2000 {
        let mut bytes = good.clone();
        rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        match round % 3 {
            0 => bytes.truncate((rng >> 33) as usize % (good.len() + 1)),
            _ => {
                let at = (rng >> 33) as usize % bytes.len();
                bytes[at] ^= (rng >> 8) as u8 | 1;
            }
        }
        let file = fs.create(&path).unwrap();
        file.write_at(&bytes, 0).unwrap();
        if let Ok(Ok(pack)) = Pack::open(PACK_BIT | 2, file) {
            let mut buf = vec![0u8; 300];
            for off in (0..pack.len().unwrap()).step_by(97) {
                let _ = pack.read_at(&mut buf, off);
            }
        }
    }
}

#[test]
fn automatic_maintenance_packs_what_compresses_and_leaves_what_does_not() {
    let fs = SimFs::new();
    let opts = FileOptions {
        segment_size: 64 << 10,
        checkpoint_interval: 200 << 10,
        ..small_opts()
    };
    let kv = open_sim(&fs, opts).unwrap();
    let mut model = Model::new();
    let mut rng = 3u64;
    let mut write = |kv: &FileKv, key: u32, value: Vec<u8>| {
        let mut b = Batch::default();
        b.put(Table::Blobs, key.to_be_bytes().to_vec(), value.clone());
        kv.write(b).unwrap();
        model.insert((Table::Blobs, key.to_be_bytes().to_vec()), value);
    };
    // Already-compressed bytes: sealed segments stay as they are.
    for key in 0..40u32 {
        let noise = (0..8000)
            .map(|_| {
                rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                (rng >> 56) as u8
            })
            .collect();
        write(&kv, key, noise);
    }
    kv.maybe_maintain();
    assert!(files(&fs, ".pack").is_empty());
    assert!(files(&fs, ".ckp").len() == 1, "maintenance ran");
    let segments = files(&fs, ".wal").len();
    assert!(segments > 3);
    // Text: the segments holding it are packed.
    for key in 40..80u32 {
        write(&kv, key, b"tool_call ".repeat(800));
    }
    kv.maybe_maintain();
    assert_eq!(files(&fs, ".pack").len(), 1);
    assert!(
        files(&fs, ".wal").len() >= segments,
        "the noisy segments stay"
    );
    assert_eq!(dump(&kv).unwrap(), model);
    drop(kv);
    assert_eq!(dump(&open_sim(&fs, small_opts()).unwrap()).unwrap(), model);
}

#[test]
fn a_fully_live_pack_of_small_values_is_not_packed_again() {
    let fs = SimFs::new();
    let kv = open_sim(&fs, small_opts()).unwrap();
    let mut model = Model::new();
    for i in 0..2000u32 {
        let mut b = Batch::default();
        let key = format!("{i:040}").into_bytes();
        b.put(Table::Meta, key.clone(), i.to_le_bytes().to_vec());
        kv.write(b).unwrap();
        model.insert((Table::Meta, key), i.to_le_bytes().to_vec());
    }
    kv.compact().unwrap();
    let first = files(&fs, ".pack");
    assert_eq!(kv.compact().unwrap(), 0);
    assert_eq!(
        files(&fs, ".pack"),
        first,
        "nothing to gain, nothing rewritten"
    );
    assert_eq!(dump(&kv).unwrap(), model);
}

#[test]
fn salvage_past_a_damaged_checkpoint_sets_packs_aside_instead_of_deleting_them() {
    let fs = SimFs::new();
    let kv = open_sim(&fs, small_opts()).unwrap();
    let mut model = Model::new();
    events(&kv, &mut model, 3, 50);
    kv.compact().unwrap();
    kv.close().unwrap();
    drop(kv);
    let pack = files(&fs, ".pack")[0].clone();
    let ckp = sim_dir().join(&files(&fs, ".ckp")[0]);
    fs.edit(&ckp, |d| d[20] ^= 1);
    let salvage = FileOptions {
        salvage: true,
        ..small_opts()
    };
    let kv = open_sim(&fs, salvage).unwrap();
    let lost = &kv.recovery_report().lost;
    assert!(
        lost.iter()
            .any(|l| l.contains(&pack) && l.contains(".lost")),
        "{lost:?}"
    );
    assert!(files(&fs, ".pack").is_empty());
    assert_eq!(files(&fs, ".pack.lost"), vec![format!("{pack}.lost")]);
    // A later compaction does not reuse its name.
    let mut b = Batch::default();
    b.put(Table::Meta, b"k".to_vec(), b"v".to_vec());
    kv.write(b).unwrap();
    kv.compact().unwrap();
    assert_ne!(files(&fs, ".pack"), vec![pack]);
}

#[test]
fn a_compaction_larger_than_one_pack_writes_several_and_keeps_every_value() {
    let fs = SimFs::new();
    let opts = FileOptions {
        pack_entries: 64,
        ..small_opts()
    };
    let kv = open_sim(&fs, opts.clone()).unwrap();
    let mut model = Model::new();
    events(&kv, &mut model, 3, 100);
    for b in workload(9, 80) {
        kv.write(b.clone()).unwrap();
        apply_model(&mut model, &b);
    }
    kv.compact().unwrap();
    let packs = files(&fs, ".pack").len();
    assert!(
        packs >= model.len() / 64,
        "{packs} packs for {} keys",
        model.len()
    );
    assert_eq!(files(&fs, ".wal").len(), 1);
    assert_eq!(dump(&kv).unwrap(), model);
    drop(kv);
    assert_eq!(dump(&open_sim(&fs, opts).unwrap()).unwrap(), model);
}
