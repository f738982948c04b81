//! The cluster's lifecycle: validate, build, start, status, stop, clean.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;

use crate::nodes::{self, Secrets};
use crate::state::{self, LabState};
use crate::topology::{Node, Role, Topology, ports};
use crate::{network, sys};

/// Prints progress lines with the time since the operation started.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    start: Instant,
}

impl Default for Progress {
    fn default() -> Self {
        Self { start: Instant::now() }
    }
}

impl Progress {
    /// Prints `[  1.2s] message` on stderr (stdout stays for results, e.g. JSON reports).
    pub fn say(&self, message: impl std::fmt::Display) {
        eprintln!("[{:>6.1}s] {message}", self.start.elapsed().as_secs_f64());
    }
}

/// The services of a role this build runs, with their admin ports.
pub fn services_of(role: Role) -> &'static [(&'static str, u16)] {
    match role {
        Role::ControlPlane => &[
            ("chainfire", ports::CHAINFIRE_ADMIN),
            ("flaredb", ports::FLAREDB_ADMIN),
            ("iam", ports::IAM_ADMIN),
            ("prismnet", ports::PRISMNET_ADMIN),
            ("plasmavmc", ports::PLASMAVMC_ADMIN),
            ("lightningstor-node", ports::LIGHTNINGSTOR_NODE_ADMIN),
            ("lightningstor", ports::LIGHTNINGSTOR_ADMIN),
        ],
        Role::Worker => {
            &[("prismnet-agent", ports::PRISMNET_AGENT_ADMIN), ("plasmavmc-agent", ports::PLASMAVMC_AGENT_ADMIN)]
        }
        Role::Gateway => &[],
    }
}

/// The test cluster on this machine.
#[derive(Debug, Clone)]
pub struct Lab {
    /// The state directory.
    pub dir: PathBuf,
    /// What the cluster is.
    pub topo: Topology,
}

/// One prerequisite and whether it holds.
#[derive(Debug, Clone, Serialize)]
pub struct Prerequisite {
    /// What was checked.
    pub what: String,
    /// `Ok(detail)` or `Err(problem and fix)`.
    pub outcome: Result<String, String>,
}

impl Lab {
    /// The lab in `${ULTRACLOUD_LAB_DIR:-~/.ultracloud-test-cluster}`.
    pub fn open() -> anyhow::Result<Self> {
        Ok(Self { dir: state::lab_dir()?, topo: Topology::default() })
    }

    /// The binary the nodes run.
    pub fn binary(&self) -> PathBuf {
        self.dir.join("bin").join("ultracloud")
    }

    /// The guest image VMs of the smoke checks boot (made by [`Lab::build`]).
    pub fn guest_image_dir(&self) -> PathBuf {
        self.dir.join("guest-image")
    }

    /// The shared secrets, made when missing. This process then holds the harness's own
    /// cluster certificate: every client it builds speaks TLS to the lab with it.
    pub fn secrets(&self) -> anyhow::Result<Secrets> {
        let secrets = nodes::ensure_secrets(&self.dir, &self.topo)?;
        ultracloud_tls::client::install_dir(&secrets.admin_tls_dir())?;
        Ok(secrets)
    }

    /// A node by name, or an error listing the names.
    pub fn node(&self, name: &str) -> anyhow::Result<&Node> {
        self.topo.node(name).with_context(|| {
            let names: Vec<&str> = self.topo.nodes.iter().map(|n| n.name.as_str()).collect();
            format!("no node {name:?}; nodes are {}", names.join(", "))
        })
    }

    /// Checks the definition and the host's prerequisites without changing anything.
    pub fn validate(&self) -> Vec<Prerequisite> {
        let mut out = Vec::new();
        let mut check = |what: &str, outcome: Result<String, String>| {
            out.push(Prerequisite { what: what.to_owned(), outcome });
        };
        check(
            "cluster definition",
            self.topo
                .validate()
                .map(|()| format!("{} nodes on {}, 3 control-plane", self.topo.nodes.len(), self.topo.cidr())),
        );
        check(
            "running as root",
            if sys::is_root() { Ok("yes".into()) } else { Err("run as root (namespaces need CAP_NET_ADMIN)".into()) },
        );
        check(
            "ip (iproute2)",
            sys::ip(&["-V"]).map(|v| v.trim().to_owned()).map_err(|e| format!("{e:#}; apt-get install iproute2")),
        );
        check(
            "nftables (partitions)",
            sys::run("nft", &["--version"])
                .map(|v| v.trim().to_owned())
                .map_err(|e| format!("{e:#}; apt-get install nftables")),
        );
        for (tool, package) in [("dnsmasq", "dnsmasq"), ("busybox", "busybox-static")] {
            check(
                tool,
                sys::run("sh", &["-c", &format!("command -v {tool}")])
                    .map(|p| p.trim().to_owned())
                    .map_err(|_| format!("{tool} not found; apt-get install {package}")),
            );
        }
        check(
            "network namespaces",
            if Path::new("/proc/self/ns/net").exists() && (sys::namespaces().is_ok()) {
                Ok("supported".into())
            } else {
                Err("this kernel or container does not allow network namespaces".into())
            },
        );
        check(
            "lab network free on the host",
            match network::conflicting_routes(&self.topo) {
                Ok(c) if c.is_empty() => Ok(format!("no route overlaps {}", self.topo.cidr())),
                Ok(c) => Err(format!("routes overlap {}: {}", self.topo.cidr(), c.join("; "))),
                Err(e) => Err(format!("{e:#}")),
            },
        );
        let bin = self.binary();
        check(
            "node binary",
            if bin.exists() {
                Ok(bin.display().to_string())
            } else {
                Ok(format!("not built yet; `start` copies this binary to {}", bin.display()))
            },
        );
        out
    }

    /// Builds the release binary from the source tree (`cargo build --release -p ultracloud`)
    /// and installs it as the nodes' binary. Nodes never compile.
    pub fn build(&self, source: &Path, progress: &Progress) -> anyhow::Result<PathBuf> {
        progress.say(format!("building the release binary in {}", source.display()));
        let status = std::process::Command::new("cargo")
            .args(["build", "--release", "-p", "ultracloud"])
            .current_dir(source)
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            bail!("cargo build failed ({status})");
        }
        let target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| source.join("target"), PathBuf::from);
        let bin = self.install(&target.join("release").join("ultracloud"), progress)?;
        self.build_guest_image(source, &target, progress)?;
        Ok(bin)
    }

    /// Builds the static guest agent and, from it, the guest image the smoke VMs boot.
    fn build_guest_image(&self, source: &Path, target: &Path, progress: &Progress) -> anyhow::Result<()> {
        progress.say("building the static guest agent");
        let status = std::process::Command::new("cargo")
            .args(["build", "--release", "-p", "ultracloud-guest-agent", "--target", "x86_64-unknown-linux-gnu"])
            .env("RUSTFLAGS", "-C target-feature=+crt-static")
            .current_dir(source)
            .status()
            .context("cannot run cargo")?;
        if !status.success() {
            bail!("building the guest agent failed ({status})");
        }
        let mut opts =
            ultracloud_guest_image::BuildOptions::new(target.join(ultracloud_guest_image::STATIC_AGENT_TARGET_PATH));
        opts.out_dir = self.guest_image_dir();
        opts.disk_size_mib = 64;
        ultracloud_guest_image::build(&opts, |line| progress.say(format!("guest image: {line}")))?;
        progress.say(format!("guest image in {}", opts.out_dir.display()));
        Ok(())
    }

    /// Installs `bin` as the nodes' binary (copied, then renamed into place: running nodes
    /// keep the old file).
    pub fn install(&self, bin: &Path, progress: &Progress) -> anyhow::Result<PathBuf> {
        let dest = self.binary();
        std::fs::create_dir_all(dest.parent().unwrap_or(&self.dir))?;
        let tmp = dest.with_extension("new");
        std::fs::copy(bin, &tmp).with_context(|| format!("copying {}", bin.display()))?;
        std::fs::rename(&tmp, &dest)?;
        progress.say(format!("installed {} as the nodes' binary", dest.display()));
        Ok(dest)
    }

    /// The running node agents of the state file (name, pid).
    pub fn running_agents(&self) -> anyhow::Result<Vec<(String, i32)>> {
        Ok(LabState::load(&self.dir)?
            .map(|s| s.agents.into_iter().filter(|(_, pid)| sys::alive(*pid)).collect())
            .unwrap_or_default())
    }

    /// Starts the cluster: network, node agents in dependency order, readiness.
    pub fn start<'a>(&'a self, progress: &'a Progress) -> ultracloud_runtime::Entry<'a, anyhow::Result<()>> {
        Box::pin(self.start_all(progress))
    }

    async fn start_all(&self, progress: &Progress) -> anyhow::Result<()> {
        if !sys::is_root() {
            bail!("`ultracloud cluster start` must run as root (it creates network namespaces)");
        }
        self.topo.validate().map_err(|e| anyhow::anyhow!("cluster definition: {e}"))?;
        let running = self.running_agents()?;
        if !running.is_empty() {
            let list: Vec<String> = running.iter().map(|(n, p)| format!("{n} (pid {p})")).collect();
            bail!("a cluster is already running: {}; `ultracloud cluster stop` or `clean` first", list.join(", "));
        }
        if !self.binary().exists() {
            self.install(&std::env::current_exe()?, progress)?;
        }
        let have_network =
            sys::namespaces()?.iter().filter(|n| network::is_ours(n)).count() == self.topo.nodes.len() + 1;
        if have_network {
            progress.say("lab network exists (kept by `stop`); reusing it");
        } else {
            network::destroy(&self.topo)?; // partial leftovers of a crashed run
            if let Some(c) = network::conflicting_routes(&self.topo)?.first() {
                bail!("the lab network {} overlaps a host route: {c}", self.topo.cidr());
            }
            network::create(&self.topo)?;
            progress.say(format!(
                "network: bridge {} in {}, nodes on {}, host link {} {}",
                crate::topology::BRIDGE,
                crate::topology::NET_NS,
                self.topo.cidr(),
                crate::topology::HOST_LINK,
                self.topo.host_ip()
            ));
        }
        let secrets = self.secrets()?;
        let mut st = LabState { started: ultracloud_iam::service::now_secs(), ..Default::default() };
        let (control, rest): (Vec<&Node>, Vec<&Node>) =
            self.topo.nodes.iter().partition(|n| n.role == Role::ControlPlane);
        for n in &control {
            self.start_node(n, &secrets, &mut st, progress)?;
        }
        self.wait_control_plane(progress).await?;
        for n in &rest {
            self.start_node(n, &secrets, &mut st, progress)?;
        }
        for n in &self.topo.nodes {
            wait_until(Duration::from_secs(60), &format!("{} agent ready", n.name), || async {
                http_ok(&format!("http://{}/readyz", n.addr(ports::AGENT))).await
            })
            .await
            .with_context(|| self.log_hint(n))?;
        }
        progress.say("every node is ready");
        let path = self.endpoints(&secrets).write(&self.dir).context("writing endpoints.json")?;
        progress.say(format!("endpoints and credentials: {}", path.display()));
        Ok(())
    }

    /// Where the cluster answers: every control-plane node's APIs, the CA, the admin's
    /// credentials (`endpoints.json`).
    pub fn endpoints(&self, secrets: &Secrets) -> ultracloud_runtime::endpoints::Endpoints {
        use ultracloud_runtime::endpoints::{Admin, Endpoints};
        let admin = Admin {
            user: "admin".into(),
            password_file: secrets.admin_password.clone(),
            tls_dir: secrets.admin_tls_dir(),
        };
        let mut e = Endpoints::new("cluster", secrets.admin_tls_dir().join(ultracloud_tls::CA_FILE), admin);
        for n in self.topo.nodes.iter().filter(|n| n.role == Role::ControlPlane) {
            let url = |port| format!("https://{}", n.addr(port));
            e.add("chainfire", "etcd", url(ports::CHAINFIRE));
            for (service, port) in [
                ("flaredb", ports::FLAREDB),
                ("iam", ports::IAM),
                ("prismnet", ports::PRISMNET),
                ("plasmavmc", ports::PLASMAVMC),
            ] {
                e.add(service, "http", url(port));
            }
            e.add("lightningstor", "s3", url(ports::LIGHTNINGSTOR));
        }
        e
    }

    fn start_node(&self, n: &Node, secrets: &Secrets, st: &mut LabState, progress: &Progress) -> anyhow::Result<()> {
        nodes::write_config(&self.dir, &self.topo, n, secrets)?;
        let pid = nodes::spawn_agent(&self.dir, &self.binary(), n)?;
        st.agents.insert(n.name.clone(), pid);
        st.save(&self.dir)?; // saved at once: a crash of the harness still finds this agent
        progress.say(format!("{} ({}) agent started, pid {pid}", n.name, n.role.agent_role()));
        Ok(())
    }

    /// Restarts one node's agent (after a power loss), keeping its data.
    pub fn restart_node(&self, n: &Node) -> anyhow::Result<i32> {
        let secrets = self.secrets()?;
        let mut st = LabState::load(&self.dir)?.unwrap_or_default();
        nodes::write_config(&self.dir, &self.topo, n, &secrets)?;
        let pid = nodes::spawn_agent(&self.dir, &self.binary(), n)?;
        st.agents.insert(n.name.clone(), pid);
        st.save(&self.dir)?;
        Ok(pid)
    }

    fn log_hint(&self, n: &Node) -> String {
        format!(
            "see {}/agent.log and {}/logs/",
            nodes::node_dir(&self.dir, n).display(),
            nodes::node_dir(&self.dir, n).display()
        )
    }

    async fn wait_control_plane(&self, progress: &Progress) -> anyhow::Result<()> {
        let cp = self.topo.control_plane();
        let boot = Duration::from_secs(120);
        for (svc, port) in services_of(Role::ControlPlane) {
            for n in &cp {
                wait_until(boot, &format!("{svc} on {}", n.name), || async {
                    http_ok(&format!("http://{}/readyz", n.addr(*port))).await
                })
                .await
                .with_context(|| self.log_hint(n))?;
            }
            progress
                .say(format!("{svc}: ready on {}", cp.iter().map(|n| n.name.as_str()).collect::<Vec<_>>().join(", ")));
        }
        Ok(())
    }

    /// Stops every node agent (they stop their services) and keeps the state and network.
    pub fn stop(&self, progress: &Progress) -> anyhow::Result<usize> {
        let st = LabState::load(&self.dir)?.unwrap_or_default();
        let mut stopped = 0;
        for n in &self.topo.nodes {
            let pid = st.agents.get(&n.name).copied().filter(|p| sys::alive(*p));
            let leftovers = !sys::pids_in(&n.ns()).is_empty();
            if pid.is_none() && !leftovers {
                continue;
            }
            nodes::stop_agent(pid, &n.ns(), Duration::from_secs(15));
            progress.say(format!("{} stopped", n.name));
            stopped += 1;
        }
        if let Some(mut st) = LabState::load(&self.dir)? {
            st.agents.clear();
            st.save(&self.dir)?;
        }
        // Nothing answers there any more.
        let _ = std::fs::remove_file(self.dir.join(ultracloud_runtime::endpoints::FILE));
        Ok(stopped)
    }

    /// Stops everything and removes namespaces, links and the state directory. Works after a
    /// crash of the harness: leftovers are found by their names.
    pub fn clean(&self, progress: &Progress) -> anyhow::Result<()> {
        if !sys::is_root() {
            bail!("`ultracloud cluster clean` must run as root");
        }
        if let Ok(n) = self.stop(progress)
            && n > 0
        {
            progress.say(format!("{n} nodes stopped"));
        }
        for what in network::destroy(&self.topo)? {
            progress.say(format!("removed {what}"));
        }
        // DHCP servers outside the lab's namespaces (one left behind when its namespace went
        // first) are found by their files.
        let strays = ultracloud_runtime::process::find_with_path_arg("dnsmasq", "--pid-file", &self.dir);
        if !strays.is_empty() {
            ultracloud_runtime::process::stop(&strays, std::time::Duration::from_secs(2));
            progress.say(format!("stopped {} stray dnsmasq processes", strays.len()));
        }
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).with_context(|| format!("removing {}", self.dir.display()))?;
            progress.say(format!("removed {}", self.dir.display()));
        }
        Ok(())
    }

    /// The log of a node's service (`agent` for the node agent itself).
    pub fn log_path(&self, node: &Node, service: &str) -> PathBuf {
        let dir = nodes::node_dir(&self.dir, node);
        if service == "agent" { dir.join("agent.log") } else { dir.join("logs").join(format!("{service}.log")) }
    }

    /// One row per service (or per node whose agent is down).
    pub async fn status(&self) -> Vec<StatusRow> {
        let mut rows = Vec::new();
        for n in &self.topo.nodes {
            match ultracloud_node_agent::client::fetch_status(n.addr(ports::AGENT)).await {
                Err(e) => rows.push(StatusRow {
                    node: n.name.clone(),
                    role: n.role.agent_role().into(),
                    service: "(agent)".into(),
                    state: "down".into(),
                    pid: None,
                    restarts: 0,
                    health: format!("{e}"),
                }),
                Ok(status) => {
                    if status.services.is_empty() {
                        rows.push(StatusRow {
                            node: n.name.clone(),
                            role: n.role.agent_role().into(),
                            service: "(agent)".into(),
                            state: "running".into(),
                            pid: None,
                            restarts: 0,
                            health: "ok (no services of this role are built yet)".into(),
                        });
                    }
                    for s in status.services {
                        let port = services_of(n.role).iter().find(|(name, _)| *name == s.name).map(|(_, p)| *p);
                        let health = match port {
                            Some(p) => readyz(n.addr(p)).await,
                            None => "-".into(),
                        };
                        rows.push(StatusRow {
                            node: n.name.clone(),
                            role: n.role.agent_role().into(),
                            service: s.name.clone(),
                            state: serde_json::to_value(s.state)
                                .ok()
                                .and_then(|v| v.as_str().map(str::to_owned))
                                .unwrap_or_default(),
                            pid: s.pid,
                            restarts: s.restarts,
                            health,
                        });
                    }
                }
            }
        }
        rows
    }
}

/// A row of `cluster status`.
#[derive(Debug, Clone, Serialize)]
pub struct StatusRow {
    /// Node.
    pub node: String,
    /// Its role.
    pub role: String,
    /// Service.
    pub service: String,
    /// Supervisor state.
    pub state: String,
    /// PID.
    pub pid: Option<u32>,
    /// Restarts so far.
    pub restarts: u32,
    /// `/readyz` of the service.
    pub health: String,
}

async fn readyz(addr: SocketAddr) -> String {
    match ultracloud_tls::client::http_client()
        .get(format!("http://{addr}/readyz"))
        .timeout(Duration::from_secs(3))
        .send()
        .await
    {
        Ok(r) if r.status().is_success() => "ready".into(),
        Ok(r) => format!("not ready ({})", r.status().as_u16()),
        Err(_) => "unreachable".into(),
    }
}

/// Whether a GET of `url` answers 2xx within 3 s.
pub async fn http_ok(url: &str) -> bool {
    ultracloud_tls::client::http_client()
        .get(url)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
}

/// Polls `check` every 250 ms until it holds; fails naming `what` after `bound`.
pub async fn wait_until<F, Fut>(bound: Duration, what: &str, mut check: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return Ok(start.elapsed());
        }
        if start.elapsed() >= bound {
            bail!("{what}: not within {bound:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_clusters_endpoints_list_every_control_plane_replica() {
        let lab = Lab { dir: "/lab".into(), topo: Topology::default() };
        let secrets = Secrets {
            admin_password: "/lab/s/a".into(),
            platform_api_key: "/lab/s/k".into(),
            s3_gateway_api_key: "/lab/s/g".into(),
            node_api_keys: vec![],
            tls: "/lab/s/tls".into(),
        };
        let e = lab.endpoints(&secrets);
        let control = lab.topo.nodes.iter().filter(|n| n.role == Role::ControlPlane).count();
        assert!(control >= 3);
        for (service, protocol) in [
            ("chainfire", "etcd"),
            ("flaredb", "http"),
            ("iam", "http"),
            ("plasmavmc", "http"),
            ("lightningstor", "s3"),
        ] {
            assert_eq!(e.services[service][protocol].len(), control, "{service}");
        }
        let first = lab.topo.nodes.iter().find(|n| n.role == Role::ControlPlane).unwrap();
        assert_eq!(e.services["iam"]["http"][0], format!("https://{}", first.addr(ports::IAM)));
        assert_eq!(e.ca_file, Path::new("/lab/s/tls/admin/ca.pem"));
        assert_eq!(e.admin.tls_dir, Path::new("/lab/s/tls/admin"));
    }
}
