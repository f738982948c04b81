//! A holder's TLS directory (`--tls-dir`): the cluster CA it trusts, its certificate and its
//! key, loaded into rustls server and client configurations.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use ultracloud_runtime::secret_file;

use crate::identity::PeerIdentity;

/// The CA certificate every holder trusts.
pub const CA_FILE: &str = "ca.pem";
/// The holder's certificate.
pub const CERT_FILE: &str = "cert.pem";
/// The holder's private key (0600, enforced on every open).
pub const KEY_FILE: &str = "key.pem";

/// Why TLS material could not be made or loaded; names the file.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// A file holds no usable PEM of the expected kind.
    #[error("{}: {reason}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
    /// A key or certificate could not be generated.
    #[error("cannot generate {what}: {reason}")]
    Generate {
        /// What was being made.
        what: String,
        /// Why not.
        reason: String,
    },
    /// rustls refused the material (a key that does not match the certificate…).
    #[error("TLS configuration from {}: {reason}", dir.display())]
    Config {
        /// The TLS directory.
        dir: PathBuf,
        /// rustls's reason.
        reason: String,
    },
}

/// Whether a server asks its clients for a certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientAuth {
    /// Every client must present a certificate the cluster CA issued (internal planes).
    Required,
    /// Clients authenticate otherwise (iam tokens); the server only proves who it is.
    None,
}

/// A holder's loaded TLS material.
#[derive(Clone)]
pub struct ClusterTls {
    dir: PathBuf,
    ca: CertificateDer<'static>,
    chain: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
    identity: Option<PeerIdentity>,
    /// The three files as read at load (tonic and etcd-client take PEM text).
    pem: Arc<PemParts>,
}

/// The CA certificate, the holder's certificate and its key, as PEM text.
struct PemParts {
    ca: String,
    cert: String,
    key: String,
}

impl std::fmt::Debug for ClusterTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("ClusterTls").field("dir", &self.dir).field("identity", &self.identity).finish_non_exhaustive()
    }
}

/// The ring provider: it builds without cmake or a large C library (aws-lc) on small build
/// machines. rustls deprecates it for lacking post-quantum key exchange (X25519MLKEM768); the
/// classical suites it offers are what etcd and most clusters speak today.
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

impl ClusterTls {
    /// Loads `dir`'s `ca.pem`, `cert.pem` and `key.pem` (made 0600 if it was not).
    pub fn load(dir: &Path) -> Result<Self, TlsError> {
        let parse = |path: PathBuf, reason: String| TlsError::Parse { path, reason };
        let ca_path = dir.join(CA_FILE);
        let ca_pem =
            std::fs::read_to_string(&ca_path).map_err(|source| TlsError::Read { path: ca_path.clone(), source })?;
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|e| parse(ca_path.clone(), format!("no CA certificate ({e})")))?;
        let cert_path = dir.join(CERT_FILE);
        let cert_pem =
            std::fs::read_to_string(&cert_path).map_err(|source| TlsError::Read { path: cert_path.clone(), source })?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| parse(cert_path.clone(), format!("bad certificate ({e})")))?;
        if chain.is_empty() {
            return Err(parse(cert_path, "no certificate".into()));
        }
        let key_path = dir.join(KEY_FILE);
        let key_pem =
            secret_file::read(&key_path).map_err(|source| TlsError::Read { path: key_path.clone(), source })?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
            .map_err(|e| parse(key_path, format!("no private key ({e})")))?;
        let identity = PeerIdentity::from_der(&chain[0]);
        let pem = Arc::new(PemParts { ca: ca_pem, cert: cert_pem, key: key_pem });
        let tls = Self { dir: dir.to_path_buf(), ca, chain, key: Arc::new(key), identity, pem };
        // Fail at load, not at the first connection, when the key does not fit the certificate.
        tls.server_config(ClientAuth::None)?;
        Ok(tls)
    }

    /// The directory it was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The holder's own identity (from its certificate).
    pub fn identity(&self) -> Option<&PeerIdentity> {
        self.identity.as_ref()
    }

    /// The CA certificate (DER).
    pub fn ca_der(&self) -> &CertificateDer<'static> {
        &self.ca
    }

    fn roots(&self) -> Result<RootCertStore, TlsError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone()).map_err(|e| self.config_err(e))?;
        Ok(roots)
    }

    fn config_err(&self, e: impl std::fmt::Display) -> TlsError {
        TlsError::Config { dir: self.dir.clone(), reason: e.to_string() }
    }

    /// A server configuration presenting this holder's certificate (HTTP/1.1 by ALPN: the axum
    /// listeners serve HTTP/1.1 only; tonic's gRPC listeners build their own).
    pub fn server_config(&self, auth: ClientAuth) -> Result<Arc<ServerConfig>, TlsError> {
        let builder = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.config_err(e))?;
        let builder = match auth {
            ClientAuth::None => builder.with_no_client_auth(),
            ClientAuth::Required => {
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(self.roots()?), provider())
                    .build()
                    .map_err(|e| self.config_err(e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config =
            builder.with_single_cert(self.chain.clone(), self.key.clone_key()).map_err(|e| self.config_err(e))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// A client configuration trusting the cluster CA only and presenting this holder's
    /// certificate to servers that ask for one.
    pub fn client_config(&self) -> Result<ClientConfig, TlsError> {
        ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| self.config_err(e))?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(self.chain.clone(), self.key.clone_key())
            .map_err(|e| self.config_err(e))
    }

    /// An HTTP client builder that speaks TLS with this holder's identity.
    pub fn http_client_builder(&self) -> Result<reqwest::ClientBuilder, TlsError> {
        let mut config = self.client_config()?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(reqwest::Client::builder().use_preconfigured_tls(config))
    }

    /// The CA certificate, this holder's certificate and its key as PEM, as loaded (for tonic
    /// and etcd-client, which take PEM text).
    pub fn pem_parts(&self) -> (String, String, String) {
        (self.pem.ca.clone(), self.pem.cert.clone(), self.pem.key.clone())
    }
}

/// A client configuration that trusts only the CA certificate in `ca_file` and presents no
/// certificate (the CLI talking to iam and the controllers).
pub fn trust_only(ca_file: &Path) -> Result<ClientConfig, TlsError> {
    let pem = std::fs::read(ca_file).map_err(|source| TlsError::Read { path: ca_file.to_path_buf(), source })?;
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| TlsError::Parse { path: ca_file.to_path_buf(), reason: e.to_string() })?;
        roots.add(cert).map_err(|e| TlsError::Parse { path: ca_file.to_path_buf(), reason: e.to_string() })?;
    }
    if roots.is_empty() {
        return Err(TlsError::Parse { path: ca_file.to_path_buf(), reason: "no CA certificate".into() });
    }
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config { dir: ca_file.to_path_buf(), reason: e.to_string() })?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}
