//! `max_record_size` only refuses new writes: a store written with a
//! larger one keeps every record above a limit lowered at a later open —
//! replayed from the last segment or a sealed one, named by a checkpoint,
//! or packed — and reads its values back intact.

use super::super::checkpoint;
use super::super::index::Loc;
use super::*;
use stowage_core::ErrorKind;

fn put(table: Table, key: &[u8], value: &[u8]) -> Batch {
    let mut b = Batch::default();
    b.put(table, key.to_vec(), value.to_vec());
    b
}

/// The options of the later open: a limit below the records written.
fn lowered() -> FileOptions {
    FileOptions {
        max_record_size: 1024,
        ..small_opts()
    }
}

fn big(n: u8) -> Vec<u8> {
    (0..3000u32).map(|i| (i as u8) ^ n).collect()
}

/// The values read back after the lowered open, and a new write over the
/// limit refused with `InvalidInput` while one under it succeeds.
fn check_reopened(kv: &FileKv, keys: &[u8]) {
    for &k in keys {
        let got = kv.get(Table::Blobs, &[k]).unwrap();
        assert_eq!(got.as_deref(), Some(&big(k)[..]), "value {k}");
    }
    let scanned = kv
        .scan(Table::Blobs, &[], None, Direction::Forward, usize::MAX)
        .unwrap();
    let want: Vec<(Vec<u8>, Vec<u8>)> = keys.iter().map(|&k| (vec![k], big(k))).collect();
    assert_eq!(scanned, want);
    let err = kv.write(put(Table::Blobs, b"new", &big(9))).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
    assert_eq!(kv.get(Table::Blobs, b"new").unwrap(), None);
    kv.write(put(Table::Meta, b"small", b"after")).unwrap();
}

#[test]
fn a_record_above_a_lowered_limit_in_the_last_segment_is_not_cut_as_a_torn_tail() {
    let fs = SimFs::new();
    {
        let kv = open_sim(&fs, small_opts()).unwrap();
        kv.write(put(Table::Meta, b"a", b"small")).unwrap();
        kv.write(put(Table::Blobs, &[1], &big(1))).unwrap();
    }
    let kv = open_sim(&fs, lowered()).unwrap();
    let report = kv.recovery_report().clone();
    assert_eq!(report.truncated_tail, None, "{report:?}");
    assert_eq!(report.replayed_records, 2, "{report:?}");
    check_reopened(&kv, &[1]);
    drop(kv);
    // And again, now that the store holds records of both limits.
    let kv = open_sim(&fs, lowered()).unwrap();
    assert_eq!(kv.recovery_report().truncated_tail, None);
    check_reopened(&kv, &[1]);
    assert_eq!(kv.get(Table::Meta, b"small").unwrap().unwrap(), b"after");
}

#[test]
fn a_record_above_a_lowered_limit_in_a_sealed_segment_does_not_refuse_the_open() {
    let fs = SimFs::new();
    {
        let kv = open_sim(&fs, small_opts()).unwrap();
        kv.write(put(Table::Blobs, &[1], &big(1))).unwrap();
        kv.write(put(Table::Blobs, &[2], &big(2))).unwrap();
        // More segments after the big records' ones.
        for i in 0..6u8 {
            kv.write(put(Table::Meta, &[i], &[i; 1500])).unwrap();
        }
        let (loc, _) = kv.locate(Table::Blobs, &[1]).unwrap().unwrap();
        assert!(loc.seg + 1 < kv.wal.lock().active, "not a middle segment");
    }
    let kv = open_sim(&fs, lowered()).unwrap();
    let report = kv.recovery_report().clone();
    assert_eq!(report.truncated_tail, None, "{report:?}");
    assert!(report.lost.is_empty(), "{report:?}");
    check_reopened(&kv, &[1, 2]);
    for i in 0..6u8 {
        assert_eq!(kv.get(Table::Meta, &[i]).unwrap().unwrap(), [i; 1500]);
    }
}

#[test]
fn values_above_a_lowered_limit_read_back_from_a_checkpoint_and_from_a_pack() {
    for packed in [false, true] {
        let fs = SimFs::new();
        {
            let kv = open_sim(&fs, small_opts()).unwrap();
            // Neighbours in one segment, so a scan reads them as one span.
            let mut b = Batch::default();
            b.put(Table::Blobs, vec![1], big(1));
            b.put(Table::Blobs, vec![2], big(2));
            b.put(Table::Meta, b"m".to_vec(), b"x".to_vec());
            kv.write(b).unwrap();
            kv.write(put(Table::Blobs, &[3], &big(3))).unwrap();
            if packed {
                assert!(kv.compact().unwrap() > 0);
            }
            kv.close().unwrap();
        }
        let kv = open_sim(&fs, lowered()).unwrap();
        let report = kv.recovery_report().clone();
        assert!(report.checkpoint.is_some(), "{report:?}");
        assert_eq!(report.replayed_records, 0, "{report:?}");
        let (loc, _) = kv.locate(Table::Blobs, &[1]).unwrap().unwrap();
        assert_eq!(super::super::pack::is_pack(loc.seg), packed);
        check_reopened(&kv, &[1, 2, 3]);
    }
}

/// The same through the URL option, on a real directory.
#[test]
fn lowering_max_record_size_in_the_url_keeps_larger_records() {
    use super::super::url_options::parse;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("s");
    let with = |query: &str| {
        let mut url = url::Url::from_file_path(&dir).unwrap();
        url.set_query(Some(query));
        let (d, opts, _) = parse(&url).unwrap();
        FileKv::open(&d, opts).unwrap()
    };
    {
        let kv = with("max_record_size=1048576&checkpoint_interval=0");
        kv.write(put(Table::Blobs, &[1], &big(1))).unwrap();
    }
    let kv = with("max_record_size=1024&checkpoint_interval=0");
    assert_eq!(kv.recovery_report().truncated_tail, None);
    check_reopened(&kv, &[1]);
}

/// Reads of a value above the limit are bounded by its file instead: a
/// checkpoint naming one past the end of its segment (damage the CRC
/// could not catch, say a bug) is `Corrupted`, with no buffer of the
/// claimed size allocated.
#[test]
fn a_value_claimed_past_the_end_of_its_file_is_corrupted() {
    let fs = SimFs::new();
    {
        let kv = open_sim(&fs, small_opts()).unwrap();
        kv.write(put(Table::Blobs, &[1], &big(1))).unwrap();
        kv.close().unwrap();
    }
    let path = {
        use super::super::vfs::Vfs;
        let names = fs.list(&sim_dir()).unwrap();
        let name = names.into_iter().find(|n| n.ends_with(".ckp")).unwrap();
        sim_dir().join(name)
    };
    let (mut index, pos) = checkpoint::decode(&fs.contents(&path).unwrap()).unwrap();
    let loc = index.table(Table::Blobs).get(&[1]).unwrap();
    let forged = Loc {
        len: 3_000_000_000,
        ..loc
    };
    index.insert(Table::Blobs, &[1], forged);
    fs.edit(&path, |b| *b = checkpoint::encode(&index, pos));
    let kv = open_sim(&fs, lowered()).unwrap();
    let err = kv.get(Table::Blobs, &[1]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.message().contains("past the end"), "{err}");
}
