//! etcd's errors, with the exact gRPC codes and messages etcd answers, so that etcd clients
//! (which match on these strings) behave as they do against etcd.

/// An error answered to an etcd client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EtcdError {
    /// A request without a key.
    #[error("etcdserver: key is not provided")]
    EmptyKey,
    /// `ignore_value`/`ignore_lease` on a key that does not exist.
    #[error("etcdserver: key not found")]
    KeyNotFound,
    /// `ignore_value` together with a value.
    #[error("etcdserver: value is provided")]
    ValueProvided,
    /// `ignore_lease` together with a lease.
    #[error("etcdserver: lease is provided")]
    LeaseProvided,
    /// More operations in one txn than allowed.
    #[error("etcdserver: too many operations in txn request")]
    TooManyOps,
    /// Two writes of one key in one txn branch.
    #[error("etcdserver: duplicate key given in txn request")]
    DuplicateKey,
    /// A read or watch below the compacted revision.
    #[error("etcdserver: mvcc: required revision has been compacted")]
    Compacted,
    /// A read above the current revision.
    #[error("etcdserver: mvcc: required revision is a future revision")]
    FutureRev,
    /// The lease does not exist.
    #[error("etcdserver: requested lease not found")]
    LeaseNotFound,
    /// A lease with that ID exists.
    #[error("etcdserver: lease already exists")]
    LeaseExists,
    /// TTL beyond the maximum.
    #[error("etcdserver: too large lease TTL")]
    LeaseTtlTooLarge,
    /// The request exceeds the size limit.
    #[error("etcdserver: request is too large")]
    RequestTooLarge,
    /// A range answer (without a limit) larger than the server sends in one response.
    #[error("etcdserver: range response is too large; ask with a limit")]
    ResponseTooLarge,
    /// No leader is known right now.
    #[error("etcdserver: no leader")]
    NoLeader,
    /// The request did not complete in time.
    #[error("etcdserver: request timed out")]
    Timeout,
    /// No such member.
    #[error("etcdserver: member not found")]
    MemberNotFound,
    /// Peer URLs of an existing member.
    #[error("etcdserver: Peer URLs already exists")]
    PeerUrlExists,
    /// Malformed member URLs.
    #[error("etcdserver: given member URLs are invalid")]
    MemberBadUrls,
    /// Promoting a voter.
    #[error("etcdserver: can only promote a learner member")]
    MemberNotLearner,
    /// Promoting a learner that lags behind.
    #[error("etcdserver: can only promote a learner member which is in sync with leader")]
    LearnerNotReady,
    /// Removing the member would lose quorum.
    #[error("etcdserver: re-configuration failed due to not enough started members")]
    NotEnoughStartedMembers,
    /// Something we do not implement (auth, downgrade, …).
    #[error("etcdserver: not capable")]
    NotCapable,
    /// A storage or internal failure; details are in the server log.
    #[error("etcdserver: {0}")]
    Internal(String),
}

impl EtcdError {
    /// The gRPC code etcd uses for this error.
    pub fn code(&self) -> tonic::Code {
        use tonic::Code;
        match self {
            Self::EmptyKey
            | Self::KeyNotFound
            | Self::ValueProvided
            | Self::LeaseProvided
            | Self::TooManyOps
            | Self::DuplicateKey
            | Self::RequestTooLarge
            | Self::MemberBadUrls => Code::InvalidArgument,
            Self::Compacted | Self::FutureRev | Self::LeaseTtlTooLarge => Code::OutOfRange,
            Self::LeaseNotFound | Self::MemberNotFound => Code::NotFound,
            Self::LeaseExists
            | Self::PeerUrlExists
            | Self::MemberNotLearner
            | Self::LearnerNotReady
            | Self::NotEnoughStartedMembers => Code::FailedPrecondition,
            Self::ResponseTooLarge => Code::ResourceExhausted,
            Self::NoLeader | Self::Timeout => Code::Unavailable,
            Self::NotCapable => Code::Unimplemented,
            Self::Internal(_) => Code::Internal,
        }
    }

    /// Rebuilds an error from a code and message (as carried in a peer response).
    pub fn from_parts(code: i32, message: &str) -> Self {
        const ALL: &[EtcdError] = &[
            EtcdError::EmptyKey,
            EtcdError::KeyNotFound,
            EtcdError::ValueProvided,
            EtcdError::LeaseProvided,
            EtcdError::TooManyOps,
            EtcdError::DuplicateKey,
            EtcdError::Compacted,
            EtcdError::FutureRev,
            EtcdError::LeaseNotFound,
            EtcdError::LeaseExists,
            EtcdError::LeaseTtlTooLarge,
            EtcdError::RequestTooLarge,
            EtcdError::ResponseTooLarge,
            EtcdError::NoLeader,
            EtcdError::Timeout,
            EtcdError::MemberNotFound,
            EtcdError::PeerUrlExists,
            EtcdError::MemberBadUrls,
            EtcdError::MemberNotLearner,
            EtcdError::LearnerNotReady,
            EtcdError::NotEnoughStartedMembers,
            EtcdError::NotCapable,
        ];
        let _ = code;
        ALL.iter()
            .find(|e| e.to_string() == message)
            .cloned()
            .unwrap_or_else(|| Self::Internal(message.trim_start_matches("etcdserver: ").to_owned()))
    }
}

impl From<EtcdError> for tonic::Status {
    fn from(e: EtcdError) -> Self {
        tonic::Status::new(e.code(), e.to_string())
    }
}

impl From<redb::Error> for EtcdError {
    fn from(e: redb::Error) -> Self {
        tracing::error!(error = %e, "storage error");
        Self::Internal(format!("storage error: {e}"))
    }
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for EtcdError {
            fn from(e: $t) -> Self {
                EtcdError::from(redb::Error::from(e))
            }
        }
    )*};
}
from_redb!(redb::StorageError, redb::TableError, redb::TransactionError, redb::CommitError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_through_parts() {
        for e in [EtcdError::LeaseNotFound, EtcdError::Compacted, EtcdError::DuplicateKey] {
            assert_eq!(EtcdError::from_parts(e.code() as i32, &e.to_string()), e);
        }
        assert_eq!(EtcdError::from_parts(13, "etcdserver: boom"), EtcdError::Internal("boom".into()));
    }
}
