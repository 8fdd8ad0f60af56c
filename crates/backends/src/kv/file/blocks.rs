//! One table's index: its keys in order, each mapped to where its value
//! lives. Keys that count up — one prefix followed by consecutive
//! big-endian `u64`s, as a run's events (run id ‖ seq), a session's log
//! entries and a blob's chunks are — share one tree entry: the first key
//! and a vector of locations. Such a key costs the 24 bytes of its [`Loc`]
//! instead of a tree slot and a key allocation (~130 bytes), so memory
//! grows with the number of runs, sessions and blobs rather than with
//! their events, entries and chunks.
//!
//! Invariant: a block whose first key is `P ‖ s` (as big-endian `u64`)
//! with `n` locations stands for the keys `P ‖ s`, `P ‖ s+1`, …,
//! `P ‖ s+n−1`, and no other key of the table sorts between its first and
//! its last key. Writing a key inside a block's span that is not one of
//! its keys (a longer key, say) splits the block there, so the invariant
//! holds for any keys; counting keys only make it compact.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::Bound::{self, Excluded, Included, Unbounded};

use super::index::Loc;

/// The locations of one block.
#[derive(Debug, Clone)]
enum Slot {
    One(Loc),
    Many(Vec<Loc>),
}

impl Slot {
    fn locs(&self) -> &[Loc] {
        match self {
            Slot::One(loc) => std::slice::from_ref(loc),
            Slot::Many(locs) => locs,
        }
    }

    fn locs_mut(&mut self) -> &mut [Loc] {
        match self {
            Slot::One(loc) => std::slice::from_mut(loc),
            Slot::Many(locs) => locs,
        }
    }

    fn push(&mut self, loc: Loc) {
        match self {
            Slot::One(first) => *self = Slot::Many(vec![*first, loc]),
            Slot::Many(locs) => locs.push(loc),
        }
    }

    fn into_vec(self) -> Vec<Loc> {
        match self {
            Slot::One(loc) => vec![loc],
            Slot::Many(locs) => locs,
        }
    }

    /// `None` for no locations.
    fn from_vec(mut locs: Vec<Loc>) -> Option<Slot> {
        match locs.len() {
            0 => None,
            1 => Some(Slot::One(locs[0])),
            _ => {
                locs.shrink_to_fit();
                Some(Slot::Many(locs))
            }
        }
    }
}

/// A key's prefix and counter (its last 8 bytes); `None` if it is shorter.
fn split(key: &[u8]) -> Option<(&[u8], u64)> {
    let at = key.len().checked_sub(8)?;
    let (prefix, counter) = key.split_at(at);
    Some((prefix, u64::from_be_bytes(counter.try_into().ok()?)))
}

/// The `i`-th key of the block starting at `first`.
fn key_at(first: &[u8], i: usize) -> Vec<u8> {
    match split(first) {
        Some((prefix, start)) if i > 0 => {
            let mut key = Vec::with_capacity(first.len());
            key.extend_from_slice(prefix);
            key.extend_from_slice(&(start + i as u64).to_be_bytes());
            key
        }
        // Blocks of more than one key have a counter (see `insert`).
        _ => first.to_vec(),
    }
}

/// Compares the `i`-th key of the block starting at `first` with `other`,
/// without building it.
fn cmp_at(first: &[u8], i: usize, other: &[u8]) -> Ordering {
    match split(first) {
        Some((prefix, start)) if i > 0 => {
            let counter = (start + i as u64).to_be_bytes();
            prefix.iter().chain(counter.iter()).cmp(other.iter())
        }
        _ => first.cmp(other),
    }
}

/// How many keys of the block (`first`, `n` keys) sort below `bound`.
fn count_below(first: &[u8], n: usize, bound: &[u8]) -> usize {
    // Keys ascend with their position.
    let (mut lo, mut hi) = (0, n);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if cmp_at(first, mid, bound) == Ordering::Less {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    lo
}

/// The position of `key` in the block (`first`, `n` keys), if it is one
/// of its keys.
fn position(first: &[u8], n: usize, key: &[u8]) -> Option<usize> {
    if key == first {
        return Some(0);
    }
    let ((p1, start), (p2, counter)) = (split(first)?, split(key)?);
    let offset = usize::try_from(counter.checked_sub(start)?).ok()?;
    (p1 == p2 && offset < n).then_some(offset)
}

/// Whether `key` is the key right after the block's last (`first`, `n`).
fn continues(first: &[u8], n: usize, key: &[u8]) -> bool {
    match (split(first), split(key)) {
        (Some((p1, start)), Some((p2, counter))) => {
            p1 == p2 && start.checked_add(n as u64) == Some(counter)
        }
        _ => false,
    }
}

/// One table's keys → locations, in key order.
#[derive(Debug, Default, Clone)]
pub(crate) struct Blocks {
    map: BTreeMap<Vec<u8>, Slot>,
}

impl Blocks {
    /// Where `key`'s value lives.
    pub(crate) fn get(&self, key: &[u8]) -> Option<Loc> {
        let (first, slot) = self
            .map
            .range::<[u8], _>((Unbounded, Included(key)))
            .next_back()?;
        let i = position(first, slot.locs().len(), key)?;
        slot.locs().get(i).copied()
    }

    /// Sets `key` to `loc`; returns the location it replaces.
    pub(crate) fn insert(&mut self, key: &[u8], loc: Loc) -> Option<Loc> {
        let mut split_at = None;
        // One search finds both the block that may hold `key` and, when it
        // does not, the block before `key` (its first key is then below
        // `key`: a block starting at `key` holds it).
        if let Some((first, slot)) = self
            .map
            .range_mut::<[u8], _>((Unbounded, Included(key)))
            .next_back()
        {
            let n = slot.locs().len();
            if let Some(i) = position(first, n, key) {
                return Some(std::mem::replace(&mut slot.locs_mut()[i], loc));
            }
            // `key` is absent. It extends the block before it when it is
            // that block's next key (a key sorting between the two would
            // be the one before it); it splits that block when it falls
            // inside its span.
            if continues(first, n, key) {
                slot.push(loc);
                return None;
            }
            if n > 1 && cmp_at(first, n - 1, key) == Ordering::Greater {
                split_at = Some((first.clone(), count_below(first, n, key)));
            }
        }
        if let Some((first, i)) = split_at {
            self.split(&first, i);
        }
        self.map.insert(key.to_vec(), Slot::One(loc));
        None
    }

    /// Splits the block at `first` before its `i`-th key.
    fn split(&mut self, first: &[u8], i: usize) {
        if let Some(Slot::Many(locs)) = self.map.get_mut(first) {
            let right = locs.split_off(i);
            let left = std::mem::take(locs);
            let key = key_at(first, i);
            for (k, part) in [(first.to_vec(), left), (key, right)] {
                match Slot::from_vec(part) {
                    Some(slot) => self.map.insert(k, slot),
                    None => self.map.remove(&k),
                };
            }
        }
    }

    /// Removes the keys in `[lo, hi)` (`hi` `None`: to the end); returns
    /// the locations they had.
    pub(crate) fn remove_range(&mut self, lo: &[u8], hi: Option<&[u8]>) -> Vec<Loc> {
        let firsts: Vec<Vec<u8>> = self
            .spans(lo, hi)
            .filter(|(_, _, positions)| !positions.is_empty())
            .map(|(first, _, _)| first.clone())
            .collect();
        let mut removed = Vec::new();
        for first in firsts {
            let Some(slot) = self.map.remove(&first) else {
                continue;
            };
            let n = slot.locs().len();
            let i = count_below(&first, n, lo);
            let j = hi.map_or(n, |h| count_below(&first, n, h)).max(i);
            let mut left = slot.into_vec();
            let right = left.split_off(j);
            removed.extend(left.drain(i..));
            // The right part's first key exists (it is one of the block's),
            // so building it cannot overflow the counter.
            if let Some(slot) = Slot::from_vec(right) {
                self.map.insert(key_at(&first, j), slot);
            }
            if let Some(slot) = Slot::from_vec(left) {
                self.map.insert(first, slot);
            }
        }
        removed
    }

    /// Removes `key`; returns its location.
    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Loc> {
        let mut next = key.to_vec();
        next.push(0);
        self.remove_range(key, Some(&next)).pop()
    }

    /// The blocks holding keys in `[lo, hi)`, each with the positions of
    /// those keys.
    fn spans<'a>(
        &'a self,
        lo: &'a [u8],
        hi: Option<&'a [u8]>,
    ) -> impl DoubleEndedIterator<Item = (&'a Vec<u8>, &'a Slot, std::ops::Range<usize>)> + 'a {
        let empty = hi.is_some_and(|h| h <= lo);
        let upper: Bound<&[u8]> = match hi {
            _ if empty => Excluded(lo),
            Some(h) => Excluded(h),
            None => Unbounded,
        };
        // The block before `lo` may reach into the range.
        let before = self
            .map
            .range::<[u8], _>((Unbounded, Excluded(lo)))
            .next_back()
            .filter(|_| !empty);
        before
            .into_iter()
            .chain(self.map.range::<[u8], _>((Included(lo), upper)))
            .map(move |(first, slot)| {
                let n = slot.locs().len();
                let i = count_below(first, n, lo);
                let j = hi.map_or(n, |h| count_below(first, n, h)).max(i);
                (first, slot, i..j)
            })
    }

    /// The keys in `[lo, hi)` with their locations, in key order (reverse
    /// it for descending order).
    pub(crate) fn range<'a>(
        &'a self,
        lo: &'a [u8],
        hi: Option<&'a [u8]>,
    ) -> impl DoubleEndedIterator<Item = (Vec<u8>, Loc)> + 'a {
        self.spans(lo, hi).flat_map(|(first, slot, positions)| {
            positions.map(move |i| (key_at(first, i), slot.locs()[i]))
        })
    }

    /// The locations of the keys in `[lo, hi)`, in key order.
    pub(crate) fn locs<'a>(
        &'a self,
        lo: &'a [u8],
        hi: Option<&'a [u8]>,
    ) -> impl Iterator<Item = Loc> + 'a {
        self.spans(lo, hi)
            .flat_map(|(_, slot, positions)| slot.locs()[positions].iter().copied())
    }

    /// Gives back the spare capacity of every block (after recovery built
    /// them by pushing).
    pub(crate) fn shrink(&mut self) {
        for slot in self.map.values_mut() {
            if let Slot::Many(locs) = slot {
                locs.shrink_to_fit();
            }
        }
    }

    /// Every block: its first key and its locations, in key order.
    pub(crate) fn blocks(&self) -> impl Iterator<Item = (&Vec<u8>, &[Loc])> {
        self.map.iter().map(|(first, slot)| (first, slot.locs()))
    }

    /// Every key with its location, in key order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Vec<u8>, Loc)> + '_ {
        self.range(&[], None)
    }
}

#[cfg(test)]
#[path = "blocks_tests.rs"]
mod tests;
