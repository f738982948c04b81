//! Failed-login throttling, per (user, source address) and per source address.
//!
//! Each key (a user name, a source IP) may fail `free_failures` times; after that every further
//! failure locks the key for a doubling delay (1 s, 2 s, 4 s … up to `max_lock`). A success
//! clears the user's record (not the source's: one right password must not unlock a source
//! that is guessing many users). Records of quiet keys expire after `window`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Throttling policy.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// Failures allowed before locking starts.
    pub free_failures: u32,
    /// Longest lock.
    pub max_lock: Duration,
    /// A key with no failure for this long starts afresh.
    pub window: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self { free_failures: 5, max_lock: Duration::from_secs(300), window: Duration::from_secs(900) }
    }
}

#[derive(Debug, Clone, Copy)]
struct Record {
    failures: u32,
    last: Instant,
    locked_until: Option<Instant>,
}

/// The throttle of one iam replica.
#[derive(Debug, Default)]
pub struct Throttle {
    policy: Policy,
    records: Mutex<HashMap<String, Record>>,
}

impl Throttle {
    /// A throttle with `policy`.
    pub fn new(policy: Policy) -> Self {
        Self { policy, records: Mutex::new(HashMap::new()) }
    }

    fn records(&self) -> std::sync::MutexGuard<'_, HashMap<String, Record>> {
        self.records.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// How long `key` must still wait before it may try again, if it is locked at `now`.
    pub fn locked(&self, key: &str, now: Instant) -> Option<Duration> {
        let r = self.records().get(key).copied()?;
        r.locked_until.filter(|u| *u > now).map(|u| u - now)
    }

    /// Records a failure of `key` at `now`.
    pub fn failed(&self, key: &str, now: Instant) {
        let mut records = self.records();
        if records.len() > 100_000 {
            let window = self.policy.window;
            records.retain(|_, r| now.duration_since(r.last) < window);
        }
        let r = records.entry(key.to_owned()).or_insert(Record { failures: 0, last: now, locked_until: None });
        if now.duration_since(r.last) >= self.policy.window {
            *r = Record { failures: 0, last: now, locked_until: None };
        }
        r.failures += 1;
        r.last = now;
        if r.failures > self.policy.free_failures {
            let exp = (r.failures - self.policy.free_failures - 1).min(20);
            let lock = Duration::from_secs(1u64 << exp).min(self.policy.max_lock);
            r.locked_until = Some(now + lock);
        }
    }

    /// Clears `key` after a success.
    pub fn succeeded(&self, key: &str) {
        self.records().remove(key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_grow_after_the_free_failures_and_a_success_clears() {
        let t = Throttle::new(Policy {
            free_failures: 3,
            max_lock: Duration::from_secs(4),
            window: Duration::from_secs(60),
        });
        let now = Instant::now();
        for _ in 0..3 {
            t.failed("alice", now);
        }
        assert_eq!(t.locked("alice", now), None, "three free failures");
        t.failed("alice", now);
        assert_eq!(t.locked("alice", now), Some(Duration::from_secs(1)));
        t.failed("alice", now);
        assert_eq!(t.locked("alice", now), Some(Duration::from_secs(2)));
        for _ in 0..5 {
            t.failed("alice", now);
        }
        assert_eq!(t.locked("alice", now), Some(Duration::from_secs(4)), "capped");
        assert_eq!(t.locked("alice", now + Duration::from_secs(5)), None, "the lock ends");
        assert_eq!(t.locked("bob", now), None, "keys are independent");
        t.succeeded("alice");
        assert_eq!(t.locked("alice", now), None);
        // A quiet key starts afresh after the window.
        for _ in 0..4 {
            t.failed("carol", now);
        }
        t.failed("carol", now + Duration::from_secs(61));
        assert_eq!(t.locked("carol", now + Duration::from_secs(61)), None);
    }
}
