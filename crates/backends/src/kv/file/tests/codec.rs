//! The record and checkpoint decoders on garbage: no panic, no huge
//! allocation, and round trips for what we encode.

use super::super::checkpoint;
use super::super::record::{
    decode_batch, decode_frame, encode_batch, seal_frame, RECORD_HEADER_LEN,
};
use super::*;
use proptest::prelude::*;

const MAX: usize = 1 << 20;

proptest! {
    #[test]
    fn garbage_never_panics_the_decoders(bytes in proptest::collection::vec(any::<u8>(), 0..512), seg in any::<u64>()) {
        let _ = decode_frame(&bytes, seg);
        let _ = decode_batch(&bytes);
        let _ = checkpoint::decode(&bytes);
    }

    #[test]
    fn garbage_after_a_plausible_header_never_panics(len in any::<u32>(), count in any::<u32>(), tail in proptest::collection::vec(any::<u8>(), 0..64)) {
        let mut bytes = len.to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 20]);
        bytes.extend_from_slice(&count.to_le_bytes());
        bytes.extend_from_slice(&tail);
        prop_assert!(decode_frame(&bytes, 1).is_err());
        let _ = decode_batch(&bytes[RECORD_HEADER_LEN..]);
    }

    #[test]
    fn batches_round_trip(seed in any::<u64>(), seg in any::<u64>(), seq in any::<u64>()) {
        for b in workload(seed, 3) {
            let (mut frame, ops) = encode_batch(&b, MAX).unwrap();
            seal_frame(&mut frame, seg, seq, seq / 2);
            let decoded = decode_frame(&frame, seg).unwrap().unwrap();
            prop_assert_eq!(decoded.seq, seq);
            prop_assert_eq!(decoded.synced, seq / 2);
            prop_assert_eq!(decoded.len, frame.len());
            // The writer indexes the operations the encoder returned, not
            // the payload decoded back: they must be the same, offsets too.
            prop_assert_eq!(ops.len(), b.ops.len());
            prop_assert_eq!(decode_batch(decoded.payload).unwrap(), ops);
            // The same bytes do not pass as a record of another segment.
            prop_assert!(decode_frame(&frame, seg ^ 1).is_err());
        }
    }
}

#[test]
fn huge_claimed_lengths_are_refused_before_allocating() {
    // A frame's length is checked against the bytes present (decoding
    // allocates nothing), never against `max_record_size`.
    let mut bytes = u32::MAX.to_le_bytes().to_vec();
    bytes.extend_from_slice(&[0; 20]);
    let err = decode_frame(&bytes, 1).unwrap_err();
    assert!(err.0.contains("more than the 0 bytes left"), "{err:?}");
    // A batch claiming four billion operations in a few bytes.
    let err = decode_batch(&[0xff, 0xff, 0xff, 0xff, 1, 0]).unwrap_err();
    assert!(err.0.contains("operations"), "{err:?}");
}
