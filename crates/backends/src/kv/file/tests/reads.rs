//! Scans that read neighbouring values with one read: the values, their
//! order and their integrity checks are those of one read per value.

use super::super::recovery::segment_name;
use super::*;
use stowage_core::ErrorKind;

/// Writes 40 values of `Table::RunEvents`, each in its own batch together
/// with a small record of another table (as an append writes an event and
/// its run's head), and returns them in key order.
fn interleaved(kv: &FileKv) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut written = Vec::new();
    for i in 0u8..40 {
        let (key, value) = (vec![i], vec![i; 60 + usize::from(i)]);
        let mut b = Batch::default();
        b.put(Table::RunEvents, key.clone(), value.clone());
        b.put(Table::Runs, b"head".to_vec(), vec![i; 20]);
        kv.write(b).unwrap();
        written.push((key, value));
    }
    written
}

#[test]
fn coalesced_scans_return_every_value_in_order() {
    let fs = SimFs::new();
    let kv = open_sim(
        &fs,
        FileOptions {
            segment_size: 1 << 20,
            ..small_opts()
        },
    )
    .unwrap();
    let written = interleaved(&kv);
    let all = kv
        .scan(Table::RunEvents, &[], None, Direction::Forward, 1000)
        .unwrap();
    assert_eq!(all, written);
    let page = kv
        .scan(Table::RunEvents, &[5], Some(&[30]), Direction::Forward, 10)
        .unwrap();
    assert_eq!(page, written[5..15].to_vec());
    let mut rev = kv
        .scan(Table::RunEvents, &[], None, Direction::Reverse, 1000)
        .unwrap();
    rev.reverse();
    assert_eq!(rev, written);
    // Across segment boundaries (small segments: a few values each).
    let fs = SimFs::new();
    let kv = open_sim(&fs, small_opts()).unwrap();
    let written = interleaved(&kv);
    assert_eq!(
        kv.scan(Table::RunEvents, &[], None, Direction::Forward, 1000)
            .unwrap(),
        written
    );
}

#[test]
fn a_damaged_value_inside_a_coalesced_read_is_corrupted_and_named() {
    let fs = SimFs::new();
    let kv = open_sim(
        &fs,
        FileOptions {
            segment_size: 1 << 20,
            ..small_opts()
        },
    )
    .unwrap();
    let written = interleaved(&kv);
    // Flip one byte of value 17 (its bytes are unique in the segment)
    // under the open engine: bit rot after the write.
    let needle = written[17].1.clone();
    let segment = sim_dir().join(segment_name(1));
    assert!(fs.contents(&segment).is_some(), "the first segment exists");
    fs.edit(&segment, |bytes| {
        let at = bytes
            .windows(needle.len())
            .position(|w| w == needle.as_slice())
            .expect("value 17 in the first segment");
        bytes[at + 3] ^= 0x40;
    });
    let err = kv
        .scan(Table::RunEvents, &[], None, Direction::Forward, 1000)
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Corrupted, "{err}");
    assert!(err.to_string().contains("CRC32C"), "{err}");
    // Values before the damage still read, alone and in a span.
    let before = kv
        .scan(Table::RunEvents, &[], Some(&[17]), Direction::Forward, 1000)
        .unwrap();
    assert_eq!(before, written[..17].to_vec());
}
