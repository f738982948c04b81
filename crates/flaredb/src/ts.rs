//! Hybrid timestamps: milliseconds since the Unix epoch in the high bits and an 18-bit logical
//! counter in the low bits (TiDB's layout), so timestamps order like time and a single oracle can
//! hand out 262,144 of them per millisecond.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of the logical part.
pub const LOGICAL_BITS: u32 = 18;

/// A transaction timestamp.
pub type Ts = u64;

/// The physical part (milliseconds) of a timestamp.
pub fn physical_ms(ts: Ts) -> u64 {
    ts >> LOGICAL_BITS
}

/// A timestamp from a physical time in milliseconds and a logical counter.
pub fn compose(physical_ms: u64, logical: u64) -> Ts {
    (physical_ms << LOGICAL_BITS) | (logical & ((1 << LOGICAL_BITS) - 1))
}

/// How long after a one-phase write's first attempt a retry with its token is still recognised.
pub const DEDUP_WINDOW_MS: u64 = 60_000;

/// Milliseconds since the Unix epoch by the wall clock.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or_default()
}

/// A strictly increasing timestamp source for one process.
///
/// The cluster's oracle lives in the placement component; this one serves a single node and
/// tests. It never goes backwards, even if the wall clock does.
#[derive(Debug, Default)]
pub struct Oracle {
    last: Mutex<Ts>,
}

impl Oracle {
    /// An oracle that will hand out timestamps above `floor` (e.g. the last one persisted).
    pub fn starting_after(floor: Ts) -> Self {
        Self { last: Mutex::new(floor) }
    }

    /// The next timestamp.
    pub fn next(&self) -> Ts {
        let now = now_ms();
        let mut last = self.last.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *last = std::cmp::max(compose(now, 0), *last + 1);
        *last
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strictly_increasing_and_decomposable() {
        let o = Oracle::default();
        let a = o.next();
        let b = o.next();
        assert!(b > a);
        assert_eq!(physical_ms(compose(1234, 5)), 1234);
        let far = Oracle::starting_after(compose(u64::MAX >> LOGICAL_BITS >> 1, 7));
        assert!(far.next() > compose(u64::MAX >> LOGICAL_BITS >> 1, 7));
    }
}
