//! Running `ip`, `bridge`, `nft`, `sysctl` and `dnsmasq` on the host the agent manages — its
//! own network namespace, or (for tests and the test cluster) a named one.

use std::process::Stdio;

use serde::Deserialize;

/// A failed system command, with its command line and stderr.
#[derive(Debug, thiserror::Error)]
#[error("`{command}` failed: {detail}")]
pub struct CommandError {
    /// The command line.
    pub command: String,
    /// stderr or the spawn error.
    pub detail: String,
}

/// The host: a network namespace (or the agent's own).
#[derive(Debug, Clone)]
pub struct HostNs {
    /// `None`: the agent's own namespace.
    pub netns: Option<String>,
}

/// A link as `ip -j link` shows it.
#[derive(Debug, Clone, Deserialize)]
pub struct Link {
    /// Name.
    pub ifname: String,
    /// Its bridge, if enslaved.
    #[serde(default)]
    pub master: Option<String>,
    /// MAC.
    #[serde(default)]
    pub address: Option<String>,
}

impl HostNs {
    /// Runs `program args` in the host namespace.
    pub async fn run(&self, program: &str, args: &[&str]) -> Result<String, CommandError> {
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = tokio::process::Command::new("ip");
                c.args(["netns", "exec", ns, program]);
                c
            }
            None => tokio::process::Command::new(program),
        };
        cmd.args(args).stdin(Stdio::null());
        let line = || {
            format!(
                "{}{program} {}",
                self.netns.as_ref().map(|n| format!("[{n}] ")).unwrap_or_default(),
                args.join(" ")
            )
        };
        let out = cmd.output().await.map_err(|e| CommandError { command: line(), detail: e.to_string() })?;
        if !out.status.success() {
            return Err(CommandError {
                command: line(),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
            });
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// `ip args` in the host namespace.
    pub async fn ip(&self, args: &[&str]) -> Result<String, CommandError> {
        self.run("ip", args).await
    }

    /// Every link of the host.
    pub async fn links(&self) -> Result<Vec<Link>, CommandError> {
        let out = self.ip(&["-j", "link", "show"]).await?;
        serde_json::from_str(&out)
            .map_err(|e| CommandError { command: "ip -j link show".into(), detail: e.to_string() })
    }

    /// `ip args` inside another namespace `ns` (created by the agent or a workload).
    pub async fn ip_in(ns: &str, args: &[&str]) -> Result<String, CommandError> {
        HostNs { netns: Some(ns.to_owned()) }.ip(args).await
    }

    /// The namespaces of the machine.
    pub async fn namespaces() -> Result<Vec<String>, CommandError> {
        let out = HostNs { netns: None }.ip(&["netns", "list"]).await?;
        Ok(out.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect())
    }

    /// Creates a namespace (namespace names are machine-wide, whichever namespace the agent
    /// runs in).
    pub async fn add_namespace(ns: &str) -> Result<(), CommandError> {
        HostNs { netns: None }.ip(&["netns", "add", ns]).await.map(|_| ())
    }

    /// The processes running in a namespace (`ip netns pids`).
    pub async fn pids_in(ns: &str) -> Result<Vec<i32>, CommandError> {
        let out = HostNs { netns: None }.ip(&["netns", "pids", ns]).await?;
        Ok(out.lines().filter_map(|l| l.trim().parse().ok()).collect())
    }

    /// Deletes a namespace.
    pub async fn delete_namespace(ns: &str) -> Result<(), CommandError> {
        HostNs { netns: None }.ip(&["netns", "del", ns]).await.map(|_| ())
    }
}
