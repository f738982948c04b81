//! Address allocation inside a subnet: the lowest free address of the allocation pools.
//!
//! Pure functions; the store runs them inside a flaredb transaction that also writes one
//! record per allocated address, so two controllers allocating at once conflict and one
//! retries — an address is never handed out twice. Released addresses are free again and,
//! being lowest-first, reused before fresh ones.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;

/// An inclusive range of addresses to allocate from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pool {
    /// First address.
    pub start: Ipv4Addr,
    /// Last address.
    pub end: Ipv4Addr,
}

impl Pool {
    /// How many addresses it holds.
    pub fn size(&self) -> u64 {
        u64::from(u32::from(self.end)) - u64::from(u32::from(self.start)) + 1
    }

    /// Whether `ip` is in it.
    pub fn contains(&self, ip: Ipv4Addr) -> bool {
        self.start <= ip && ip <= self.end
    }
}

/// The default pools of a subnet: every host address but the gateway.
pub fn default_pools(cidr: &Cidr, gateway: Option<Ipv4Addr>) -> Vec<Pool> {
    let (lo, hi) = cidr.hosts();
    match gateway {
        Some(g) if g == lo && lo < hi => vec![Pool { start: Ipv4Addr::from(u32::from(lo) + 1), end: hi }],
        Some(g) if g == hi && lo < hi => vec![Pool { start: lo, end: Ipv4Addr::from(u32::from(hi) - 1) }],
        Some(g) if lo < g && g < hi => vec![
            Pool { start: lo, end: Ipv4Addr::from(u32::from(g) - 1) },
            Pool { start: Ipv4Addr::from(u32::from(g) + 1), end: hi },
        ],
        _ => vec![Pool { start: lo, end: hi }],
    }
}

/// Checks pools: inside the subnet's host range, ordered, not overlapping, not holding the
/// gateway.
pub fn validate_pools(cidr: &Cidr, gateway: Option<Ipv4Addr>, pools: &[Pool]) -> Result<(), String> {
    let (lo, hi) = cidr.hosts();
    for (i, p) in pools.iter().enumerate() {
        if p.start > p.end {
            return Err(format!("pool {}-{}: start after end", p.start, p.end));
        }
        if p.start < lo || p.end > hi {
            return Err(format!("pool {}-{} is outside {cidr}'s hosts {lo}-{hi}", p.start, p.end));
        }
        if gateway.is_some_and(|g| p.contains(g)) {
            return Err(format!("pool {}-{} holds the gateway", p.start, p.end));
        }
        if pools[..i].iter().any(|q| q.start <= p.end && p.start <= q.end) {
            return Err(format!("pool {}-{} overlaps another pool", p.start, p.end));
        }
    }
    Ok(())
}

/// The lowest address of `pools` not in `used`.
pub fn next_free(pools: &[Pool], used: &BTreeSet<Ipv4Addr>) -> Option<Ipv4Addr> {
    let mut ordered = pools.to_vec();
    ordered.sort_by_key(|p| p.start);
    for p in ordered {
        let mut candidate = u32::from(p.start);
        for u in used.range(p.start..=p.end) {
            if u32::from(*u) != candidate {
                break;
            }
            if candidate == u32::from(p.end) {
                candidate = u32::MAX; // pool exhausted
                break;
            }
            candidate += 1;
        }
        if candidate != u32::MAX && candidate <= u32::from(p.end) && !used.contains(&Ipv4Addr::from(candidate)) {
            return Some(Ipv4Addr::from(candidate));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn default_pools_leave_out_the_gateway() {
        let c: Cidr = "10.0.0.0/29".parse().unwrap();
        assert_eq!(default_pools(&c, Some(ip("10.0.0.1"))), vec![Pool { start: ip("10.0.0.2"), end: ip("10.0.0.6") }]);
        assert_eq!(default_pools(&c, Some(ip("10.0.0.3"))).len(), 2);
        assert_eq!(default_pools(&c, None), vec![Pool { start: ip("10.0.0.1"), end: ip("10.0.0.6") }]);
        let bad = [Pool { start: ip("10.0.0.1"), end: ip("10.0.0.3") }];
        assert!(validate_pools(&c, Some(ip("10.0.0.1")), &bad).unwrap_err().contains("gateway"));
        let outside = [Pool { start: ip("10.0.0.2"), end: ip("10.0.0.9") }];
        assert!(validate_pools(&c, None, &outside).unwrap_err().contains("outside"));
        let overlap =
            [Pool { start: ip("10.0.0.2"), end: ip("10.0.0.4") }, Pool { start: ip("10.0.0.4"), end: ip("10.0.0.5") }];
        assert!(validate_pools(&c, None, &overlap).unwrap_err().contains("overlaps"));
    }

    #[test]
    fn lowest_free_first_and_exhaustion() {
        let pools = [Pool { start: ip("10.0.0.10"), end: ip("10.0.0.12") }];
        let mut used = BTreeSet::new();
        for want in ["10.0.0.10", "10.0.0.11", "10.0.0.12"] {
            let got = next_free(&pools, &used).unwrap();
            assert_eq!(got, ip(want));
            used.insert(got);
        }
        assert_eq!(next_free(&pools, &used), None, "exhausted");
        used.remove(&ip("10.0.0.11"));
        assert_eq!(next_free(&pools, &used), Some(ip("10.0.0.11")), "a released address is reused");
    }

    proptest! {
        /// Any sequence of allocations and releases: no address twice, always inside the pools,
        /// allocation fails only when every pool address is taken.
        #[test]
        fn allocations_are_unique_bounded_and_reuse_releases(
            gaps in proptest::collection::vec((0u32..40, 1u32..20), 1..4),
            ops in proptest::collection::vec(any::<(bool, u8)>(), 1..200),
        ) {
            let mut pools = Vec::new();
            let mut at = u32::from(ip("10.0.0.1"));
            for (gap, len) in gaps {
                let start = at + gap;
                pools.push(Pool { start: Ipv4Addr::from(start), end: Ipv4Addr::from(start + len - 1) });
                at = start + len + 1;
            }
            let capacity: u64 = pools.iter().map(Pool::size).sum();
            let mut used = BTreeSet::new();
            for (alloc, pick) in ops {
                if alloc || used.is_empty() {
                    match next_free(&pools, &used) {
                        Some(a) => {
                            prop_assert!(pools.iter().any(|p| p.contains(a)), "{a} outside the pools");
                            prop_assert!(used.insert(a), "{a} handed out twice");
                        }
                        None => prop_assert_eq!(used.len() as u64, capacity, "refused while space remained"),
                    }
                } else {
                    let victim = *used.iter().nth(usize::from(pick) % used.len()).unwrap();
                    used.remove(&victim);
                    let next = next_free(&pools, &used).unwrap();
                    prop_assert!(next <= victim, "the lowest free address comes first");
                }
            }
        }
    }
}
