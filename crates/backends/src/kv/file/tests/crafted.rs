//! Stores crafted to reach the edges of the format (intact CRCs, values
//! no real store reaches): `Corrupted`, never a panic.

use super::super::checkpoint::{self, Position};
use super::super::index::Index;
use super::super::record::{self, RECORD_HEADER_LEN, SEGMENT_HEADER_LEN};
use super::super::vfs::Vfs;
use super::*;
use stowage_core::ErrorKind;

fn put(key: &[u8]) -> Batch {
    let mut b = Batch::default();
    b.put(Table::Meta, key.to_vec(), b"v".to_vec());
    b
}

/// Writes `name` in the store's directory, synced.
fn create(fs: &SimFs, name: &str, bytes: &[u8]) {
    let file = fs.create(&sim_dir().join(name)).unwrap();
    file.write_at(bytes, 0).unwrap();
    file.sync_data().unwrap();
}

/// A store whose checkpoint expects `seq` next, and whose only segment
/// holds one intact record carrying it.
fn store_with_record_seq(seq: u64) -> SimFs {
    let fs = SimFs::new();
    fs.create_dir_all(&sim_dir()).unwrap();
    let pos = Position {
        seg: 1,
        off: SEGMENT_HEADER_LEN,
        next_seq: seq,
    };
    create(
        &fs,
        &checkpoint::file_name(seq),
        &checkpoint::encode(&Index::new(), pos),
    );
    let (mut frame, _) = record::encode_batch(&put(b"k"), 1 << 20).unwrap();
    record::seal_frame(&mut frame, 1, seq, seq);
    assert!(frame.len() > RECORD_HEADER_LEN);
    let mut segment = record::segment_header(1).to_vec();
    segment.extend_from_slice(&frame);
    create(&fs, &super::super::recovery::segment_name(1), &segment);
    fs.sync_dir(&sim_dir()).unwrap();
    fs
}

#[test]
fn a_record_with_the_last_seq_is_damage_not_a_panic() {
    let fs = store_with_record_seq(u64::MAX);
    let err = open_sim(&fs, small_opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains("no seq for a next record"), "{err}");
    // Salvage cuts it; the next write finds no seq left and is refused
    // before anything is written.
    let salvage = FileOptions {
        salvage: true,
        ..small_opts()
    };
    let kv = open_sim(&fs, salvage).unwrap();
    assert_eq!(kv.recovery_report().lost.len(), 1);
    let err = kv.write(put(b"after")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains("exhausted"), "{err}");
    assert_eq!(kv.get(Table::Meta, b"after").unwrap(), None);
}

#[test]
fn a_record_just_below_the_last_seq_replays_and_the_next_write_is_refused() {
    let fs = store_with_record_seq(u64::MAX - 1);
    let kv = open_sim(&fs, small_opts()).unwrap();
    assert_eq!(kv.get(Table::Meta, b"k").unwrap().unwrap(), b"v");
    let err = kv.write(put(b"after")).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert_eq!(kv.get(Table::Meta, b"after").unwrap(), None);
}

/// A `.wal` name above the pack bit (segment ids count up from 1) is not
/// taken for a segment: the open named a segment "missing" between the
/// real ones and it, and `id + 1` past it reached pack ids, then overflowed.
#[test]
fn a_segment_name_out_of_range_is_named_and_salvage_keeps_the_store() {
    let fs = store_with_record_seq(7);
    create(
        &fs,
        "ffffffffffffffff.wal",
        &record::segment_header(u64::MAX),
    );
    let err = open_sim(&fs, small_opts()).err().unwrap();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains("ffffffffffffffff.wal"), "{err}");
    let salvage = FileOptions {
        salvage: true,
        ..small_opts()
    };
    let kv = open_sim(&fs, salvage).unwrap();
    assert_eq!(kv.get(Table::Meta, b"k").unwrap().unwrap(), b"v");
    assert_eq!(
        kv.recovery_report().lost.len(),
        1,
        "{:?}",
        kv.recovery_report()
    );
    kv.write(put(b"after")).unwrap();
    assert_eq!(kv.get(Table::Meta, b"after").unwrap().unwrap(), b"v");
}
