use std::collections::BTreeMap;

use proptest::prelude::*;

use super::Blocks;
use crate::kv::file::index::Loc;

fn loc(n: u64) -> Loc {
    Loc {
        seg: n,
        off: n * 3,
        len: n as u32,
        crc: !(n as u32),
    }
}

/// `prefix ‖ counter` as the engine's event keys are.
fn counted(prefix: u8, counter: u64) -> Vec<u8> {
    let mut key = vec![prefix; 2];
    key.extend_from_slice(&counter.to_be_bytes());
    key
}

#[derive(Debug, Clone)]
enum Op {
    /// A counting key (most writes).
    Put(u8, u64, u64),
    /// Any short key, which may fall inside a block's span.
    PutRaw(Vec<u8>, u64),
    Remove(u8, u64),
    RemoveRange(Vec<u8>, Option<Vec<u8>>),
}

/// Counting keys, keys that sort right after or before one (a suffix, a
/// cut), and arbitrary short keys.
fn key_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (0u8..3, 0u64..12).prop_map(|(p, c)| counted(p, c)),
        (0u8..3, 0u64..12, 0u8..3).prop_map(|(p, c, x)| {
            let mut key = counted(p, c);
            key.push(x);
            key
        }),
        (0u8..3, 0u64..12, 0usize..10).prop_map(|(p, c, cut)| counted(p, c)[..cut].to_vec()),
        proptest::collection::vec(0u8..3, 0..12),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0u8..3, 0u64..12, 1u64..1000).prop_map(|(p, c, v)| Op::Put(p, c, v)),
        2 => (key_bytes(), 1u64..1000).prop_map(|(k, v)| Op::PutRaw(k, v)),
        2 => (0u8..3, 0u64..12).prop_map(|(p, c)| Op::Remove(p, c)),
        1 => (key_bytes(), proptest::option::of(key_bytes())).prop_map(|(a, b)| Op::RemoveRange(a, b)),
    ]
}

fn check(blocks: &Blocks, model: &BTreeMap<Vec<u8>, Loc>, lo: &[u8], hi: Option<&[u8]>) {
    let want: Vec<(Vec<u8>, Loc)> = model
        .iter()
        .filter(|(k, _)| k.as_slice() >= lo && hi.is_none_or(|h| k.as_slice() < h))
        .map(|(k, l)| (k.clone(), *l))
        .collect();
    let got: Vec<_> = blocks.range(lo, hi).collect();
    assert_eq!(got, want, "range {lo:?}..{hi:?}");
    let mut back: Vec<_> = blocks.range(lo, hi).rev().collect();
    back.reverse();
    assert_eq!(back, want, "reverse range {lo:?}..{hi:?}");
    let locs: Vec<Loc> = blocks.locs(lo, hi).collect();
    assert_eq!(locs, want.iter().map(|(_, l)| *l).collect::<Vec<_>>());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Blocks behave as a sorted map of keys to locations, whatever the
    /// keys and the order of writes.
    #[test]
    fn blocks_match_a_sorted_map(ops in proptest::collection::vec(op(), 1..120),
                                 lo in key_bytes(), hi in proptest::option::of(key_bytes())) {
        let mut blocks = Blocks::default();
        let mut model = BTreeMap::new();
        for op in ops {
            match op {
                Op::Put(p, c, v) => {
                    let key = counted(p, c);
                    prop_assert_eq!(blocks.insert(&key, loc(v)), model.insert(key, loc(v)));
                }
                Op::PutRaw(key, v) => {
                    prop_assert_eq!(blocks.insert(&key, loc(v)), model.insert(key, loc(v)));
                }
                Op::Remove(p, c) => {
                    let key = counted(p, c);
                    prop_assert_eq!(blocks.remove(&key), model.remove(&key));
                }
                Op::RemoveRange(a, b) => {
                    let mut got = blocks.remove_range(&a, b.as_deref());
                    let keys: Vec<Vec<u8>> = model
                        .keys()
                        .filter(|k| k.as_slice() >= a.as_slice() && b.as_ref().is_none_or(|h| *k < h))
                        .cloned()
                        .collect();
                    let mut want: Vec<Loc> = keys.iter().filter_map(|k| model.remove(k)).collect();
                    got.sort_by_key(|l| (l.seg, l.off));
                    want.sort_by_key(|l| (l.seg, l.off));
                    prop_assert_eq!(got, want);
                }
            }
        }
        for (key, l) in &model {
            prop_assert_eq!(blocks.get(key), Some(*l));
        }
        check(&blocks, &model, &[], None);
        check(&blocks, &model, &lo, hi.as_deref());
        let entries: Vec<_> = blocks.entries().collect();
        prop_assert_eq!(entries.len(), model.len());
    }
}

#[test]
fn counting_keys_share_one_block() {
    let mut blocks = Blocks::default();
    for c in 0..10_000u64 {
        blocks.insert(&counted(1, c), loc(c));
        blocks.insert(&counted(2, c + 5), loc(c));
    }
    assert_eq!(blocks.blocks().count(), 2);
    // A key inside a span splits its block; removing it leaves two.
    blocks.insert(&[1, 1, 0, 0, 0, 0, 0, 0, 0, 7, 0], loc(1));
    assert_eq!(blocks.blocks().count(), 4);
    assert_eq!(blocks.get(&counted(1, 8)), Some(loc(8)));
    blocks.remove_range(&counted(1, 100), Some(&counted(1, 200)));
    assert_eq!(blocks.blocks().count(), 5);
    assert_eq!(blocks.get(&counted(1, 150)), None);
    assert_eq!(blocks.get(&counted(1, 200)), Some(loc(200)));
}

#[test]
fn a_key_between_a_block_and_its_next_key_stops_the_block() {
    let mut blocks = Blocks::default();
    for c in 0..4 {
        blocks.insert(&counted(1, c), loc(c));
    }
    let mut between = counted(1, 3);
    between.push(0);
    blocks.insert(&between, loc(9));
    blocks.insert(&counted(1, 4), loc(4));
    let keys: Vec<Vec<u8>> = blocks.entries().map(|(k, _)| k).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted);
    assert_eq!(keys.len(), 6);
}

#[test]
fn a_block_ending_at_the_largest_counter_takes_range_deletes() {
    let mut blocks = Blocks::default();
    for c in u64::MAX - 3..=u64::MAX {
        blocks.insert(&counted(1, c), loc(c % 100));
    }
    assert_eq!(blocks.blocks().count(), 1);
    let removed = blocks.remove_range(&counted(1, u64::MAX - 1), None);
    assert_eq!(removed.len(), 2);
    assert_eq!(blocks.entries().count(), 2);
    assert_eq!(
        blocks.remove(&counted(1, u64::MAX - 2)),
        Some(loc((u64::MAX - 2) % 100))
    );
    assert_eq!(
        blocks.get(&counted(1, u64::MAX - 3)),
        Some(loc((u64::MAX - 3) % 100))
    );
}
