//! Message ids: 128 bits, time-ordered, unique without coordination.
//!
//! Layout (most significant first): 48 bits of Unix milliseconds, 32 bits of a
//! per-generator counter, 48 bits of per-generator random salt. Stored big-endian,
//! so the byte order of ids is their creation order: spool keys built from ids sort
//! by age and a range scan walks the oldest messages first. The text form is 32
//! lowercase hex digits, which sorts the same way.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use thiserror::Error;

use super::time::Timestamp;

/// A message id; also the key of the message's body and meta records in the spool.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId(pub u128);

/// Why a text id was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("a message id is 32 hexadecimal digits")]
pub struct ParseIdError;

impl MessageId {
    /// Builds an id from its three parts (each truncated to its field width).
    pub fn from_parts(millis: u64, counter: u32, salt: u64) -> MessageId {
        let ms = (millis & 0xFFFF_FFFF_FFFF) as u128;
        let salt = (salt & 0xFFFF_FFFF_FFFF) as u128;
        MessageId(ms << 80 | (counter as u128) << 48 | salt)
    }

    /// The creation time encoded in the id.
    pub fn timestamp(self) -> Timestamp {
        Timestamp((self.0 >> 80) as u64)
    }

    /// Big-endian bytes: the spool key form, sorting by creation time.
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.to_be_bytes()
    }

    /// The inverse of [`MessageId::to_bytes`].
    pub fn from_bytes(bytes: [u8; 16]) -> MessageId {
        MessageId(u128::from_be_bytes(bytes))
    }
}

impl fmt::Display for MessageId {
    /// 32 lowercase hex digits.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:032x}", self.0)
    }
}

impl fmt::Debug for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MessageId({self})")
    }
}

impl FromStr for MessageId {
    type Err = ParseIdError;

    /// Parses the [`Display`](fmt::Display) form (either case).
    fn from_str(s: &str) -> Result<MessageId, ParseIdError> {
        if s.len() != 32 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(ParseIdError);
        }
        u128::from_str_radix(s, 16)
            .map(MessageId)
            .map_err(|_| ParseIdError)
    }
}

/// Hands out unique ids. One per process (or per spool); the salt makes ids from
/// different processes or restarts distinct, the counter ids within one millisecond.
#[derive(Debug)]
pub struct IdGenerator {
    /// 48 random bits, fixed for this generator's life.
    salt: u64,
    /// Incremented per id; wraps after 2^32 ids, far apart in time.
    counter: AtomicU32,
}

impl IdGenerator {
    /// A generator with a random salt and counter start (from the OS-seeded hasher
    /// keys std uses against HashDoS, so no extra dependency).
    pub fn new() -> IdGenerator {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u64(0x766f6c6c6579);
        let r = h.finish();
        IdGenerator::with_seed(r, (r >> 16) as u32)
    }

    /// A deterministic generator, for tests and benchmarks.
    pub fn with_seed(salt: u64, counter: u32) -> IdGenerator {
        IdGenerator {
            salt: salt & 0xFFFF_FFFF_FFFF,
            counter: AtomicU32::new(counter),
        }
    }

    /// The next id for a message created at `now`.
    pub fn generate(&self, now: Timestamp) -> MessageId {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        MessageId::from_parts(now.as_millis(), n, self.salt)
    }
}

impl Default for IdGenerator {
    fn default() -> Self {
        IdGenerator::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_bytes_round_trip() {
        let g = IdGenerator::new();
        let id = g.generate(Timestamp(1_700_000_000_123));
        let text = id.to_string();
        assert_eq!(text.len(), 32);
        assert_eq!(text.parse::<MessageId>(), Ok(id));
        assert_eq!(text.to_uppercase().parse::<MessageId>(), Ok(id));
        assert_eq!(MessageId::from_bytes(id.to_bytes()), id);
        assert_eq!(id.timestamp(), Timestamp(1_700_000_000_123));
    }

    #[test]
    fn bad_text_is_refused() {
        for bad in [
            "",
            "0",
            "+0000000000000000000000000000000",
            &"0".repeat(33),
            &"g".repeat(32),
        ] {
            assert_eq!(bad.parse::<MessageId>(), Err(ParseIdError), "{bad:?}");
        }
    }

    #[test]
    fn ids_sort_by_time_then_counter_and_are_unique() {
        let g = IdGenerator::with_seed(u64::MAX, u32::MAX - 1);
        let a = g.generate(Timestamp(5));
        let b = g.generate(Timestamp(6));
        let c = g.generate(Timestamp(6)); // counter wrapped: still distinct
        assert!(a < b && a.to_bytes() < b.to_bytes());
        assert!(a.to_string() < b.to_string());
        assert_ne!(b, c);
        let many: std::collections::HashSet<_> =
            (0..10_000).map(|_| g.generate(Timestamp(7))).collect();
        assert_eq!(many.len(), 10_000);
    }

    #[test]
    fn generators_get_different_salts() {
        let a = IdGenerator::new().generate(Timestamp(1));
        let b = IdGenerator::new().generate(Timestamp(1));
        assert_ne!(a, b);
    }
}
