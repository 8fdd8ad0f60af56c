//! Reusable read buffers for large values (blob chunks).
//!
//! A 1 MiB blob `get` used to read into a freshly zeroed allocation: the
//! allocator hands such sizes back to the OS when they are freed, so every
//! read paid for zeroing and faulting in 256 fresh pages, which profiles
//! showed as about half of the read's CPU. A read of a value between
//! [`POOLED_MIN`] and [`POOLED_LEN`] bytes now takes an already touched
//! buffer from the store's pool, the caller gets it as [`Bytes`] without a
//! copy, and dropping those bytes puts the buffer back.
//!
//! Memory: at most [`POOL_IDLE`] idle buffers of [`POOLED_LEN`] bytes per
//! open store (17 MiB), kept only after such reads; buffers still lent
//! out when the store closes are freed when their bytes are dropped. A
//! caller that keeps the bytes of a value keeps its whole buffer, at most
//! twice the value's size.

use std::sync::{Arc, Weak};

use bytes::Bytes;
use parking_lot::Mutex;

/// The length of a pooled buffer: one blob chunk (1 MiB and its CRC32C)
/// with room to spare.
pub(crate) const POOLED_LEN: usize = (1 << 20) + 64;
/// Smaller values get a buffer of their own (a pooled one would keep more
/// than twice their size alive for as long as the caller keeps them).
pub(crate) const POOLED_MIN: usize = POOLED_LEN / 2;
/// Idle buffers kept per store.
const POOL_IDLE: usize = 16;

/// The idle buffers of one store.
#[derive(Default)]
pub(crate) struct BufPool {
    idle: Mutex<Vec<Vec<u8>>>,
}

/// A buffer lent out as [`Bytes`]; returns to its pool when dropped.
struct Lent {
    buf: Vec<u8>,
    len: usize,
    pool: Weak<BufPool>,
}

impl AsRef<[u8]> for Lent {
    fn as_ref(&self) -> &[u8] {
        self.buf.get(..self.len).unwrap_or(&[])
    }
}

impl Drop for Lent {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            let mut idle = pool.idle.lock();
            if idle.len() < POOL_IDLE {
                idle.push(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// Whether a value of `len` bytes is read into a pooled buffer.
pub(crate) fn pooled(len: usize) -> bool {
    (POOLED_MIN..=POOLED_LEN).contains(&len)
}

impl BufPool {
    /// Fills the first `len` bytes (`pooled(len)`) of a pooled buffer with
    /// `fill` and lends them out; on error the buffer goes back at once.
    pub(crate) fn read<E>(
        self: &Arc<Self>,
        len: usize,
        fill: impl FnOnce(&mut [u8]) -> Result<(), E>,
    ) -> Result<Bytes, E> {
        let buf = self.idle.lock().pop();
        let mut lent = Lent {
            // Zeroed once, when the pool grows; reused as it is after that.
            buf: buf.unwrap_or_else(|| vec![0u8; POOLED_LEN]),
            len,
            pool: Arc::downgrade(self),
        };
        let target = lent.buf.get_mut(..len).unwrap_or_default();
        fill(target)?;
        Ok(Bytes::from_owner(lent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_their_bytes_are_dropped() {
        let pool = Arc::new(BufPool::default());
        let len = POOLED_MIN + 3;
        let first = pool
            .read::<()>(len, |b| {
                b.fill(7);
                Ok(())
            })
            .unwrap();
        assert_eq!(first.len(), len);
        assert!(first.iter().all(|&b| b == 7));
        let slice = first.slice(4..);
        drop(first);
        assert!(pool.idle.lock().is_empty(), "a slice still holds it");
        drop(slice);
        assert_eq!(pool.idle.lock().len(), 1);
        // A failed fill lends nothing and keeps the buffer.
        assert!(pool.read(len, |_| Err("boom")).is_err());
        assert_eq!(pool.idle.lock().len(), 1);
        let second = pool.read::<()>(POOLED_LEN, |_| Ok(())).unwrap();
        assert!(pool.idle.lock().is_empty());
        drop(pool);
        drop(second); // the pool is gone: the buffer is simply freed
        assert!(pooled(POOLED_MIN) && pooled(POOLED_LEN) && !pooled(POOLED_LEN + 1));
    }
}
