//! The cluster's wire security.
//!
//! Every node of an UltraCloud cluster holds a certificate issued by the cluster's own CA, made
//! at bootstrap ([`ca`]). A certificate names its holder (the common name) and the holder's
//! [`Role`] (the organizational unit): a control-plane node, a worker, or an operator (`admin`).
//! Servers present their certificate and, where the plane is internal (chainfire, flaredb),
//! demand one from the client and check its role ([`identity`]); clients trust the cluster CA
//! only ([`ClusterTls`]). [`serve`] runs an axum router over TLS with the peer's identity in
//! every request's extensions, and [`client`] holds the process's default client identity, so
//! every HTTP client the process makes trusts the same CA and presents the same certificate.
//!
//! rustls with the *ring* provider throughout: no OpenSSL, no cmake.

pub mod ca;
pub mod client;
pub mod identity;
pub mod serve;
mod tls_dir;

pub use ca::{CertAuthority, IssueRequest};
pub use identity::{PeerIdentity, Role};
pub use tls_dir::{CA_FILE, CERT_FILE, ClientAuth, ClusterTls, KEY_FILE, TlsError, trust_only};
