//! Run identifiers and the injectable id generator.

use std::fmt;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::time::Timestamp;

/// The id of a run: a UUID v7, so ids sort by creation time.
///
/// ```
/// use stowage_core::{RunId, Timestamp};
/// let a = RunId::new_v7(Timestamp::from_millis(1_000), 1);
/// let b = RunId::new_v7(Timestamp::from_millis(2_000), 0);
/// assert!(a < b);
/// assert_eq!(a.to_string().parse::<RunId>().unwrap(), a);
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct RunId(Uuid);

impl<'de> Deserialize<'de> for RunId {
    /// Accepts only UUID v7, like [`RunId::from_uuid`].
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        RunId::from_uuid(Uuid::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

impl RunId {
    /// A UUID v7 for `time`, with its 74 random bits taken from `entropy`
    /// (use random bits in production, a counter in deterministic tests).
    /// A v7 id holds 48 bits of milliseconds (until the year 10889): later
    /// times are clamped to the largest, so ids never wrap around.
    pub fn new_v7(time: Timestamp, entropy: u128) -> Self {
        // 48-bit big-endian milliseconds, version 7, variant 0b10.
        let ms = u128::from(time.as_millis().min(MAX_V7_MILLIS));
        let rand_a = (entropy >> 62) & 0xFFF;
        let rand_b = entropy & 0x3FFF_FFFF_FFFF_FFFF;
        let value = (ms << 80) | (0x7 << 76) | (rand_a << 64) | (0b10 << 62) | rand_b;
        RunId(Uuid::from_u128(value))
    }

    /// Wraps a UUID, which must be version 7.
    ///
    /// # Errors
    /// [`InvalidInput`](crate::ErrorKind::InvalidInput) for any other version.
    pub fn from_uuid(uuid: Uuid) -> Result<Self> {
        if uuid.get_version_num() != 7 {
            return Err(Error::invalid_input(format!(
                "run id {uuid} is not a UUID v7"
            )));
        }
        Ok(RunId(uuid))
    }

    /// The UUID.
    pub fn as_uuid(&self) -> &Uuid {
        &self.0
    }

    /// The 16 raw bytes (big-endian, so they sort like the id).
    pub fn to_bytes(self) -> [u8; 16] {
        *self.0.as_bytes()
    }

    /// Parses 16 raw bytes written by [`RunId::to_bytes`].
    ///
    /// # Errors
    /// [`InvalidInput`](crate::ErrorKind::InvalidInput) if they are not a UUID v7.
    pub fn from_bytes(bytes: [u8; 16]) -> Result<Self> {
        Self::from_uuid(Uuid::from_bytes(bytes))
    }

    /// The creation time encoded in the id.
    pub fn timestamp(&self) -> Timestamp {
        Timestamp::from_millis((self.0.as_u128() >> 80) as u64)
    }
}

impl fmt::Display for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl fmt::Debug for RunId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RunId({})", self.0)
    }
}

impl FromStr for RunId {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let uuid = Uuid::parse_str(s)
            .map_err(|e| Error::invalid_input(format!("run id {s:?} is not a UUID: {e}")))?;
        Self::from_uuid(uuid)
    }
}

/// The largest millisecond count a UUID v7 can hold.
const MAX_V7_MILLIS: u64 = (1 << 48) - 1;

/// Where stores get new run ids from. Injected so that fakes can produce
/// deterministic ids.
pub trait IdGenerator: Send + Sync + fmt::Debug {
    /// A new, unique run id for a run created at `now`.
    fn new_run_id(&self, now: Timestamp) -> RunId;
}

/// UUID v7 ids with random bits, strictly increasing within one generator
/// (one process): ids made in the same millisecond, or while the clock
/// steps back, continue from the last id by a random increment, so
/// "newest first" by id is creation order within a process. Across
/// processes, ids of the same millisecond order arbitrarily.
#[derive(Debug, Default)]
pub struct RandomIds {
    last: Mutex<(u64, u128)>,
}

/// The 74 random bits of a UUID v7.
const ENTROPY_BITS: u32 = 74;
const ENTROPY_MAX: u128 = (1 << ENTROPY_BITS) - 1;

impl IdGenerator for RandomIds {
    fn new_run_id(&self, now: Timestamp) -> RunId {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let (last_ms, last_entropy) = *last;
        let mut ms = now.as_millis().min(MAX_V7_MILLIS);
        // Fresh milliseconds start in the lower half so increments have room.
        let mut entropy = rand::random::<u128>() & (ENTROPY_MAX >> 1);
        if ms <= last_ms {
            ms = last_ms;
            let step = u128::from(rand::random::<u32>()) + 1;
            entropy = last_entropy + step;
            if entropy > ENTROPY_MAX {
                // This millisecond's ids are used up: borrow the next one
                // (past the year 10889 there is none, and order is lost).
                entropy &= ENTROPY_MAX >> 1;
                ms = (ms + 1).min(MAX_V7_MILLIS);
            }
        }
        *last = (ms, entropy);
        RunId::new_v7(Timestamp::from_millis(ms), entropy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v7_layout_round_trips() {
        let id = RunId::new_v7(Timestamp::from_millis(1_700_000_000_000), u128::MAX);
        assert_eq!(id.as_uuid().get_version_num(), 7);
        assert_eq!(id.timestamp(), Timestamp::from_millis(1_700_000_000_000));
        assert_eq!(RunId::from_bytes(id.to_bytes()).unwrap(), id);
    }

    #[test]
    fn random_ids_increase_within_a_millisecond_and_when_time_steps_back() {
        let ids = RandomIds::default();
        let mut prev = ids.new_run_id(Timestamp::from_millis(5_000));
        for t in [5_000, 5_000, 4_000, 5_000, 0, 6_000, 6_000] {
            let next = ids.new_run_id(Timestamp::from_millis(t));
            assert!(next > prev, "{next} !> {prev}");
            prev = next;
        }
    }

    #[test]
    fn non_v7_is_rejected() {
        let v4 = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert_eq!(
            v4.parse::<RunId>().unwrap_err().kind(),
            crate::ErrorKind::InvalidInput
        );
        assert!("not-a-uuid".parse::<RunId>().is_err());
        let json = format!("\"{v4}\"");
        assert!(serde_json::from_str::<RunId>(&json).is_err());
    }
}
