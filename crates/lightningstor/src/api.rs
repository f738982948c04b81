//! lightningstor's wire types: what a storage node takes and answers.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A block's name: the BLAKE3 hash of its bytes (64 lowercase hex digits on the wire), so a
/// block can be checked against its name wherever it is read.
///
/// BLAKE3 rather than SHA-256: every block is hashed when it is cut, when each node stores it
/// and on every read, and on these machines BLAKE3 (AVX-512) is about three times as fast as
/// SHA-256 even with the SHA extensions — the hash was a fifth of all CPU in a 1 MiB GET
/// benchmark. Both are collision-resistant; the name only has to be.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BlockId([u8; 32]);

impl BlockId {
    /// The name of `data`.
    pub fn of(data: &[u8]) -> Self {
        Self(*blake3::hash(data).as_bytes())
    }

    /// Its 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Its first eight bytes as a number (uniformly distributed: placement hashes it further).
    pub fn prefix_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[..8]);
        u64::from_be_bytes(b)
    }
}

impl From<[u8; 32]> for BlockId {
    fn from(bytes: [u8; 32]) -> Self {
        Self(bytes)
    }
}

impl fmt::Display for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for BlockId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BlockId({self})")
    }
}

/// Why a string is not a block name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("block id {given:?}: {reason}")]
pub struct BadBlockId {
    given: String,
    reason: &'static str,
}

impl FromStr for BlockId {
    type Err = BadBlockId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = |reason| BadBlockId { given: s.chars().take(80).collect(), reason };
        if s.len() != 64 {
            return Err(bad("a block name is 64 hex digits"));
        }
        if s.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(bad("hex digits are lowercase"));
        }
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out).map_err(|_| bad("not hex"))?;
        Ok(Self(out))
    }
}

impl Serialize for BlockId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BlockId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// `PUT /v1/blocks/{id}`: what the node did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stored {
    /// The block.
    pub id: BlockId,
    /// False when the node already held it (a write of the same bytes changes nothing).
    pub created: bool,
}

/// `GET /v1/blocks?after=&limit=`: block names in order, for repair and rebalancing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlockPage {
    /// Names after `after`, ascending.
    pub items: Vec<BlockId>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<BlockId>,
}

/// `GET /v1/status`: what a node holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Blocks held.
    pub blocks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Free bytes on the data directory's filesystem (for the caller's placement weights).
    pub free_bytes: u64,
    /// Whether writes are fsync'd before they are acknowledged.
    pub fsync: bool,
    /// Blocks found corrupt (by reads or scrubs) and set aside since the node started.
    pub corrupt_found: u64,
    /// When the last scrub since the start finished (ms since the epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_scrub_ms: Option<u64>,
    /// Blocks it checked.
    #[serde(default)]
    pub last_scrub_checked: u64,
    /// Blocks it found rotten.
    #[serde(default)]
    pub last_scrub_corrupt: u64,
}

/// `POST /v1/scrub`: a pass over every block.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScrubReport {
    /// Blocks read and checked.
    pub checked: u64,
    /// Blocks whose bytes did not match their name, now set aside (the repair restores them
    /// from another copy).
    pub corrupt: Vec<BlockId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_bad_names_are_refused_by_reason() {
        // BLAKE3 of "hello", as the reference implementation (Python `blake3`) gives it.
        let id = BlockId::of(b"hello");
        assert_eq!(id.to_string(), "ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f");
        assert_eq!(id.to_string().parse::<BlockId>(), Ok(id));
        assert_eq!(serde_json::from_str::<BlockId>(&serde_json::to_string(&id).unwrap()).unwrap(), id);
        let short = "abc".parse::<BlockId>().unwrap_err().to_string();
        assert!(short.contains("64 hex digits"), "{short}");
        let upper = id.to_string().to_uppercase().parse::<BlockId>().unwrap_err().to_string();
        assert!(upper.contains("lowercase"), "{upper}");
        let nothex = "g".repeat(64).parse::<BlockId>().unwrap_err().to_string();
        assert!(nothex.contains("not hex"), "{nothex}");
    }
}
