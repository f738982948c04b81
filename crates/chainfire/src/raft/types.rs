//! openraft type configuration for chainfire.
//!
//! Log entries carry an `InternalRequest` (the protobuf the etcd API already defines) and the
//! state machine answers an `InternalResponse`; both travel through serde as their protobuf bytes.

use std::io::Cursor;

use prost::Message;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::pb::peer::{InternalRequest, InternalResponse};

/// A cluster member as Raft knows it: its name and peer URLs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    /// Member name (`--name`); empty for a member added but not started yet.
    pub name: String,
    /// Peer URLs (`http://host:port`).
    pub peer_urls: Vec<String>,
    /// Added with `member add --learner`: stays a learner until promoted by hand. Members added
    /// without it are promoted automatically once they have caught up.
    #[serde(default)]
    pub learner: bool,
}

impl std::fmt::Display for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}", self.name, self.peer_urls.join(","))
    }
}

/// A replicated command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Proposal(pub InternalRequest);

/// The state machine's answer to a command.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Outcome(pub InternalResponse);

macro_rules! serde_as_protobuf {
    ($wrapper:ident, $inner:ty) => {
        impl Serialize for $wrapper {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_bytes(&self.0.encode_to_vec())
            }
        }

        impl<'de> Deserialize<'de> for $wrapper {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let bytes: serde_bytes_buf::Buf = Deserialize::deserialize(d)?;
                <$inner>::decode(bytes.0.as_slice()).map($wrapper).map_err(serde::de::Error::custom)
            }
        }
    };
}

serde_as_protobuf!(Proposal, InternalRequest);
serde_as_protobuf!(Outcome, InternalResponse);

mod serde_bytes_buf {
    //! Deserializes a byte string from formats that encode it as bytes or as a sequence.
    use serde::de::{Deserialize, Deserializer, SeqAccess, Visitor};

    pub struct Buf(pub Vec<u8>);

    impl<'de> Deserialize<'de> for Buf {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl<'de> Visitor<'de> for V {
                type Value = Buf;
                fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                    f.write_str("a byte string")
                }
                fn visit_bytes<E>(self, v: &[u8]) -> Result<Buf, E> {
                    Ok(Buf(v.to_vec()))
                }
                fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Buf, E> {
                    Ok(Buf(v))
                }
                fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Buf, A::Error> {
                    let mut out = Vec::new();
                    while let Some(b) = seq.next_element::<u8>()? {
                        out.push(b);
                    }
                    Ok(Buf(out))
                }
            }
            d.deserialize_byte_buf(V)
        }
    }
}

openraft::declare_raft_types!(
    /// chainfire's Raft types.
    pub TypeConfig:
        D = Proposal,
        R = Outcome,
        NodeId = u64,
        Node = Member,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// The Raft handle.
pub type Raft = openraft::Raft<TypeConfig>;
/// Storage errors as openraft wants them.
pub type StorageError = openraft::StorageError<u64>;
/// A log entry.
pub type Entry = openraft::Entry<TypeConfig>;
/// A log id.
pub type LogId = openraft::LogId<u64>;
/// Stored membership.
pub type StoredMembership = openraft::StoredMembership<u64, Member>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pb::etcdserverpb::PutRequest;
    use crate::pb::peer::internal_request::Request;

    #[test]
    fn proposals_round_trip_through_bincode() {
        let p = Proposal(InternalRequest {
            request: Some(Request::Put(PutRequest { key: b"k".to_vec(), value: vec![0, 1, 2], ..Default::default() })),
        });
        let bytes = bincode::serialize(&p).unwrap();
        let back: Proposal = bincode::deserialize(&bytes).unwrap();
        assert_eq!(back, p);
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<Proposal>(&json).unwrap(), p);
    }
}
