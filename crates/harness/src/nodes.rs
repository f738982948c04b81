//! Node agents: their configuration files, and starting, stopping and killing them inside
//! their namespaces.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::sys;
use crate::topology::{Node, Role, Topology, ports};

/// The secret files every iam replica shares (so whichever bootstraps first uses them).
#[derive(Debug, Clone)]
pub struct Secrets {
    /// The admin password file.
    pub admin_password: PathBuf,
    /// The platform service account's API key file (control plane only).
    pub platform_api_key: PathBuf,
    /// The `s3-gateway` service account's API key file (the S3 gateways', control plane only).
    pub s3_gateway_api_key: PathBuf,
    /// Each worker's own node-agent API key file, by worker name.
    pub node_api_keys: Vec<(String, PathBuf)>,
    /// The lab's TLS material: `ca/` (the cluster CA, which stays here), one holder directory
    /// per node and `admin/` (the harness's own client certificate).
    pub tls: PathBuf,
}

/// Generates the secrets once (0600 files under `<lab>/secrets`): the admin password, the
/// platform key, one node-agent key per worker, the cluster CA and every node's certificate.
pub fn ensure_secrets(lab: &Path, topo: &Topology) -> anyhow::Result<Secrets> {
    let dir = lab.join("secrets");
    std::fs::create_dir_all(&dir)?;
    let node_api_keys = topo
        .nodes
        .iter()
        .filter(|n| n.role == Role::Worker)
        .map(|n| (n.name.clone(), dir.join(format!("node-{}-api-key", n.name))))
        .collect();
    let s = Secrets {
        admin_password: dir.join("admin-password"),
        platform_api_key: dir.join("platform-api-key"),
        s3_gateway_api_key: dir.join("s3-gateway-api-key"),
        node_api_keys,
        tls: dir.join("tls"),
    };
    ensure_certificates(&s.tls, topo)?;
    if !s.admin_password.exists() {
        ultracloud_runtime::secret_file::write(&s.admin_password, &ultracloud_iam::service::generate_password())?;
    }
    let service_keys = [&s.platform_api_key, &s.s3_gateway_api_key];
    for key_file in service_keys.into_iter().chain(s.node_api_keys.iter().map(|(_, f)| f)) {
        if !key_file.exists() {
            let key = ultracloud_iam::credential::mint(ultracloud_iam::credential::Kind::ApiKey);
            ultracloud_runtime::secret_file::write(key_file, &key.token)?;
        }
    }
    Ok(s)
}

/// Makes the cluster CA at bootstrap and issues what is missing: a certificate per node (its
/// lab address; control-plane or worker) and the harness's own (admin).
fn ensure_certificates(tls: &Path, topo: &Topology) -> anyhow::Result<()> {
    use ultracloud_tls::{CertAuthority, IssueRequest, Role as CertRole};
    let ca = CertAuthority::load_or_create(&tls.join("ca"), "UltraCloud test cluster CA")?;
    for n in &topo.nodes {
        let dir = tls.join(&n.name);
        if dir.join(ultracloud_tls::KEY_FILE).exists() {
            continue;
        }
        let role = if n.role == Role::ControlPlane { CertRole::ControlPlane } else { CertRole::Worker };
        let mut req = IssueRequest::new(&n.name, role);
        req.ips = vec![n.ip.into()];
        req.dns = vec![n.name.clone()];
        ca.issue(&req, &dir)?;
    }
    if !tls.join("admin").join(ultracloud_tls::KEY_FILE).exists() {
        ca.issue(&IssueRequest::new("harness", CertRole::Admin), &tls.join("admin"))?;
    }
    Ok(())
}

impl Secrets {
    /// The TLS directory of `node`.
    pub fn tls_dir(&self, node: &str) -> PathBuf {
        self.tls.join(node)
    }

    /// The harness's own TLS directory (an operator's certificate).
    pub fn admin_tls_dir(&self) -> PathBuf {
        self.tls.join("admin")
    }

    /// The node-agent key file of worker `node`.
    fn node_key(&self, node: &str) -> anyhow::Result<&Path> {
        self.node_api_keys
            .iter()
            .find(|(n, _)| n == node)
            .map(|(_, f)| f.as_path())
            .with_context(|| format!("no node-agent key for {node}"))
    }
}

/// A node's directory.
pub fn node_dir(lab: &Path, node: &Node) -> PathBuf {
    lab.join(&node.name)
}

/// The lab gateways' block size: 1 MiB, so that the smoke's few-MiB objects span several
/// blocks (the smoke computes their names to find their copies).
pub const GATEWAY_BLOCK_BYTES: usize = 1 << 20;

/// `https://ip:port` of a service on every control-plane node, comma-separated.
fn urls(topo: &Topology, port: u16) -> String {
    topo.control_plane().iter().map(|n| format!("https://{}", n.addr(port))).collect::<Vec<_>>().join(",")
}

fn strings(args: &[String]) -> toml::Value {
    toml::Value::Array(args.iter().cloned().map(toml::Value::String).collect())
}

/// The node agent configuration of `node`.
pub fn config(lab: &Path, topo: &Topology, node: &Node, secrets: &Secrets) -> anyhow::Result<String> {
    let ip = node.ip;
    let mut doc = toml::Table::new();
    doc.insert("name".into(), node.name.clone().into());
    doc.insert("data_dir".into(), node_dir(lab, node).display().to_string().into());
    doc.insert("admin_listen".into(), node.addr(ports::AGENT).to_string().into());
    doc.insert("roles".into(), toml::Value::Array(vec![node.role.agent_role().into()]));
    doc.insert("stop_timeout_secs".into(), 5.into());
    let mut services = toml::Table::new();
    // Every service of the node holds the node's certificate.
    let tls = format!("--tls-dir={}", secrets.tls_dir(&node.name).display());
    if node.role == Role::ControlPlane {
        let peers = |port: u16, scheme: &str| {
            topo.control_plane()
                .iter()
                .map(|n| format!("{}={scheme}{}", n.name, n.addr(port)))
                .collect::<Vec<_>>()
                .join(",")
        };
        let service = |mut args: Vec<String>| {
            args.push(tls.clone());
            let mut t = toml::Table::new();
            t.insert("args".into(), strings(&args));
            toml::Value::Table(t)
        };
        services.insert(
            "chainfire".into(),
            service(vec![
                format!("--name={}", node.name),
                format!("--listen-client-urls=https://{ip}:{}", ports::CHAINFIRE),
                format!("--listen-peer-urls=https://{ip}:{}", ports::CHAINFIRE_PEER),
                format!("--initial-cluster={}", peers(ports::CHAINFIRE_PEER, "https://")),
                format!("--admin-listen={ip}:{}", ports::CHAINFIRE_ADMIN),
            ]),
        );
        services.insert(
            "flaredb".into(),
            service(vec![
                format!("--name={}", node.name),
                format!("--listen={ip}:{}", ports::FLAREDB),
                format!("--initial-cluster={}", peers(ports::FLAREDB, "")),
                format!("--admin-listen={ip}:{}", ports::FLAREDB_ADMIN),
            ]),
        );
        services.insert(
            "prismnet".into(),
            service(vec![
                format!("--listen={ip}:{}", ports::PRISMNET),
                format!("--admin-listen={ip}:{}", ports::PRISMNET_ADMIN),
                format!("--flaredb-endpoints={}", topo.control_plane_endpoints(ports::FLAREDB)),
                format!("--iam-endpoints={}", urls(topo, ports::IAM)),
                format!("--api-key-file={}", secrets.platform_api_key.display()),
            ]),
        );
        services.insert(
            "plasmavmc".into(),
            service(vec![
                format!("--listen={ip}:{}", ports::PLASMAVMC),
                format!("--admin-listen={ip}:{}", ports::PLASMAVMC_ADMIN),
                format!("--flaredb-endpoints={}", topo.control_plane_endpoints(ports::FLAREDB)),
                format!("--iam-endpoints={}", urls(topo, ports::IAM)),
                format!("--prismnet-endpoints={}", urls(topo, ports::PRISMNET)),
                format!("--api-key-file={}", secrets.platform_api_key.display()),
                format!("--image-dir={}", lab.join("guest-image").display()),
            ]),
        );
        // Storage nodes on the control plane: three copies, one per node; repair every 2 s so
        // the smoke sees copies come back quickly.
        services.insert(
            "lightningstor-node".into(),
            service(vec![
                format!("--name={}", node.name),
                format!("--listen={ip}:{}", ports::LIGHTNINGSTOR_NODE),
                format!("--admin-listen={ip}:{}", ports::LIGHTNINGSTOR_NODE_ADMIN),
                format!("--peers={}", peers(ports::LIGHTNINGSTOR_NODE, "https://")),
                "--repair-interval-s=2".to_owned(),
            ]),
        );
        // An S3 gateway on every control-plane node, over all three storage nodes.
        services.insert(
            "lightningstor".into(),
            service(vec![
                format!("--listen={ip}:{}", ports::LIGHTNINGSTOR),
                format!("--admin-listen={ip}:{}", ports::LIGHTNINGSTOR_ADMIN),
                format!("--flaredb-endpoints={}", topo.control_plane_endpoints(ports::FLAREDB)),
                format!("--iam-endpoints={}", urls(topo, ports::IAM)),
                format!("--api-key-file={}", secrets.s3_gateway_api_key.display()),
                format!("--nodes={}", peers(ports::LIGHTNINGSTOR_NODE, "https://")),
                format!("--block-bytes={GATEWAY_BLOCK_BYTES}"),
            ]),
        );
        let mut iam = vec![
            format!("--listen={ip}:{}", ports::IAM),
            format!("--admin-listen={ip}:{}", ports::IAM_ADMIN),
            format!("--flaredb-endpoints={}", topo.control_plane_endpoints(ports::FLAREDB)),
            format!("--admin-password-file={}", secrets.admin_password.display()),
            format!("--platform-api-key-file={}", secrets.platform_api_key.display()),
            format!("--object-gateway-api-key-file={}", secrets.s3_gateway_api_key.display()),
        ];
        iam.extend(secrets.node_api_keys.iter().map(|(n, f)| format!("--node-api-key-file={n}={}", f.display())));
        services.insert("iam".into(), service(iam));
    }
    if node.role == Role::Worker {
        // The worker's own credential: its agents may touch only this host's records.
        let key = secrets.node_key(&node.name)?.display().to_string();
        let mut t = toml::Table::new();
        let args = vec![
            format!("--host={}", node.name),
            format!("--controller={}", urls(topo, ports::PRISMNET)),
            format!("--iam-endpoints={}", urls(topo, ports::IAM)),
            format!("--api-key-file={key}"),
            format!("--underlay-ip={ip}"),
            "--underlay-dev=eth0".to_owned(),
            format!("--admin-listen={ip}:{}", ports::PRISMNET_AGENT_ADMIN),
            tls.clone(),
        ];
        t.insert("args".into(), strings(&args));
        services.insert("prismnet-agent".into(), toml::Value::Table(t));
        // QEMU runs in the node's namespace, where the prismnet agent makes the taps. Each
        // worker offers 4 vCPUs and 2 GiB: small guests, and room for a migration.
        let args = vec![
            format!("--host={}", node.name),
            format!("--controller={}", urls(topo, ports::PLASMAVMC)),
            format!("--iam-endpoints={}", urls(topo, ports::IAM)),
            format!("--api-key-file={key}"),
            format!("--listen={ip}:{}", ports::PLASMAVMC_AGENT),
            format!("--address={ip}"),
            format!("--admin-listen={ip}:{}", ports::PLASMAVMC_AGENT_ADMIN),
            "--vcpus=4".to_owned(),
            format!("--image-dir={}", lab.join("guest-image").display()),
            "--memory-mib=2048".to_owned(),
            tls.clone(),
        ];
        let mut t = toml::Table::new();
        t.insert("args".into(), strings(&args));
        services.insert("plasmavmc-agent".into(), toml::Value::Table(t));
    }
    doc.insert("service".into(), toml::Value::Table(services));
    toml::to_string(&doc).with_context(|| format!("writing the configuration of {}", node.name))
}

/// Writes the node's configuration; returns its path.
pub fn write_config(lab: &Path, topo: &Topology, node: &Node, secrets: &Secrets) -> anyhow::Result<PathBuf> {
    let dir = node_dir(lab, node);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let path = dir.join("node.toml");
    std::fs::write(&path, config(lab, topo, node, secrets)?).with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Starts the node agent inside the node's namespace, detached from the harness (its own
/// process group: it outlives `cluster start`). Returns its PID.
pub fn spawn_agent(lab: &Path, bin: &Path, node: &Node) -> anyhow::Result<i32> {
    use std::os::unix::process::CommandExt;
    let dir = node_dir(lab, node);
    let log = std::fs::OpenOptions::new().create(true).append(true).open(dir.join("agent.log"))?;
    let child = Command::new("ip")
        .args(["netns", "exec", &node.ns()])
        .arg(bin)
        .arg("node")
        .arg("--config")
        .arg(dir.join("node.toml"))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("starting the node agent of {}", node.name))?;
    // `ip netns exec` execs the agent: the PID is the agent's.
    Ok(i32::try_from(child.id()).unwrap_or_default())
}

/// Stops a node agent gracefully (SIGTERM; it stops its services), then SIGKILLs whatever is
/// left in the namespace after `grace`. Without a known agent, only the latter.
pub fn stop_agent(pid: Option<i32>, ns: &str, grace: Duration) {
    if let Some(pid) = pid {
        sys::terminate(pid);
        let deadline = Instant::now() + grace;
        while sys::alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    kill_all(ns);
}

/// SIGKILLs every process in the namespace (a node losing power).
pub fn kill_all(ns: &str) -> usize {
    let pids = sys::pids_in(ns);
    for pid in &pids {
        sys::kill(*pid);
    }
    pids.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_plane_configs_name_every_peer_and_workers_run_the_network_agent() {
        let topo = Topology::default();
        let lab = Path::new("/lab");
        let s = Secrets {
            admin_password: "/lab/s/a".into(),
            platform_api_key: "/lab/s/k".into(),
            s3_gateway_api_key: "/lab/s/g".into(),
            node_api_keys: vec![("node04".into(), "/lab/s/n4".into()), ("node05".into(), "/lab/s/n5".into())],
            tls: "/lab/s/tls".into(),
        };
        let c = config(lab, &topo, topo.node("node02").unwrap(), &s).unwrap();
        let parsed: toml::Table = toml::from_str(&c).unwrap();
        assert_eq!(parsed["admin_listen"].as_str(), Some("10.231.0.12:9100"));
        let chainfire = parsed["service"]["chainfire"]["args"].as_array().unwrap();
        assert!(chainfire.iter().any(|a| a.as_str().unwrap().contains("node03=https://10.231.0.13:2380")));
        assert!(chainfire.iter().any(|a| a.as_str() == Some("--tls-dir=/lab/s/tls/node02")), "its own certificate");
        let iam = parsed["service"]["iam"]["args"].as_array().unwrap();
        assert!(iam.iter().any(|a| a.as_str() == Some("--platform-api-key-file=/lab/s/k")));
        assert!(iam.iter().any(|a| a.as_str() == Some("--node-api-key-file=node05=/lab/s/n5")));
        assert!(iam.iter().any(|a| a.as_str() == Some("--object-gateway-api-key-file=/lab/s/g")));
        let s3 = parsed["service"]["lightningstor"]["args"].as_array().unwrap();
        assert!(s3.iter().any(|a| a.as_str() == Some("--api-key-file=/lab/s/g")), "the gateway's own key");
        assert!(s3.iter().any(|a| a.as_str().unwrap().contains("node03=https://10.231.0.13:8780")));
        let w: toml::Table = toml::from_str(&config(lab, &topo, topo.node("node05").unwrap(), &s).unwrap()).unwrap();
        assert_eq!(w["roles"].as_array().unwrap()[0].as_str(), Some("worker"));
        let agent = w["service"]["prismnet-agent"]["args"].as_array().unwrap();
        assert!(agent.iter().any(|a| a.as_str() == Some("--underlay-ip=10.231.0.15")));
        let vmm = w["service"]["plasmavmc-agent"]["args"].as_array().unwrap();
        assert!(vmm.iter().any(|a| a.as_str() == Some("--listen=10.231.0.15:8681")));
        for args in [agent, vmm] {
            assert!(args.iter().any(|a| a.as_str() == Some("--api-key-file=/lab/s/n5")), "the worker's own key");
            assert!(!args.iter().any(|a| a.as_str().unwrap().contains("/lab/s/k")), "never the platform key");
            assert!(args.iter().any(|a| a.as_str() == Some("--tls-dir=/lab/s/tls/node05")), "the worker's certificate");
        }
        let g: toml::Table = toml::from_str(&config(lab, &topo, topo.node("node06").unwrap(), &s).unwrap()).unwrap();
        assert!(g["service"].as_table().unwrap().is_empty(), "nothing of the gateway is built yet");
    }
}
