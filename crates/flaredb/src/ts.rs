//! Hybrid timestamps: milliseconds since the Unix epoch in the high bits and an 18-bit logical
//! counter in the low bits (TiDB's layout), so timestamps order like time and a single oracle can
//! hand out 262,144 of them per millisecond.

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
pub use ultracloud_runtime::clock::now_ms;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_order_like_time_and_decompose() {
        assert_eq!(physical_ms(compose(1234, 5)), 1234);
        assert!(compose(1234, 5) < compose(1234, 6) && compose(1234, (1 << LOGICAL_BITS) - 1) < compose(1235, 0));
        assert_eq!(compose(1, 1 << LOGICAL_BITS), compose(1, 0), "the logical part never spills into the physical");
    }
}
