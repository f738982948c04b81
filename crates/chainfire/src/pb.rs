//! Generated protobuf types and gRPC stubs: the etcd v3 API (`etcdserverpb`, `mvccpb`, `authpb`)
//! and chainfire's internal peer protocol (`peer`). See `proto/` for the sources.

#![allow(missing_docs, clippy::all, clippy::pedantic, clippy::unwrap_used)]

/// etcd's key-value and event messages.
pub mod mvccpb {
    tonic::include_proto!("mvccpb");
}

/// etcd's auth messages (only referenced by the Auth service).
pub mod authpb {
    tonic::include_proto!("authpb");
}

/// The etcd v3 gRPC API.
pub mod etcdserverpb {
    tonic::include_proto!("etcdserverpb");
}

/// chainfire's own packages (nested as the protobuf package `chainfire.peer` requires).
pub mod chainfire {
    /// chainfire's peer protocol: Raft transport and forwarding to the leader.
    pub mod peer {
        tonic::include_proto!("chainfire.peer");
    }
}

pub use chainfire::peer;
