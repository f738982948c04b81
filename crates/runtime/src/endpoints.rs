//! `endpoints.json`: where a running UltraCloud stack answers, and with which credentials, for
//! scripts and other tools (the way k3s writes its kubeconfig). `ultracloud quickstart --keep`
//! and `ultracloud cluster start` write it into their state directory; each service adds its
//! protocols as it lands (S3, DNS, NBD, the Prometheus API, …). Schema in docs/quickstart.md.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The file's name in a stack's state directory.
pub const FILE: &str = "endpoints.json";
/// The schema version written.
pub const VERSION: u32 = 1;

/// Where a running stack answers.
/// Readers ignore fields they do not know: later versions add fields, never change these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoints {
    /// The schema version ([`VERSION`]).
    pub version: u32,
    /// Which stack: `quickstart` or `cluster`.
    pub stack: String,
    /// The cluster CA certificate every endpoint's certificate chains to (trust it, and only it).
    pub ca_file: PathBuf,
    /// The administrator's credentials.
    pub admin: Admin,
    /// Each service's endpoints by protocol (`http` for its REST API, `etcd` for the etcd v3
    /// gRPC API, …), every replica's URL in each list.
    pub services: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

/// How an administrator gets in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Admin {
    /// The user name for `ultracloud login`.
    pub user: String,
    /// The file holding its password (0600).
    pub password_file: PathBuf,
    /// An operator's certificate directory (`ca.pem`, `cert.pem`, `key.pem`) for the
    /// databases, which admit only certificates (`ultracloud db --tls-dir`, `etcdctl --cert`).
    pub tls_dir: PathBuf,
}

impl Endpoints {
    /// An empty description of `stack`.
    pub fn new(stack: &str, ca_file: PathBuf, admin: Admin) -> Self {
        Self { version: VERSION, stack: stack.to_owned(), ca_file, admin, services: BTreeMap::new() }
    }

    /// Adds `url` to `service`'s endpoints for `protocol`.
    pub fn add(&mut self, service: &str, protocol: &str, url: String) {
        self.services.entry(service.to_owned()).or_default().entry(protocol.to_owned()).or_default().push(url);
    }

    /// Writes the file into `dir` (through a temporary file, so a reader never sees half of
    /// it); returns its path. It holds paths to secrets, not secrets: it is world-readable.
    pub fn write(&self, dir: &Path) -> std::io::Result<PathBuf> {
        let path = dir.join(FILE);
        let tmp = dir.join(format!(".{FILE}.tmp"));
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, &path)?;
        Ok(path)
    }

    /// Reads the file in `dir`.
    pub fn read(dir: &Path) -> std::io::Result<Self> {
        let path = dir.join(FILE);
        let text = std::fs::read_to_string(&path)?;
        serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{}: {e}", path.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_endpoints_read_back_newer_fields_are_ignored_and_missing_ones_named() {
        let dir = tempfile::tempdir().unwrap();
        let admin = Admin { user: "admin".into(), password_file: "/s/pw".into(), tls_dir: "/s/admin".into() };
        let mut e = Endpoints::new("cluster", "/s/ca.pem".into(), admin);
        e.add("chainfire", "etcd", "https://10.0.0.1:2379".into());
        e.add("chainfire", "etcd", "https://10.0.0.2:2379".into());
        e.add("iam", "http", "https://10.0.0.1:8480".into());
        let path = e.write(dir.path()).unwrap();
        assert_eq!(path, dir.path().join(FILE));
        assert_eq!(Endpoints::read(dir.path()).unwrap(), e);
        let v: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        assert_eq!(v["services"]["chainfire"]["etcd"][1], "https://10.0.0.2:2379");
        assert_eq!(v["version"], VERSION);
        let newer = r#"{"version":2,"stack":"x","ca_file":"c","admin":{"user":"a","password_file":"p","tls_dir":"t"},"services":{},"later":1}"#;
        std::fs::write(&path, newer).unwrap();
        assert_eq!(Endpoints::read(dir.path()).unwrap().stack, "x");
        std::fs::write(&path, r#"{"version":1,"stack":"x"}"#).unwrap();
        let err = Endpoints::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("ca_file") && err.contains(FILE), "{err}");
    }
}
