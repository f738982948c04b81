//! Exponential restart backoff: quick retries for a blip, slow ones for a crash loop.

use std::time::Duration;

/// Backoff parameters for restarting a service.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay before the first restart.
    pub initial: Duration,
    /// Upper bound of the delay.
    pub max: Duration,
    /// A run this long counts as healthy and resets the delay to `initial`.
    pub reset_after: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { initial: Duration::from_millis(500), max: Duration::from_secs(30), reset_after: Duration::from_secs(10) }
    }
}

impl Backoff {
    /// The delay before restart number `consecutive` (1-based count of failures in a row).
    pub fn delay(&self, consecutive: u32) -> Duration {
        let factor = 1u32.checked_shl(consecutive.saturating_sub(1)).unwrap_or(u32::MAX);
        self.initial.checked_mul(factor).unwrap_or(self.max).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_then_caps() {
        let b = Backoff::default();
        let delays: Vec<u64> = (1..=9).map(|n| b.delay(n).as_millis() as u64).collect();
        assert_eq!(delays, [500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]);
        assert_eq!(b.delay(1000), b.max);
    }
}
