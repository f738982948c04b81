//! The cluster's wire security.
//!
//! Every node of an UltraCloud cluster holds a certificate issued by the cluster's own CA, made
//! at bootstrap ([`ca`]). A certificate names its holder (the common name) and the holder's
//! [`Role`] (the organizational unit): a control-plane node, a worker, or an operator (`admin`).
//! Servers present their certificate and, where the plane is internal (chainfire, flaredb),
//! demand one from the client and check its role ([`identity`]); clients trust the cluster CA
//! only ([`ClusterTls`]). [`serve`] runs an axum router over TLS with the peer's identity in
//! every request's extensions, and [`client`] holds the process's default client identity, so
//! every HTTP client the process makes trusts the same CA and presents the same certificate;
//! [`replicas`] is the one client of a service's replicas built on it.
//!
//! rustls with the *ring* provider throughout: no OpenSSL, no cmake.

pub mod ca;
pub mod client;
pub mod identity;
pub mod replicas;
pub mod serve;
mod tls_dir;

pub use ca::{CertAuthority, IssueRequest};
pub use identity::{PeerIdentity, Role};
pub use tls_dir::{CA_FILE, CERT_FILE, ClientAuth, ClusterTls, KEY_FILE, TlsError, trust_only};

/// A service's TLS set-up from its `--tls-dir`: loads the directory, makes it the identity of
/// every client the process builds ([`client::install`]), and returns the server configuration
/// its listeners use. `None` (no directory): plain HTTP, no identity.
pub fn setup(tls_dir: Option<&std::path::Path>, auth: ClientAuth) -> Result<Option<ServerTls>, TlsError> {
    let Some(dir) = tls_dir else { return Ok(None) };
    let tls = ClusterTls::load(dir)?;
    let server = tls.server_config(auth)?;
    if client::install(tls.clone()).is_err() {
        tracing::warn!(dir = %dir.display(), "another TLS identity was installed first; clients keep it");
    }
    tracing::info!(dir = %dir.display(), identity = ?tls.identity().map(ToString::to_string), "TLS on");
    Ok(Some(ServerTls { config: server, tls }))
}

/// What [`setup`] gives a service: its server configuration and its loaded material.
#[derive(Debug, Clone)]
pub struct ServerTls {
    /// The rustls configuration of its listeners.
    pub config: std::sync::Arc<rustls::ServerConfig>,
    /// The holder's material.
    pub tls: ClusterTls,
}

/// Refuses to serve an internal plane in the clear beyond loopback: `listen` must be a loopback
/// address unless TLS is on. Returns the reason when it is not.
pub fn refuse_cleartext_beyond_loopback(
    service: &str,
    listen: std::net::SocketAddr,
    tls_on: bool,
) -> Result<(), String> {
    if tls_on || listen.ip().is_loopback() {
        return Ok(());
    }
    Err(format!(
        "{service} would listen on {listen} without TLS: anyone who reaches it could read and write every key. \
         Give it --tls-dir (a directory from `ultracloud ca issue`), or listen on a loopback address"
    ))
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    #[test]
    fn cleartext_is_refused_beyond_loopback_only() {
        let lo: SocketAddr = "127.0.0.1:2479".parse().unwrap_or_else(|_| unreachable!());
        let lan: SocketAddr = "10.0.0.1:2479".parse().unwrap_or_else(|_| unreachable!());
        let any: SocketAddr = "0.0.0.0:2479".parse().unwrap_or_else(|_| unreachable!());
        assert!(super::refuse_cleartext_beyond_loopback("flaredb", lo, false).is_ok());
        assert!(super::refuse_cleartext_beyond_loopback("flaredb", lan, true).is_ok());
        for addr in [lan, any] {
            let why = super::refuse_cleartext_beyond_loopback("flaredb", addr, false).unwrap_err();
            assert!(why.contains("--tls-dir") && why.contains(&addr.to_string()), "{why}");
        }
    }
}
