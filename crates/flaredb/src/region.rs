//! Regions: contiguous ranges of the key space, each replicated by its own Raft group.

use serde::{Deserialize, Serialize};

/// A region's ID; [`META_REGION`] is the placement component's own group.
pub type RegionId = u64;
/// A node's ID (derived from its name).
pub type NodeId = u64;

/// The group that holds the placement component's state (nodes, region map, oracle mark).
pub const META_REGION: RegionId = 0;
/// The region that covers the whole key space when a cluster is created.
pub const FIRST_REGION: RegionId = 1;

/// Where a region is and what it covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegionDescriptor {
    /// The region's ID.
    pub id: RegionId,
    /// First key of the range (inclusive).
    pub start: Vec<u8>,
    /// End of the range (exclusive); `None`: to the end of the key space.
    pub end: Option<Vec<u8>>,
    /// Bumped by every split: requests routed with an older version are refused.
    pub version: u64,
    /// Bumped by every membership change.
    pub conf_ver: u64,
    /// Nodes holding a voting replica.
    pub voters: Vec<NodeId>,
    /// Nodes holding a replica that is still catching up (not voting yet).
    #[serde(default)]
    pub learners: Vec<NodeId>,
}

impl RegionDescriptor {
    /// Whether `key` falls in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        key >= self.start.as_slice() && self.end.as_deref().is_none_or(|e| key < e)
    }

    /// Whether the range `[start, end)` (`end` `None`: unbounded) lies inside this region.
    pub fn covers(&self, start: &[u8], end: Option<&[u8]>) -> bool {
        let end_ok = match (&self.end, end) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(mine), Some(theirs)) => theirs <= mine.as_slice(),
        };
        start >= self.start.as_slice() && end_ok
    }

    /// Whether this region's range and `other`'s share a key.
    pub fn overlaps(&self, other: &RegionDescriptor) -> bool {
        let a_before_b = self.end.as_deref().is_some_and(|e| e <= other.start.as_slice());
        let b_before_a = other.end.as_deref().is_some_and(|e| e <= self.start.as_slice());
        !a_before_b && !b_before_a
    }

    /// Whether this descriptor is newer than `other` (of the same region).
    pub fn newer_than(&self, other: &RegionDescriptor) -> bool {
        (self.version, self.conf_ver) > (other.version, other.conf_ver)
    }
}

/// The parts of `[start, end)` not covered by any of `others`, in key order.
pub fn uncovered(start: &[u8], end: Option<&[u8]>, others: &[RegionDescriptor]) -> Vec<(Vec<u8>, Option<Vec<u8>>)> {
    let mut pieces = vec![(start.to_vec(), end.map(<[u8]>::to_vec))];
    for o in others {
        let mut next = Vec::new();
        for (s, e) in pieces {
            let piece = RegionDescriptor {
                id: 0,
                start: s.clone(),
                end: e.clone(),
                version: 0,
                conf_ver: 0,
                voters: vec![],
                learners: vec![],
            };
            if !piece.overlaps(o) {
                next.push((s, e));
                continue;
            }
            if o.start.as_slice() > s.as_slice() {
                next.push((s.clone(), Some(o.start.clone())));
            }
            if let Some(oe) = &o.end
                && e.as_ref().is_none_or(|e| oe < e)
            {
                next.push((oe.clone(), e));
            }
        }
        pieces = next;
    }
    pieces
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn region(start: &[u8], end: Option<&[u8]>) -> RegionDescriptor {
        RegionDescriptor {
            id: 1,
            start: start.to_vec(),
            end: end.map(<[u8]>::to_vec),
            version: 1,
            conf_ver: 1,
            voters: vec![],
            learners: vec![],
        }
    }

    #[test]
    fn contains_and_overlaps_respect_open_ends() {
        let r = region(b"b", Some(b"d"));
        assert!(r.contains(b"b") && r.contains(b"cz") && !r.contains(b"d") && !r.contains(b"a"));
        let all = region(b"", None);
        assert!(all.contains(b"") && all.contains(&[0xff; 9]));
        assert!(r.overlaps(&all) && all.overlaps(&r));
        assert!(!r.overlaps(&region(b"d", None)) && !r.overlaps(&region(b"", Some(b"b"))));
        assert!(all.covers(b"x", None) && !r.covers(b"b", None) && r.covers(b"b", Some(b"c")));
    }

    proptest! {
        /// A key is in `uncovered(range, others)` exactly when it is in the range and in none of
        /// the others.
        #[test]
        fn uncovered_is_range_minus_others(
            bounds in proptest::collection::vec((proptest::collection::vec(0u8..4, 0..3), proptest::option::of(proptest::collection::vec(0u8..4, 0..3))), 0..4),
            probe in proptest::collection::vec(proptest::collection::vec(0u8..4, 0..4), 1..30),
        ) {
            let others: Vec<RegionDescriptor> = bounds.iter().map(|(s, e)| region(s, e.as_deref())).collect();
            let whole = region(&[1], Some(&[3]));
            let pieces = uncovered(&whole.start, whole.end.as_deref(), &others);
            for key in probe {
                let expected = whole.contains(&key) && !others.iter().any(|o| o.contains(&key));
                let got = pieces.iter().any(|(s, e)| region(s, e.as_deref()).contains(&key));
                prop_assert_eq!(got, expected, "key {:?} pieces {:?}", key, pieces);
            }
        }
    }
}
