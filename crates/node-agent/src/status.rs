//! The node's report of its services, as served on `/status` and printed by
//! `ultracloud node status`.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Lifecycle state of a supervised service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ServiceState {
    /// Being spawned.
    Starting,
    /// The process is alive.
    Running,
    /// It exited and waits out its backoff before the next start.
    Restarting,
    /// Being stopped by the agent.
    Stopping,
    /// It exited cleanly and its policy does not restart it, or the agent stopped it.
    Stopped,
    /// It exited with a failure and its policy does not restart it.
    Failed,
}

impl std::fmt::Display for ServiceState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match self {
            Self::Starting => "starting",
            Self::Running => "running",
            Self::Restarting => "restarting",
            Self::Stopping => "stopping",
            Self::Stopped => "stopped",
            Self::Failed => "failed",
        };
        f.write_str(s)
    }
}

/// How a process ended.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExitInfo {
    /// Exit code, when it exited.
    pub code: Option<i32>,
    /// Signal number, when a signal killed it.
    pub signal: Option<i32>,
    /// Readable form: `exit code 1`, `killed by SIGKILL`, `spawn failed: …`.
    pub description: String,
    /// Unix time (seconds) of the exit.
    pub at: u64,
    /// How long the process had run, in seconds.
    pub ran_secs: f64,
}

impl ExitInfo {
    /// Whether this exit counts as a failure for the restart policy.
    pub fn failed(&self) -> bool {
        self.code != Some(0)
    }
}

/// State of one service.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceStatus {
    /// Service name.
    pub name: String,
    /// Current state.
    pub state: ServiceState,
    /// PID while running.
    pub pid: Option<u32>,
    /// Restarts since the agent started it.
    pub restarts: u32,
    /// The last exit, if any.
    pub last_exit: Option<ExitInfo>,
    /// Its log file.
    pub log: PathBuf,
}

/// The answer of `/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeStatus {
    /// Node name.
    pub node: String,
    /// Services, sorted by name.
    pub services: Vec<ServiceStatus>,
}

impl NodeStatus {
    /// A fixed-width table for terminals.
    pub fn render_table(&self) -> String {
        let mut out = format!("node {}\n", self.node);
        out.push_str(&format!("{:<20} {:<11} {:>8} {:>8}  {}\n", "SERVICE", "STATE", "PID", "RESTARTS", "LAST EXIT"));
        for s in &self.services {
            let pid = s.pid.map(|p| p.to_string()).unwrap_or_else(|| "-".into());
            let exit = s.last_exit.as_ref().map(|e| e.description.as_str()).unwrap_or("-");
            out.push_str(&format!("{:<20} {:<11} {:>8} {:>8}  {}\n", s.name, s.state, pid, s.restarts, exit));
        }
        if self.services.is_empty() {
            out.push_str("(no services assigned)\n");
        }
        out
    }
}
