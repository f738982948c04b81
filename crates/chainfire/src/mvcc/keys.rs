//! etcd's key-range convention: `range_end` empty means one key, `"\0"` means every key from
//! `key` on, anything else is the half-open interval `[key, range_end)`.

use std::ops::Bound;

/// A set of keys addressed by a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRange {
    /// Exactly one key.
    Single(Vec<u8>),
    /// `[start, end)`, with no end when `end` is `None`.
    Span {
        /// First key (inclusive).
        start: Vec<u8>,
        /// Last key (exclusive), or unbounded.
        end: Option<Vec<u8>>,
    },
}

impl KeyRange {
    /// Interprets etcd's `key`/`range_end` pair.
    pub fn new(key: &[u8], range_end: &[u8]) -> Self {
        match range_end {
            [] => Self::Single(key.to_vec()),
            [0] => Self::Span { start: key.to_vec(), end: None },
            end => Self::Span { start: key.to_vec(), end: Some(end.to_vec()) },
        }
    }

    /// Whether `key` is in the range.
    pub fn contains(&self, key: &[u8]) -> bool {
        match self {
            Self::Single(k) => k == key,
            Self::Span { start, end } => key >= start.as_slice() && end.as_ref().is_none_or(|e| key < e.as_slice()),
        }
    }

    /// Whether the range can hold no key at all (e.g. `end <= start`).
    pub fn is_empty(&self) -> bool {
        matches!(self, Self::Span { start, end: Some(end) } if end <= start)
    }

    /// Bounds for a table keyed by the key itself.
    pub fn bounds(&self) -> (Bound<&[u8]>, Bound<&[u8]>) {
        match self {
            Self::Single(k) => (Bound::Included(k.as_slice()), Bound::Included(k.as_slice())),
            Self::Span { start, end } => (
                Bound::Included(start.as_slice()),
                end.as_ref().map_or(Bound::Unbounded, |e| Bound::Excluded(e.as_slice())),
            ),
        }
    }

    /// Whether two ranges share a key (used to reject duplicate writes in a txn).
    pub fn overlaps(&self, other: &KeyRange) -> bool {
        match (self, other) {
            (Self::Single(a), b) | (b, Self::Single(a)) => b.contains(a),
            (Self::Span { start: s1, end: e1 }, Self::Span { start: s2, end: e2 }) => {
                let a_before_b = e1.as_ref().is_some_and(|e| e <= s2);
                let b_before_a = e2.as_ref().is_some_and(|e| e <= s1);
                !(a_before_b || b_before_a)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn etcd_conventions() {
        assert_eq!(KeyRange::new(b"a", b""), KeyRange::Single(b"a".to_vec()));
        assert!(KeyRange::new(b"a", b"\0").contains(b"zzz"));
        assert!(!KeyRange::new(b"b", b"\0").contains(b"a"));
        let r = KeyRange::new(b"a", b"c");
        assert!(r.contains(b"a") && r.contains(b"bz") && !r.contains(b"c"));
        assert!(KeyRange::new(b"c", b"a").is_empty());
    }

    proptest! {
        #[test]
        fn overlap_agrees_with_membership(a in proptest::collection::vec(0u8..4, 0..3),
                                          b in proptest::collection::vec(0u8..4, 0..3),
                                          c in proptest::collection::vec(0u8..4, 1..3),
                                          d in proptest::collection::vec(0u8..4, 1..3)) {
            let r1 = KeyRange::new(&c, &a);
            let r2 = KeyRange::new(&d, &b);
            // Enumerate every short key and compare with the definition of overlap.
            let mut keys = vec![];
            for x in 0u8..4 { keys.push(vec![x]); for y in 0u8..4 { keys.push(vec![x, y]); for z in 0u8..4 { keys.push(vec![x, y, z]); } } }
            let brute = keys.iter().any(|k| r1.contains(k) && r2.contains(k));
            if brute { prop_assert!(r1.overlaps(&r2)); }
        }
    }
}
