//! chainfire's configuration, with etcd's flag names so operators feel at home.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use ultracloud_runtime::config::{ConfigError, Validate};

/// `--initial-cluster-state`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClusterState {
    /// Form a new cluster from `--initial-cluster`.
    #[default]
    New,
    /// Join a running cluster this member was added to with `member add`.
    Existing,
}

/// chainfire's configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChainfireConfig {
    /// Human-readable member name.
    pub name: String,
    /// Where the Raft log, the store and snapshots live.
    pub data_dir: PathBuf,
    /// URLs to serve the etcd API on (`http://IP:PORT`).
    pub listen_client_urls: Vec<String>,
    /// Client URLs announced to the cluster (default: the listen URLs).
    pub advertise_client_urls: Vec<String>,
    /// URLs to serve the peer protocol on.
    pub listen_peer_urls: Vec<String>,
    /// Peer URLs announced to the cluster (default: the listen peer URLs).
    pub initial_advertise_peer_urls: Vec<String>,
    /// `name=peer-url,…` of the initial members (default: this member alone).
    pub initial_cluster: String,
    /// `new` to form a cluster, `existing` to join one.
    pub initial_cluster_state: ClusterState,
    /// Distinguishes clusters formed from the same member list.
    pub initial_cluster_token: String,
    /// A separate admin listener (`/healthz`, `/readyz`, `/metrics`, `/version`), as etcd's
    /// `--listen-metrics-urls`. Those routes, and etcd's `/health`, are served on the client URLs
    /// in any case, so members started with etcd's flags alone need no port of their own.
    pub admin_listen: Option<SocketAddr>,
    /// Largest accepted request (etcd's default is 1.5 MiB).
    pub max_request_bytes: usize,
    /// Raft heartbeat interval in milliseconds.
    pub heartbeat_interval_ms: u64,
    /// Raft election timeout in milliseconds.
    pub election_timeout_ms: u64,
    /// Log entries between snapshots.
    pub snapshot_count: u64,
    /// Log entries kept behind a snapshot for slow followers (beyond that they get the snapshot).
    pub snapshot_catchup_entries: u64,
    /// Seconds between progress notifications to watchers that ask for them.
    pub watch_progress_notify_interval_secs: u64,
    /// TLS directory (`ca.pem`, `cert.pem`, `key.pem` from `ultracloud ca issue`): every URL is
    /// then `https://`, and clients and peers must present a certificate of the cluster CA
    /// (etcd's `--client-cert-auth` and `--peer-client-cert-auth`). Required beyond loopback.
    pub tls_dir: Option<PathBuf>,
}

impl Default for ChainfireConfig {
    fn default() -> Self {
        Self {
            name: "default".into(),
            data_dir: ultracloud_runtime::data_dir::default_root().join("chainfire"),
            listen_client_urls: vec!["http://127.0.0.1:2379".into()],
            advertise_client_urls: Vec::new(),
            listen_peer_urls: vec!["http://127.0.0.1:2380".into()],
            initial_advertise_peer_urls: Vec::new(),
            initial_cluster: String::new(),
            initial_cluster_state: ClusterState::New,
            initial_cluster_token: "chainfire-cluster".into(),
            admin_listen: None,
            max_request_bytes: 1536 * 1024,
            heartbeat_interval_ms: 100,
            election_timeout_ms: 1000,
            snapshot_count: 10_000,
            snapshot_catchup_entries: 5_000,
            watch_progress_notify_interval_secs: 600,
            tls_dir: None,
        }
    }
}

/// A member of `--initial-cluster`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitialMember {
    /// Its name.
    pub name: String,
    /// Its peer URLs.
    pub peer_urls: Vec<String>,
}

/// Parses `http://host:port` or `https://host:port` into a socket address (host must be an IP
/// literal or `localhost`).
pub fn socket_of(url: &str) -> Result<SocketAddr, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("{url}: {e}"))?;
    if parsed.scheme() != "http" && parsed.scheme() != "https" {
        return Err(format!("{url}: only http:// and https:// URLs are supported"));
    }
    let host = parsed.host_str().ok_or_else(|| format!("{url}: no host"))?;
    let port = parsed.port().ok_or_else(|| format!("{url}: no port"))?;
    let host = if host == "localhost" { "127.0.0.1" } else { host.trim_start_matches('[').trim_end_matches(']') };
    let ip: std::net::IpAddr = host.parse().map_err(|_| format!("{url}: host must be an IP address"))?;
    Ok(SocketAddr::new(ip, port))
}

impl ChainfireConfig {
    /// Client URLs announced to others.
    pub fn client_urls(&self) -> Vec<String> {
        if self.advertise_client_urls.is_empty() {
            self.listen_client_urls.clone()
        } else {
            self.advertise_client_urls.clone()
        }
    }

    /// Peer URLs announced to others.
    pub fn peer_urls(&self) -> Vec<String> {
        if self.initial_advertise_peer_urls.is_empty() {
            self.listen_peer_urls.clone()
        } else {
            self.initial_advertise_peer_urls.clone()
        }
    }

    /// The initial members; this member alone when `initial_cluster` is empty.
    pub fn initial_members(&self) -> Result<Vec<InitialMember>, ConfigError> {
        if self.initial_cluster.trim().is_empty() {
            return Ok(vec![InitialMember { name: self.name.clone(), peer_urls: self.peer_urls() }]);
        }
        let mut members: Vec<InitialMember> = Vec::new();
        for part in self.initial_cluster.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, url) = part.split_once('=').ok_or_else(|| {
                ConfigError::invalid("initial_cluster", part, "entries of the form name=http://host:port")
            })?;
            socket_of(url).map_err(|e| ConfigError::invalid("initial_cluster", part, &e))?;
            match members.iter_mut().find(|m| m.name == name) {
                Some(m) => m.peer_urls.push(url.to_owned()),
                None => members.push(InitialMember { name: name.to_owned(), peer_urls: vec![url.to_owned()] }),
            }
        }
        Ok(members)
    }
}

impl Validate for ChainfireConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if self.name.is_empty() {
            return Err(ConfigError::invalid("name", "", "a non-empty member name"));
        }
        for (field, urls) in [
            ("listen_client_urls", &self.listen_client_urls),
            ("advertise_client_urls", &self.advertise_client_urls),
            ("listen_peer_urls", &self.listen_peer_urls),
            ("initial_advertise_peer_urls", &self.initial_advertise_peer_urls),
        ] {
            for u in urls {
                let addr = socket_of(u).map_err(|e| ConfigError::invalid(field, u, &e))?;
                let tls = self.tls_dir.is_some();
                if tls != u.starts_with("https://") {
                    let need = if tls {
                        "https:// URLs (TLS is on: --tls-dir)"
                    } else {
                        "http:// URLs, or --tls-dir for https://"
                    };
                    return Err(ConfigError::invalid(field, u, need));
                }
                if field.starts_with("listen") {
                    ultracloud_tls::refuse_cleartext_beyond_loopback("chainfire", addr, tls)
                        .map_err(|why| ConfigError::invalid(field, u, &why))?;
                }
            }
        }
        if self.listen_client_urls.is_empty() {
            return Err(ConfigError::invalid("listen_client_urls", "(none)", "at least one URL"));
        }
        if self.listen_peer_urls.is_empty() {
            return Err(ConfigError::invalid("listen_peer_urls", "(none)", "at least one URL"));
        }
        let members = self.initial_members()?;
        if self.initial_cluster_state == ClusterState::New && !members.iter().any(|m| m.name == self.name) {
            return Err(ConfigError::invalid(
                "initial_cluster",
                &self.initial_cluster,
                &format!("must contain this member's name `{}`", self.name),
            ));
        }
        if self.heartbeat_interval_ms == 0 || self.election_timeout_ms < 3 * self.heartbeat_interval_ms {
            return Err(ConfigError::invalid(
                "election_timeout_ms",
                self.election_timeout_ms,
                "at least 3 × heartbeat_interval_ms (and heartbeat_interval_ms > 0)",
            ));
        }
        if self.max_request_bytes < 1024 {
            return Err(ConfigError::invalid("max_request_bytes", self.max_request_bytes, "at least 1024"));
        }
        Ok(())
    }
}

/// A member ID derived from its peer URLs and the cluster token, so every member of a new
/// cluster computes the same IDs for all (as etcd does). `salt` distinguishes re-added members.
pub fn member_id(peer_urls: &[String], token: &str, salt: Option<u64>) -> u64 {
    let mut urls = peer_urls.to_vec();
    urls.sort();
    let mut h = Sha256::new();
    for u in &urls {
        h.update(u.as_bytes());
    }
    h.update(token.as_bytes());
    if let Some(s) = salt {
        h.update(s.to_be_bytes());
    }
    let digest = h.finalize();
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    // Zero means "no member" in etcd's API.
    u64::from_be_bytes(id).max(1)
}

/// The cluster ID: a hash of the initial member IDs.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let mut h = Sha256::new();
    for id in ids {
        h.update(id.to_be_bytes());
    }
    let digest = h.finalize();
    let mut out = [0u8; 8];
    out.copy_from_slice(&digest[..8]);
    u64::from_be_bytes(out).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_initial_cluster() {
        let c = ChainfireConfig {
            name: "n1".into(),
            initial_cluster: "n1=http://127.0.0.1:2380,n2=http://127.0.0.2:2380".into(),
            ..Default::default()
        };
        c.validate().unwrap();
        let m = c.initial_members().unwrap();
        assert_eq!(m.len(), 2);
        assert_eq!(m[1].peer_urls, ["http://127.0.0.2:2380"]);
    }

    #[test]
    fn url_schemes_follow_tls_and_cleartext_stays_on_loopback() {
        let https = |u: &str| vec![u.to_owned()];
        // TLS on: every URL is https://, on any address.
        let c = ChainfireConfig {
            listen_client_urls: https("https://10.0.0.1:2379"),
            listen_peer_urls: https("https://10.0.0.1:2380"),
            tls_dir: Some("/etc/ultracloud/tls".into()),
            ..Default::default()
        };
        c.validate().unwrap();
        // An http:// URL with TLS on, an https:// one without: named, with the fix.
        let c = ChainfireConfig { tls_dir: Some("/t".into()), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("https:// URLs"));
        let c = ChainfireConfig { listen_client_urls: https("https://127.0.0.1:2379"), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("--tls-dir"));
        // Plain beyond loopback is refused.
        let c = ChainfireConfig { listen_client_urls: https("http://10.0.0.1:2379"), ..Default::default() };
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("without TLS") && err.contains("listen_client_urls"), "{err}");
    }

    #[test]
    fn rejects_bad_urls_and_missing_self() {
        let c = ChainfireConfig { listen_client_urls: vec!["127.0.0.1:2379".into()], ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("listen_client_urls"));
        let c = ChainfireConfig { initial_cluster: "other=http://127.0.0.1:2380".into(), ..Default::default() };
        assert!(c.validate().unwrap_err().to_string().contains("must contain"));
    }

    #[test]
    fn ids_are_stable_and_distinct() {
        let a = member_id(&["http://127.0.0.1:2380".into()], "t", None);
        assert_eq!(a, member_id(&["http://127.0.0.1:2380".into()], "t", None));
        assert_ne!(a, member_id(&["http://127.0.0.1:2381".into()], "t", None));
        assert_ne!(a, member_id(&["http://127.0.0.1:2380".into()], "u", None));
    }
}
