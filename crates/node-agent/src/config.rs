//! The static node configuration (`node.toml`) and how it resolves to an assignment.
//!
//! ```toml
//! name = "node01"
//! data_dir = "/var/lib/ultracloud"
//! admin_listen = "127.0.0.1:9100"
//! roles = ["control-plane"]
//!
//! [service.chainfire]            # tune a role's service
//! args = ["--name", "node01"]
//!
//! [service.web]                  # or run any program under supervision
//! program = "/usr/bin/python3"
//! args = ["-m", "http.server", "8000"]
//! restart = "on-failure"
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use ultracloud_runtime::config::{ConfigError, Validate};

use crate::roles::Role;
use crate::spec::{RestartPolicy, ServiceSpec};

/// Default admin listener of the node agent.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9100";

/// The node's static configuration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NodeConfig {
    /// Node name (defaults to the host name).
    pub name: String,
    /// Root of the node's state: `<data_dir>/<service>/` per service, `<data_dir>/logs/`.
    pub data_dir: PathBuf,
    /// Admin listener (`/healthz`, `/readyz`, `/metrics`, `/version`, `/status`).
    pub admin_listen: SocketAddr,
    /// Roles of the node; each adds its services.
    pub roles: Vec<Role>,
    /// Per-service settings, and extra services by name.
    pub service: BTreeMap<String, ServiceConfig>,
    /// Default seconds between SIGTERM and SIGKILL when stopping a service.
    pub stop_timeout_secs: f64,
    /// Default log format passed to the services.
    pub log_format: ultracloud_runtime::logging::LogFormat,
}

/// Settings of one service in `node.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceConfig {
    /// `false` removes a service a role would add.
    pub enabled: bool,
    /// Program to run; by default this binary with the service name as subcommand.
    pub program: Option<PathBuf>,
    /// Arguments (after the subcommand when `program` is not set).
    pub args: Vec<String>,
    /// Extra environment.
    pub env: BTreeMap<String, String>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// Seconds between SIGTERM and SIGKILL (defaults to the node's `stop_timeout_secs`).
    pub stop_timeout_secs: Option<f64>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            program: None,
            args: Vec::new(),
            env: BTreeMap::new(),
            restart: RestartPolicy::Always,
            stop_timeout_secs: None,
        }
    }
}

impl Default for NodeConfig {
    fn default() -> Self {
        Self {
            name: hostname(),
            data_dir: ultracloud_runtime::data_dir::default_root(),
            // The literal is a valid socket address; a test below parses it.
            admin_listen: DEFAULT_ADMIN_LISTEN.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 9100))),
            roles: Vec::new(),
            service: BTreeMap::new(),
            stop_timeout_secs: 10.0,
            log_format: Default::default(),
        }
    }
}

/// The host name made into a valid node name (lowercase, `[a-z0-9-]`, at most 63 characters).
fn hostname() -> String {
    let raw = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let short = raw.trim().split('.').next().unwrap_or_default().to_ascii_lowercase();
    let name: String =
        short.chars().map(|c| if c.is_ascii_lowercase() || c.is_ascii_digit() { c } else { '-' }).take(63).collect();
    let name = name.trim_matches('-').to_owned();
    if name.is_empty() { "node".to_owned() } else { name }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
}

impl Validate for NodeConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        if !valid_name(&self.name) {
            return Err(ConfigError::invalid("name", &self.name, "1-63 characters of a-z, 0-9 and '-'"));
        }
        for (name, svc) in &self.service {
            if !valid_name(name) {
                return Err(ConfigError::invalid("service", name, "service names use a-z, 0-9 and '-'"));
            }
            if let Some(t) = svc.stop_timeout_secs
                && !(0.0..=3600.0).contains(&t)
            {
                return Err(ConfigError::invalid(&format!("service.{name}.stop_timeout_secs"), t, "0 to 3600 seconds"));
            }
        }
        if !(0.0..=3600.0).contains(&self.stop_timeout_secs) {
            return Err(ConfigError::invalid("stop_timeout_secs", self.stop_timeout_secs, "0 to 3600 seconds"));
        }
        Ok(())
    }
}

impl NodeConfig {
    /// Resolves roles and service settings to the services to run.
    ///
    /// `self_exe` is this binary; `available` the service subcommands it has. A service that is
    /// neither available nor given a `program` is an error when named explicitly, and a warning
    /// when it only comes from a role.
    pub fn assignment(&self, self_exe: &Path, available: &[&str]) -> Result<Vec<ServiceSpec>, ConfigError> {
        let mut names: Vec<String> = Vec::new();
        let mut from_role = BTreeSet::new();
        for role in &self.roles {
            for s in role.services() {
                if !names.iter().any(|n| n == s) {
                    names.push((*s).to_owned());
                    from_role.insert((*s).to_owned());
                }
            }
        }
        for name in self.service.keys() {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
        let mut specs = Vec::new();
        for name in names {
            let cfg = self.service.get(&name).cloned().unwrap_or_default();
            if !cfg.enabled {
                continue;
            }
            let (program, args) = match &cfg.program {
                Some(p) => (p.clone(), cfg.args.clone()),
                None if available.contains(&name.as_str()) => {
                    (self_exe.to_owned(), std::iter::once(name.clone()).chain(cfg.args.iter().cloned()).collect())
                }
                None if from_role.contains(&name) => {
                    tracing::warn!(service = %name, "a role of this node includes {name}, which this build does not provide yet; skipping it");
                    continue;
                }
                None => {
                    return Err(ConfigError::invalid(
                        &format!("service.{name}"),
                        &name,
                        &format!(
                            "not a service of this binary (it has: {}); set `program` to supervise another command",
                            available.join(", ")
                        ),
                    ));
                }
            };
            let mut env = BTreeMap::new();
            if cfg.program.is_none() {
                // Our own services take their data dir and log format from the node; flags in
                // `args` still win (flags > environment).
                env.insert("ULTRACLOUD_DATA_DIR".to_owned(), self.data_dir.join(&name).display().to_string());
                let fmt = match self.log_format {
                    ultracloud_runtime::logging::LogFormat::Human => "human",
                    ultracloud_runtime::logging::LogFormat::Json => "json",
                };
                env.insert("ULTRACLOUD_LOG_FORMAT".to_owned(), fmt.to_owned());
            }
            env.extend(cfg.env.clone());
            let stop = cfg.stop_timeout_secs.unwrap_or(self.stop_timeout_secs);
            specs.push(ServiceSpec {
                name,
                program,
                args,
                env,
                restart: cfg.restart,
                stop_timeout: Duration::from_secs_f64(stop),
            });
        }
        Ok(specs)
    }

    /// Directory of the service logs.
    pub fn logs_dir(&self) -> PathBuf {
        self.data_dir.join("logs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(toml_text: &str) -> NodeConfig {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(&p, toml_text).unwrap();
        #[derive(Serialize)]
        struct NoFlags {}
        ultracloud_runtime::config::load_with_env(Some(&p), &NoFlags {}, Vec::new()).unwrap()
    }

    #[test]
    fn default_admin_address_parses() {
        assert!(DEFAULT_ADMIN_LISTEN.parse::<SocketAddr>().is_ok());
    }

    #[test]
    fn roles_and_explicit_services_resolve() {
        let cfg = parse(
            r#"
            name = "node01"
            data_dir = "/srv/uc"
            roles = ["control-plane"]
            [service.flaredb]
            enabled = false
            [service.chainfire]
            args = ["--name", "node01"]
            [service.web]
            program = "/bin/sleep"
            args = ["100"]
            restart = "on-failure"
            "#,
        );
        let specs = cfg.assignment(Path::new("/usr/bin/ultracloud"), &["chainfire", "iam"]).unwrap();
        let names: Vec<&str> = specs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["chainfire", "iam", "web"], "flaredb disabled, prismnet/plasmavmc not in this build");
        assert_eq!(specs[0].args, ["chainfire", "--name", "node01"]);
        assert_eq!(specs[0].env["ULTRACLOUD_DATA_DIR"], "/srv/uc/chainfire");
        assert_eq!(specs[2].program, Path::new("/bin/sleep"));
        assert_eq!(specs[2].restart, RestartPolicy::OnFailure);
        assert!(!specs[2].env.contains_key("ULTRACLOUD_DATA_DIR"));
    }

    #[test]
    fn unknown_explicit_service_is_an_error() {
        let cfg = parse("name = \"n1\"\n[service.nosuch]\n");
        let err = cfg.assignment(Path::new("/x"), &["chainfire"]).unwrap_err().to_string();
        assert!(err.contains("service.nosuch") && err.contains("program"), "{err}");
    }

    #[test]
    fn bad_node_name_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("node.toml");
        std::fs::write(&p, "name = \"Node_1\"\n").unwrap();
        #[derive(Serialize)]
        struct NoFlags {}
        let err = ultracloud_runtime::config::load_with_env::<NodeConfig, _>(Some(&p), &NoFlags {}, Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("`name`") && err.contains("Node_1"), "{err}");
    }
}
