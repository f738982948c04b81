//! In-memory latches on the keys of one-phase writes in flight on a region leader.
//!
//! A one-phase write takes its commit timestamp from the oracle before its log entry applies.
//! A snapshot read at a later timestamp that ran in between would miss the write and a repeat
//! of the read would see it. So the leader latches the key before the timestamp is taken and
//! unlatches after the apply; snapshot reads of a latched key wait.

use std::collections::HashMap;
use std::sync::Mutex;

use tokio::sync::Notify;

/// The latches of one region leader.
#[derive(Debug, Default)]
pub struct Latches {
    held: Mutex<HashMap<Vec<u8>, usize>>,
    released: Notify,
}

/// Holds a latch; releases it when dropped.
#[derive(Debug)]
pub struct Guard<'a> {
    latches: &'a Latches,
    key: Vec<u8>,
}

impl Latches {
    /// Latches `key` (several writers may hold the same key).
    pub fn hold(&self, key: &[u8]) -> Guard<'_> {
        *self.lock().entry(key.to_vec()).or_default() += 1;
        Guard { latches: self, key: key.to_vec() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Vec<u8>, usize>> {
        self.held.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Waits until no key in `[start, end)` is latched (`end` `None`: unbounded).
    pub async fn wait_clear(&self, start: &[u8], end: Option<&[u8]>) {
        loop {
            let released = self.released.notified();
            tokio::pin!(released);
            released.as_mut().enable();
            let busy = self.lock().keys().any(|k| k.as_slice() >= start && end.is_none_or(|e| k.as_slice() < e));
            if !busy {
                return;
            }
            released.await;
        }
    }
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let mut held = self.latches.lock();
        if let Some(n) = held.get_mut(&self.key) {
            *n -= 1;
            if *n == 0 {
                held.remove(&self.key);
            }
        }
        drop(held);
        self.latches.released.notify_waiters();
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn readers_wait_for_latched_keys_in_their_range_only() {
        let l = Arc::new(Latches::default());
        let g = l.hold(b"k");
        l.wait_clear(b"a", Some(b"j")).await; // not in range: returns at once
        let l2 = l.clone();
        let waiter = tokio::spawn(async move { l2.wait_clear(b"a", None).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "a reader of a latched key waits");
        drop(g);
        tokio::time::timeout(Duration::from_secs(2), waiter).await.unwrap().unwrap();
    }
}
