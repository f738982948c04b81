//! The quickstart's one-node stack: every service as a child process of this binary, with its
//! data and log under the quickstart directory, a network namespace for the worker's
//! dataplane (bridges, taps, dnsmasq, QEMU), and a state file so a kept stack can be stopped
//! later by PID.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::sys;
use anyhow::{Context, bail};
use serde::{Deserialize, Serialize};

/// The namespace the worker's dataplane and VMs live in.
pub const NETNS: &str = "ucqs";
/// The namespace standing in for a client on the tenant subnet.
pub const PROBE_NS: &str = "ucqs-probe";
/// The worker's name.
pub const HOST: &str = "quickstart";
/// How long a service may take to become ready.
pub const READY_BOUND: Duration = Duration::from_secs(60);

/// One service of the stack: its name, admin address (`/readyz`) and API address.
pub struct Service {
    /// `ultracloud <name>`.
    pub name: &'static str,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Its main listener, checked free before the start.
    pub api: SocketAddr,
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// The services in start order (each waits for the ones before it).
pub fn services() -> Vec<Service> {
    vec![
        Service { name: "chainfire", admin: addr(9101), api: addr(2379) },
        Service { name: "flaredb", admin: addr(9102), api: addr(2479) },
        Service { name: "iam", admin: addr(9103), api: addr(8480) },
        Service { name: "prismnet", admin: addr(9104), api: addr(8580) },
        Service { name: "prismnet-agent", admin: addr(9105), api: addr(9105) },
        Service { name: "plasmavmc", admin: addr(9106), api: addr(8680) },
        Service { name: "plasmavmc-agent", admin: addr(9107), api: addr(8681) },
        Service { name: "lightningstor-node", admin: addr(9108), api: addr(8780) },
        Service { name: "lightningstor", admin: addr(9109), api: addr(8790) },
    ]
}

/// What a kept stack leaves behind for `--stop`.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// (service, PID) of every child started.
    pub pids: Vec<(String, i32)>,
}

/// The stack's directory layout.
#[derive(Debug, Clone)]
pub struct Dirs {
    /// The root (`/var/lib/ultracloud/quickstart`).
    pub root: PathBuf,
}

impl Dirs {
    /// A service's data dir.
    pub fn data(&self, service: &str) -> PathBuf {
        self.root.join(service)
    }
    /// A service's log.
    pub fn log(&self, service: &str) -> PathBuf {
        self.root.join("logs").join(format!("{service}.log"))
    }
    /// The state file of a running stack.
    pub fn state(&self) -> PathBuf {
        self.root.join("state.json")
    }
    /// The admin password iam generated.
    pub fn admin_password(&self) -> PathBuf {
        self.data("iam").join("admin-password")
    }
    /// The platform API key iam generated (the controllers').
    pub fn platform_key(&self) -> PathBuf {
        self.data("iam").join("platform-api-key")
    }
    /// The S3 gateway's API key iam generated (the `s3-gateway` service account's).
    pub fn s3_gateway_key(&self) -> PathBuf {
        self.data("iam").join("s3-gateway-api-key")
    }
    /// The AWS shared-credentials file of the proof's S3 key pair (project demo/quickstart).
    pub fn s3_credentials(&self) -> PathBuf {
        self.root.join("s3-credentials")
    }
    /// The worker's own node-agent API key (its agents'), minted by [`Stack::prepare`].
    pub fn node_key(&self) -> PathBuf {
        self.root.join("secrets").join(format!("node-{HOST}-api-key"))
    }
    /// A TLS holder directory made by [`Stack::prepare`]: `ca` (the CA itself), `control-plane`
    /// (chainfire, flaredb, iam and the controllers), `worker` (the agents), `admin` (the
    /// quickstart's own client certificate, and an operator's).
    pub fn tls(&self, holder: &str) -> PathBuf {
        self.root.join("tls").join(holder)
    }
    /// The cluster CA certificate clients trust.
    pub fn ca_file(&self) -> PathBuf {
        self.tls("ca").join(ultracloud_tls::CA_FILE)
    }
}

/// The stack's base URL of a service's API: `https://127.0.0.1:<port>`.
pub fn api_url(port: u16) -> String {
    format!("https://127.0.0.1:{port}")
}

/// Where a kept stack answers (`endpoints.json` in its directory): the APIs, the CA, the
/// admin's credentials.
pub fn endpoints(dirs: &Dirs) -> ultracloud_runtime::endpoints::Endpoints {
    use ultracloud_runtime::endpoints::{Admin, Endpoints};
    let admin = Admin { user: "admin".into(), password_file: dirs.admin_password(), tls_dir: dirs.tls("admin") };
    let mut e = Endpoints::new("quickstart", dirs.ca_file(), admin);
    for s in services() {
        let protocol = match s.name {
            "chainfire" => "etcd",
            "flaredb" | "iam" | "prismnet" | "plasmavmc" => "http",
            "lightningstor" => "s3",
            _ => continue, // the agents' and storage node's listeners are the platform's own
        };
        e.add(s.name, protocol, api_url(s.api.port()));
    }
    e
}

/// Makes the one-box cluster CA and its three holders (the node is both control plane and
/// worker; its agents still get a worker's certificate, which chainfire and flaredb refuse).
fn issue_certificates(dirs: &Dirs) -> anyhow::Result<()> {
    use ultracloud_tls::{CertAuthority, IssueRequest, Role};
    let ca = CertAuthority::create("UltraCloud quickstart CA")?;
    ca.save(&dirs.tls("ca"))?;
    for (holder, role) in [("control-plane", Role::ControlPlane), ("worker", Role::Worker), ("admin", Role::Admin)] {
        let mut req = IssueRequest::new(holder, role);
        req.ips = vec![std::net::Ipv4Addr::LOCALHOST.into()];
        req.dns = vec!["localhost".into()];
        ca.issue(&req, &dirs.tls(holder))?;
    }
    Ok(())
}

/// The PIDs of a kept stack that are still alive.
pub fn running(dirs: &Dirs) -> Vec<(String, i32)> {
    let Ok(text) = std::fs::read_to_string(dirs.state()) else { return Vec::new() };
    let state: State = serde_json::from_str(&text).unwrap_or_default();
    state.pids.into_iter().filter(|(_, pid)| sys::alive(*pid)).collect()
}

/// The running stack: children by name.
#[derive(Debug, Default)]
pub struct Stack {
    /// (service, PID), in start order.
    pub pids: Vec<(String, i32)>,
    /// The accelerator the doctor found (`kvm` or `tcg`), handed to the VM agent so it does
    /// not probe again.
    pub accel: String,
}

impl Stack {
    /// Makes the namespace and an empty directory tree (an earlier run's data is removed).
    pub fn prepare(dirs: &Dirs) -> anyhow::Result<()> {
        if dirs.root.exists() {
            std::fs::remove_dir_all(&dirs.root).with_context(|| format!("removing {}", dirs.root.display()))?;
        }
        std::fs::create_dir_all(dirs.root.join("logs"))?;
        let secrets = dirs.node_key().parent().map(Path::to_path_buf).unwrap_or_default();
        ultracloud_runtime::data_dir::create_private_dir(&secrets)?;
        let key = ultracloud_iam::credential::mint(ultracloud_iam::credential::Kind::ApiKey);
        ultracloud_runtime::secret_file::write(&dirs.node_key(), &key.token)?;
        issue_certificates(dirs)?;
        remove_namespaces();
        sys::ip(&["netns", "add", NETNS])?;
        sys::ip(&["-n", NETNS, "link", "set", "lo", "up"])?;
        Ok(())
    }

    /// The arguments of a service. Every service speaks TLS, even on loopback: the stack is the
    /// cluster's security model in miniature.
    fn args(&self, dirs: &Dirs, name: &str) -> Vec<String> {
        let key = format!("--api-key-file={}", dirs.platform_key().display());
        // The worker's agents hold its own node credential, never the platform key.
        let node_key = format!("--api-key-file={}", dirs.node_key().display());
        let tls = |holder: &str| format!("--tls-dir={}", dirs.tls(holder).display());
        let iam = format!("--iam-endpoints={}", api_url(8480));
        let mut args = match name {
            "chainfire" => vec![
                "--listen-client-urls=https://127.0.0.1:2379".to_owned(),
                "--listen-peer-urls=https://127.0.0.1:2380".to_owned(),
                // chainfire's default admin port is a free one; the stack's is fixed.
                format!("--admin-listen={}", addr(9101)),
            ],
            "iam" => vec![format!("--node-api-key-file={HOST}={}", dirs.node_key().display())],
            "prismnet" => vec![key, iam],
            "plasmavmc" => vec![key, iam, format!("--prismnet-endpoints={}", api_url(8580))],
            "prismnet-agent" => vec![
                node_key,
                iam,
                format!("--controller={}", api_url(8580)),
                format!("--host={HOST}"),
                format!("--netns={NETNS}"),
            ],
            // One storage node: every block has one copy (the cluster keeps three).
            "lightningstor-node" => vec![format!("--name={HOST}")],
            "lightningstor" => vec![
                format!("--api-key-file={}", dirs.s3_gateway_key().display()),
                iam,
                format!("--nodes={HOST}={}", api_url(8780)),
            ],
            "plasmavmc-agent" => {
                let accel = if self.accel.is_empty() { "auto" } else { self.accel.as_str() };
                // 16 vCPUs: TCG guests idle most of the time; room for `bench vms` (10 VMs).
                vec![
                    node_key,
                    iam,
                    format!("--controller={}", api_url(8680)),
                    format!("--host={HOST}"),
                    format!("--netns={NETNS}"),
                    format!("--accel={accel}"),
                    "--vcpus=16".into(),
                ]
            }
            _ => Vec::new(),
        };
        args.push(tls(if name.ends_with("-agent") { "worker" } else { "control-plane" }));
        args
    }

    /// Starts `s` (in its own process group: a Ctrl-C reaches only the quickstart, which then
    /// stops the stack in order).
    pub fn start(&mut self, dirs: &Dirs, s: &Service) -> anyhow::Result<()> {
        use std::os::unix::process::CommandExt;
        if std::net::TcpListener::bind(s.api).is_err() || std::net::TcpListener::bind(s.admin).is_err() {
            bail!(
                "{}: port {} or {} on 127.0.0.1 is in use (another UltraCloud, or another program?)",
                s.name,
                s.api.port(),
                s.admin.port()
            );
        }
        let exe = std::env::current_exe().context("locating this binary")?;
        let log = std::fs::File::create(dirs.log(s.name))?;
        let child = Command::new(exe)
            .arg(s.name)
            .args(self.args(dirs, s.name))
            .env("ULTRACLOUD_DATA_DIR", dirs.data(s.name))
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .with_context(|| format!("starting {}", s.name))?;
        self.pids.push((s.name.to_owned(), i32::try_from(child.id()).unwrap_or_default()));
        Ok(())
    }

    /// Waits for `s` to answer `/readyz` with 200; fails early if it exits.
    pub async fn wait_ready(&self, dirs: &Dirs, s: &Service) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let pid = self.pids.iter().find(|(n, _)| n == s.name).map(|(_, p)| *p).unwrap_or_default();
        let url = format!("http://{}/readyz", s.admin);
        let http = ultracloud_tls::client::http_client();
        loop {
            if let Ok(r) = http.get(&url).timeout(Duration::from_secs(2)).send().await
                && r.status().is_success()
            {
                return Ok(started.elapsed());
            }
            if !sys::alive(pid) {
                bail!("{} exited during start; read {}", s.name, dirs.log(s.name).display());
            }
            if started.elapsed() > READY_BOUND {
                bail!(
                    "{} did not become ready within {}s; read {}",
                    s.name,
                    READY_BOUND.as_secs(),
                    dirs.log(s.name).display()
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Writes the state file (a kept stack).
    pub fn save(&self, dirs: &Dirs) -> anyhow::Result<()> {
        let state = State { pids: self.pids.clone() };
        std::fs::write(dirs.state(), serde_json::to_vec_pretty(&state)?)?;
        Ok(())
    }

    /// Stops every child (reverse order, SIGTERM, then SIGKILL after 10 s) and removes the
    /// namespaces with whatever still runs in them (QEMU, dnsmasq).
    pub fn stop(pids: &[(String, i32)]) {
        for (_, pid) in pids.iter().rev() {
            sys::terminate(*pid);
            let deadline = Instant::now() + Duration::from_secs(10);
            while sys::alive(*pid) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            if sys::alive(*pid) {
                sys::kill(*pid);
            }
        }
        remove_namespaces();
    }
}

/// Removes the quickstart's namespaces (and the DHCP namespaces its prismnet agent made),
/// killing what runs inside.
pub fn remove_namespaces() {
    let Ok(list) = sys::namespaces() else { return };
    for ns in list {
        if ns == NETNS || ns == PROBE_NS || ns.starts_with(&format!("pndhcp-{HOST}")) {
            for pid in sys::pids_in(&ns) {
                sys::kill(pid);
            }
            let _ = sys::ip(&["netns", "del", &ns]);
        }
    }
}

/// Whether `path` exists (for messages).
pub fn shown(path: &Path) -> String {
    path.display().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kept_stack_describes_its_apis_ca_and_admin_credentials() {
        let dirs = Dirs { root: "/qs".into() };
        let e = endpoints(&dirs);
        assert_eq!(e.stack, "quickstart");
        assert_eq!(e.ca_file, dirs.ca_file());
        assert_eq!(e.admin.password_file, dirs.admin_password());
        assert_eq!(e.services["chainfire"]["etcd"], vec!["https://127.0.0.1:2379".to_owned()]);
        assert_eq!(e.services["iam"]["http"], vec!["https://127.0.0.1:8480".to_owned()]);
        let names: Vec<&str> = e.services.keys().map(String::as_str).collect();
        assert_eq!(e.services["lightningstor"]["s3"], vec!["https://127.0.0.1:8790".to_owned()]);
        assert_eq!(
            names,
            ["chainfire", "flaredb", "iam", "lightningstor", "plasmavmc", "prismnet"],
            "no agent or storage-node listener"
        );
    }
}
