//! Where a block lives: weighted rendezvous hashing (highest random weight) over the storage
//! nodes, spread over zones.
//!
//! Every (block, node) pair gets a pseudo-random score scaled by the node's weight; a block's
//! copies go to the highest-scoring nodes, taking each zone once before any zone twice. The
//! properties that matter, checked by the property tests below:
//! - a node gets blocks in proportion to its weight;
//! - adding a node moves only blocks *to* it (about `copies / n` of them), removing one moves
//!   only the blocks it held — nothing moves between the nodes that stay (with one zone; with
//!   several, the zone rule may also reorder a block's copies inside its set);
//! - everyone who knows the member list computes the same placement, with no table to store.
//!
//! Decision: rendezvous hashing rather than Garage's partition table or Ceph's CRUSH map —
//! storage nodes number in the tens here, so scoring each node per block costs nanoseconds,
//! and there is no assignment to compute, store or agree on; only the member list.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::api::BlockId;

/// A storage node as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Its stable name (the node's name; never reused for another disk).
    pub id: String,
    /// Its failure domain (a rack, a room); copies of a block go to distinct zones first.
    #[serde(default)]
    pub zone: String,
    /// Its relative capacity (≥ 1).
    pub weight: u32,
}

/// Why a member list is not a layout.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// Two members share a name.
    #[error("storage node {0:?} is listed twice")]
    Duplicate(String),
    /// A member's weight is 0.
    #[error("storage node {0:?} has weight 0 (give it at least 1, or remove it)")]
    ZeroWeight(String),
}

/// The storage nodes a block may be placed on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    members: Vec<(Member, u64)>,
}

impl Layout {
    /// A layout of `members` (checked: unique names, weights ≥ 1).
    pub fn new(members: Vec<Member>) -> Result<Self, LayoutError> {
        let mut seen = HashSet::new();
        for m in &members {
            if !seen.insert(m.id.as_str()) {
                return Err(LayoutError::Duplicate(m.id.clone()));
            }
            if m.weight == 0 {
                return Err(LayoutError::ZeroWeight(m.id.clone()));
            }
        }
        Ok(Self { members: members.into_iter().map(|m| (fnv1a(m.id.as_bytes()), m)).map(|(h, m)| (m, h)).collect() })
    }

    /// Its members.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.iter().map(|(m, _)| m)
    }

    /// How many members it has.
    pub fn len(&self) -> usize {
        self.members.len()
    }

    /// Whether it has none.
    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// The members that hold `block`'s `copies` copies (fewer when there are fewer members),
    /// best first: reads try them in this order.
    pub fn place(&self, block: &BlockId, copies: usize) -> Vec<&Member> {
        let key = block.prefix_u64();
        let mut ranked: Vec<(f64, &Member)> = self.members.iter().map(|(m, h)| (score(key, *h, m.weight), m)).collect();
        ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then_with(|| a.1.id.cmp(&b.1.id)));
        let mut chosen: Vec<&Member> = Vec::with_capacity(copies);
        let mut zones: HashSet<&str> = HashSet::new();
        // First each zone's best member, in score order; then the rest, in score order.
        for (_, m) in &ranked {
            if chosen.len() == copies {
                break;
            }
            if zones.insert(m.zone.as_str()) {
                chosen.push(m);
            }
        }
        for (_, m) in &ranked {
            if chosen.len() == copies {
                break;
            }
            if !chosen.iter().any(|c| c.id == m.id) {
                chosen.push(m);
            }
        }
        chosen
    }
}

/// Weighted rendezvous score: `-weight / ln(u)` with `u` uniform in (0, 1) from the pair's
/// hash; the highest wins, and a node of twice the weight wins twice as often.
fn score(block: u64, member: u64, weight: u32) -> f64 {
    let h = splitmix64(block ^ member);
    // 53 random bits, shifted off 0 and 1 so the logarithm is finite and negative.
    let u = ((h >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    -f64::from(weight) / u.ln()
}

fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn member(id: &str, zone: &str, weight: u32) -> Member {
        Member { id: id.into(), zone: zone.into(), weight }
    }

    fn blocks(n: u32, seed: u32) -> Vec<BlockId> {
        (0..n).map(|i| BlockId::of(format!("{seed}/{i}").as_bytes())).collect()
    }

    fn ids(placed: &[&Member]) -> Vec<String> {
        placed.iter().map(|m| m.id.clone()).collect()
    }

    #[test]
    fn bad_member_lists_are_refused_by_name() {
        let dup = Layout::new(vec![member("a", "", 1), member("a", "", 2)]).unwrap_err();
        assert_eq!(dup.to_string(), "storage node \"a\" is listed twice");
        let zero = Layout::new(vec![member("a", "", 0)]).unwrap_err();
        assert!(zero.to_string().contains("weight 0"), "{zero}");
    }

    #[test]
    fn fewer_members_than_copies_gives_every_member() {
        let l = Layout::new(vec![member("a", "", 1), member("b", "", 1)]).unwrap();
        let mut got = ids(&l.place(&BlockId::of(b"x"), 3));
        got.sort();
        assert_eq!(got, ["a", "b"]);
        assert!(Layout::new(vec![]).unwrap().place(&BlockId::of(b"x"), 3).is_empty());
    }

    #[test]
    fn copies_go_to_distinct_zones_first() {
        let l = Layout::new(vec![
            member("a1", "a", 10),
            member("a2", "a", 10),
            member("a3", "a", 10),
            member("b1", "b", 1),
            member("c1", "c", 1),
        ])
        .unwrap();
        for b in blocks(500, 7) {
            let zones: HashSet<String> = l.place(&b, 3).iter().map(|m| m.zone.clone()).collect();
            assert_eq!(zones.len(), 3, "{b}");
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]

        /// Each node's share of first copies is within 10 % (relative) of its weight's share.
        #[test]
        fn shares_follow_weights(weights in proptest::collection::vec(1u32..=8, 2..7), seed in any::<u32>()) {
            let members: Vec<Member> =
                weights.iter().enumerate().map(|(i, w)| member(&format!("n{i}"), "", *w)).collect();
            let l = Layout::new(members).unwrap();
            let n = 30_000u32;
            let mut counts = vec![0u32; weights.len()];
            for b in blocks(n, seed) {
                let first = &l.place(&b, 1)[0].id;
                counts[first[1..].parse::<usize>().unwrap()] += 1;
            }
            let total: u32 = weights.iter().sum();
            for (i, w) in weights.iter().enumerate() {
                let want = f64::from(n) * f64::from(*w) / f64::from(total);
                let got = f64::from(counts[i]);
                prop_assert!((got - want).abs() <= 0.1 * want + 60.0, "node {i} weight {w}: {got} blocks, want ~{want:.0}");
            }
        }

        /// Adding a node moves copies only to it, about copies/(n+1) of them (removing it is the
        /// same change read backwards: only the copies it held move).
        #[test]
        fn a_new_node_only_takes(n in 2usize..8, copies in 1usize..4, seed in any::<u32>()) {
            let before: Vec<Member> = (0..n).map(|i| member(&format!("n{i}"), "", 1)).collect();
            let mut after = before.clone();
            after.push(member("new", "", 1));
            let (lb, la) = (Layout::new(before).unwrap(), Layout::new(after).unwrap());
            let all = blocks(4_000, seed);
            let mut moved = 0usize;
            for b in &all {
                let old: HashSet<String> = ids(&lb.place(b, copies)).into_iter().collect();
                let new: HashSet<String> = ids(&la.place(b, copies)).into_iter().collect();
                for gained in new.difference(&old) {
                    prop_assert_eq!(gained.as_str(), "new", "block {} moved between old nodes", b);
                    moved += 1;
                }
            }
            let expected = all.len() as f64 * copies.min(n + 1) as f64 / (n + 1) as f64;
            prop_assert!((moved as f64 - expected).abs() <= 0.15 * expected + 30.0,
                "{moved} copies moved, expected ~{expected:.0}");
        }
    }
}
