//! The process's client identity: set once at start from `--tls-dir` (a service) or from the
//! saved session's CA (the CLI), then used by every HTTP client the process builds, so no call
//! site can forget the cluster CA or speak plain HTTP to a TLS cluster.
//!
//! It is process-wide on purpose, like rustls's default crypto provider: a process is one
//! holder. Tests that turn TLS on therefore live in test binaries of their own.

use std::sync::OnceLock;

use crate::tls_dir::{ClusterTls, TlsError};

enum Installed {
    /// A holder: trusts the CA, presents its certificate.
    Holder(ClusterTls),
    /// A client that only trusts the CA (the CLI).
    TrustOnly(Box<rustls::ClientConfig>),
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// A second, different identity was installed.
#[derive(Debug, thiserror::Error)]
#[error("a different TLS identity is already installed in this process")]
pub struct AlreadyInstalled;

/// Makes `tls` the identity of every client this process builds from now on. Installing the
/// same directory again is a no-op.
pub fn install(tls: ClusterTls) -> Result<(), AlreadyInstalled> {
    let dir = tls.dir().to_path_buf();
    match INSTALLED.get_or_init(|| Installed::Holder(tls)) {
        Installed::Holder(t) if t.dir() == dir => Ok(()),
        _ => Err(AlreadyInstalled),
    }
}

/// Makes clients trust the CA in `ca_file` (and present no certificate).
pub fn install_trust(ca_file: &std::path::Path) -> Result<(), TlsError> {
    let config = crate::tls_dir::trust_only(ca_file)?;
    let _ = INSTALLED.set(Installed::TrustOnly(Box::new(config)));
    Ok(())
}

/// The installed holder identity, if any.
pub fn holder() -> Option<&'static ClusterTls> {
    match INSTALLED.get() {
        Some(Installed::Holder(t)) => Some(t),
        _ => None,
    }
}

/// `https` when this process holds a cluster certificate or trusts a cluster CA (its cluster
/// speaks TLS), else `http`: the scheme of URLs built from a bare `host:port`.
pub fn scheme() -> &'static str {
    if INSTALLED.get().is_some() { "https" } else { "http" }
}

/// `url` as given when it names a scheme, else `host:port` with [`scheme`] in front.
pub fn with_scheme(url: &str) -> String {
    let url = url.trim_end_matches('/');
    if url.starts_with("http://") || url.starts_with("https://") {
        url.to_owned()
    } else {
        format!("{}://{url}", scheme())
    }
}

/// An HTTP client builder with the installed identity (plain `reqwest` defaults when none):
/// use it for every client.
pub fn http_client_builder() -> reqwest::ClientBuilder {
    match INSTALLED.get() {
        Some(Installed::Holder(t)) => match t.http_client_builder() {
            Ok(b) => b,
            Err(e) => {
                // Loaded and checked at install; a failure here would be a rustls regression.
                tracing::error!(error = %e, "TLS client configuration failed; falling back to no identity");
                reqwest::Client::builder()
            }
        },
        Some(Installed::TrustOnly(config)) => reqwest::Client::builder().use_preconfigured_tls((**config).clone()),
        None => reqwest::Client::builder(),
    }
}

/// An HTTP client with the installed identity and reqwest's defaults otherwise.
pub fn http_client() -> reqwest::Client {
    http_client_builder().build().unwrap_or_default()
}

/// Loads the holder directory `dir` and installs it (a client-only process: `ultracloud db`,
/// benchmarks, the harness's probes).
pub fn install_dir(dir: &std::path::Path) -> Result<(), TlsError> {
    if holder().is_some_and(|h| h.dir() == dir) {
        return Ok(()); // already this process's identity: no second load
    }
    let tls = ClusterTls::load(dir)?;
    install(tls).map_err(|e| TlsError::Config { dir: dir.to_path_buf(), reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_url_with_a_scheme_is_kept_and_a_bare_address_gets_this_process_s() {
        // Nothing is installed in this test process: plain HTTP.
        assert_eq!(super::with_scheme("https://10.0.0.1:8480/"), "https://10.0.0.1:8480");
        assert_eq!(super::with_scheme("http://10.0.0.1:8480"), "http://10.0.0.1:8480");
        assert_eq!(super::with_scheme("127.0.0.1:8680"), "http://127.0.0.1:8680");
    }
}
