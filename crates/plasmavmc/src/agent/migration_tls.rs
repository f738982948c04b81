//! The live-migration wire under TLS: QEMU's migration stream and the NBD exports the disks
//! mirror into carry guest memory and disk contents between workers, so both are encrypted and
//! mutually authenticated with the workers' cluster certificates, like every other plane.
//!
//! QEMU (GnuTLS) reads x509 credentials from a directory with fixed file names. At start the
//! agent copies its own certificate there, as both the server identity (the target side, which
//! requires a client certificate from the cluster CA) and the client identity (the source side,
//! which checks that the target's certificate names the address it connects to). Each QEMU gets
//! the credentials as a QOM object over QMP when it first needs them, so VMs started before
//! TLS was configured can migrate under it too.

use std::path::{Path, PathBuf};

use serde_json::json;
use ultracloud_tls::ClusterTls;

use super::qmp::{Qmp, QmpError};

/// Which end of a TLS connection a QEMU is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// The migration target: listens, requires a cluster client certificate.
    Server,
    /// The migration source: connects, checks the target's certificate and name.
    Client,
}

impl Endpoint {
    /// The QOM id of the credentials object (one per endpoint: a VM that migrated in may later
    /// migrate out of the same QEMU).
    pub fn creds_id(self) -> &'static str {
        match self {
            Self::Server => "uc-tls-server",
            Self::Client => "uc-tls-client",
        }
    }

    fn qemu_name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// The worker's credentials laid out for QEMU.
#[derive(Debug, Clone)]
pub struct MigrationTls {
    dir: PathBuf,
}

impl MigrationTls {
    /// Writes `tls`'s CA, certificate and key into `dir` under QEMU's names (keys 0600).
    pub fn write(tls: &ClusterTls, dir: &Path) -> std::io::Result<Self> {
        ultracloud_runtime::data_dir::create_private_dir(dir)?;
        let (ca, cert, key) = tls.pem_parts();
        std::fs::write(dir.join("ca-cert.pem"), &ca)?;
        for side in ["server", "client"] {
            std::fs::write(dir.join(format!("{side}-cert.pem")), &cert)?;
            ultracloud_runtime::secret_file::write(&dir.join(format!("{side}-key.pem")), key.trim_end())?;
        }
        Ok(Self { dir: dir.to_path_buf() })
    }

    /// The directory QEMU reads.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Gives the QEMU behind `q` the credentials for `endpoint` (once; later calls find them).
    pub async fn ensure(&self, q: &mut Qmp, endpoint: Endpoint) -> Result<(), String> {
        let args = json!({
            "qom-type": "tls-creds-x509",
            "id": endpoint.creds_id(),
            "endpoint": endpoint.qemu_name(),
            "dir": self.dir,
            "verify-peer": true,
        });
        match q.execute("object-add", Some(args)).await {
            Ok(_) => Ok(()),
            Err(QmpError::Command { desc, .. }) if desc.contains("duplicate") || desc.contains("already exists") => {
                Ok(())
            }
            Err(e) => Err(format!("loading the migration TLS credentials: {e}")),
        }
    }
}

/// The host part of `addr` (`ip:port`).
pub fn host_of(addr: &str) -> &str {
    addr.rsplit_once(':').map_or(addr, |(h, _)| h)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use ultracloud_tls::{CertAuthority, IssueRequest, Role};

    #[test]
    fn credentials_are_laid_out_under_qemus_names_with_private_keys() {
        let tmp = tempfile::tempdir().unwrap();
        let ca = CertAuthority::create("test CA").unwrap();
        let mut req = IssueRequest::new("w1", Role::Worker);
        req.ips = vec![std::net::Ipv4Addr::new(10, 0, 0, 1).into()];
        let held = ca.issue(&req, &tmp.path().join("w1")).unwrap();
        let tls = ClusterTls::load(&held).unwrap();
        let m = MigrationTls::write(&tls, &tmp.path().join("qemu-tls")).unwrap();
        for f in ["ca-cert.pem", "server-cert.pem", "client-cert.pem", "server-key.pem", "client-key.pem"] {
            let text = std::fs::read_to_string(m.dir().join(f)).unwrap();
            assert!(text.starts_with("-----BEGIN"), "{f}");
        }
        for f in ["server-key.pem", "client-key.pem"] {
            let mode = std::fs::metadata(m.dir().join(f)).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600, "{f}");
        }
        assert_eq!(std::fs::read_to_string(m.dir().join("ca-cert.pem")).unwrap(), ca.cert_pem());
        assert_eq!(host_of("10.0.0.1:61000"), "10.0.0.1");
    }
}
