//! chainfire's wire security, as etcd's `--client-cert-auth` and `--peer-client-cert-auth`: with
//! a TLS directory, both the client and the peer listeners speak TLS only and admit only
//! certificates of the cluster CA — clients of role control-plane or admin (`etcdctl --cacert
//! --cert --key` with an operator's certificate), peers of role control-plane.

use tonic::Status;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use ultracloud_tls::{PeerIdentity, Role};

/// Roles admitted on the client (etcd API) listeners.
pub const CLIENT_ROLES: &[Role] = &[Role::ControlPlane, Role::Admin];
/// Roles admitted on the peer (Raft) listeners.
pub const PEER_ROLES: &[Role] = &[Role::ControlPlane];

/// An endpoint for `url`: over TLS with this process's identity when the URL is `https://`.
pub fn endpoint(url: &str) -> Result<Endpoint, EndpointError> {
    let ep = Endpoint::from_shared(url.to_owned()).map_err(|e| EndpointError::Url(e.to_string()))?;
    if !url.starts_with("https://") {
        return Ok(ep);
    }
    let tls = ultracloud_tls::client::holder().ok_or(EndpointError::NoIdentity)?;
    let (ca, cert, key) = tls.pem_parts();
    let config =
        ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca)).identity(Identity::from_pem(cert, key));
    ep.tls_config(config).map_err(|e| EndpointError::Tls(e.to_string()))
}

/// Why an endpoint could not be made.
#[derive(Debug, thiserror::Error)]
pub enum EndpointError {
    /// Not a URL tonic accepts.
    #[error("bad endpoint URL: {0}")]
    Url(String),
    /// An `https://` URL in a process that holds no cluster certificate.
    #[error("an https:// endpoint needs a TLS directory (--tls-dir) with this process's certificate")]
    NoIdentity,
    /// The TLS material could not be used.
    #[error("TLS: {0}")]
    Tls(String),
    /// Connecting failed.
    #[error(transparent)]
    Transport(#[from] tonic::transport::Error),
}

/// Whether a client holding `identity` (from its certificate) may use an API open to `roles`.
pub fn check(roles: &[Role], identity: Option<&PeerIdentity>) -> Result<(), Status> {
    match identity {
        Some(id) if id.is(roles) => Ok(()),
        Some(id) => Err(Status::permission_denied(format!(
            "the certificate of {id} may not use this API (it needs role {})",
            roles.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(" or ")
        ))),
        None => Err(Status::unauthenticated("a client certificate of the cluster CA is required")),
    }
}
