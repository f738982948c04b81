//! The wall clock as the platform records it (timestamps in records, token lifetimes, the
//! timestamp oracle's physical part): one definition, so no two services round differently.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)).unwrap_or(0)
}

/// Seconds since the Unix epoch (0 if the clock is before it).
pub fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn seconds_and_milliseconds_agree() {
        let (s, ms) = (super::now_secs(), super::now_ms());
        assert!(ms / 1000 >= s && ms / 1000 - s <= 1, "{s} s vs {ms} ms");
        assert!(s > 1_700_000_000, "after 2023");
    }
}
