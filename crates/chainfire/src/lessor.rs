//! Lease expiry. Like etcd, the leader keeps each lease's deadline in memory; keep-alives renew
//! it there, and when it passes, the leader proposes a LeaseRevoke through Raft, which deletes
//! the lease's keys on every member. A new leader gives every lease a full TTL again, so a
//! leader change never expires leases early.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The deadlines of the leases this member knows about.
#[derive(Debug, Default)]
pub struct Lessor {
    inner: Mutex<HashMap<i64, Lease>>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    ttl: i64,
    deadline: Instant,
    revoking: bool,
}

impl Lessor {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i64, Lease>> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A lease was granted (applied).
    pub fn granted(&self, id: i64, ttl: i64) {
        self.lock().insert(id, Lease { ttl, deadline: Instant::now() + secs(ttl), revoking: false });
    }

    /// A lease was revoked (applied).
    pub fn revoked(&self, id: i64) {
        self.lock().remove(&id);
    }

    /// Replaces the known leases (after a snapshot, or on start), all with full TTLs.
    pub fn reset(&self, leases: impl IntoIterator<Item = (i64, i64)>) {
        let now = Instant::now();
        let mut map = self.lock();
        map.clear();
        for (id, ttl) in leases {
            map.insert(id, Lease { ttl, deadline: now + secs(ttl), revoking: false });
        }
    }

    /// Gives every lease a full TTL from now (on becoming leader).
    pub fn refresh_all(&self) {
        let now = Instant::now();
        for lease in self.lock().values_mut() {
            lease.deadline = now + secs(lease.ttl);
            lease.revoking = false;
        }
    }

    /// Renews a lease; returns its TTL, or `None` when unknown.
    pub fn keep_alive(&self, id: i64) -> Option<i64> {
        let mut map = self.lock();
        let lease = map.get_mut(&id)?;
        lease.deadline = Instant::now() + secs(lease.ttl);
        Some(lease.ttl)
    }

    /// Remaining whole seconds of a lease, or `None` when unknown.
    pub fn remaining(&self, id: i64) -> Option<i64> {
        let map = self.lock();
        let lease = map.get(&id)?;
        Some(lease.deadline.saturating_duration_since(Instant::now()).as_secs_f64().ceil() as i64)
    }

    /// Leases past their deadline that are not being revoked yet; marks them as being revoked.
    pub fn take_expired(&self) -> Vec<i64> {
        let now = Instant::now();
        let mut out = Vec::new();
        for (id, lease) in self.lock().iter_mut() {
            if !lease.revoking && lease.deadline <= now {
                lease.revoking = true;
                out.push(*id);
            }
        }
        out
    }

    /// A revoke proposal failed; try again on the next tick.
    pub fn revoke_failed(&self, id: i64) {
        if let Some(lease) = self.lock().get_mut(&id) {
            lease.revoking = false;
        }
    }
}

fn secs(ttl: i64) -> Duration {
    Duration::from_secs(ttl.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiry_and_keepalive() {
        let l = Lessor::default();
        l.granted(1, 0);
        l.granted(2, 100);
        assert_eq!(l.take_expired(), vec![1]);
        assert!(l.take_expired().is_empty(), "a lease is handed out for revocation once");
        l.revoke_failed(1);
        assert_eq!(l.take_expired(), vec![1]);
        assert_eq!(l.keep_alive(2), Some(100));
        assert!(l.remaining(2).unwrap() >= 99);
        l.revoked(2);
        assert_eq!(l.keep_alive(2), None);
    }
}
