//! The state directory (`${ULTRACLOUD_LAB_DIR:-~/.ultracloud-test-cluster}`) and its state file.
//!
//! ```text
//! <lab>/cluster.json          which node agents run (pid per node)
//! <lab>/bin/ultracloud        the binary the nodes run (copied by `build`/`start`)
//! <lab>/secrets/              admin password and platform API key (0600)
//! <lab>/<node>/node.toml      the node agent's configuration
//! <lab>/<node>/agent.log      the node agent's own output
//! <lab>/<node>/logs/<svc>.log each service's output
//! <lab>/<node>/<svc>/         each service's data
//! <lab>/reports/<time>/       smoke reports and the logs saved on failure
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde::{Deserialize, Serialize};

/// The lab directory.
pub fn lab_dir() -> anyhow::Result<PathBuf> {
    if let Some(d) = std::env::var_os("ULTRACLOUD_LAB_DIR") {
        return Ok(PathBuf::from(d));
    }
    let home = std::env::var_os("HOME").context("HOME is not set; set ULTRACLOUD_LAB_DIR")?;
    Ok(PathBuf::from(home).join(".ultracloud-test-cluster"))
}

/// What runs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabState {
    /// When the cluster was started (seconds since the epoch).
    pub started: u64,
    /// Node agent PID per node name.
    pub agents: BTreeMap<String, i32>,
}

fn file(dir: &Path) -> PathBuf {
    dir.join("cluster.json")
}

impl LabState {
    /// The state in `dir`, if a cluster was started there.
    pub fn load(dir: &Path) -> anyhow::Result<Option<Self>> {
        match std::fs::read(file(dir)) {
            Ok(b) => {
                Ok(Some(serde_json::from_slice(&b).with_context(|| format!("{} is corrupt", file(dir).display()))?))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", file(dir).display())),
        }
    }

    /// Writes it (atomically: a crash leaves the old or the new file, never half of one).
    pub fn save(&self, dir: &Path) -> anyhow::Result<()> {
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join("cluster.json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, file(dir)).with_context(|| format!("writing {}", file(dir).display()))
    }

    /// Removes the state file.
    pub fn remove(dir: &Path) -> anyhow::Result<()> {
        match std::fs::remove_file(file(dir)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.into()),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_is_absent_at_first() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(LabState::load(dir.path()).unwrap(), None);
        let mut s = LabState { started: 5, ..Default::default() };
        s.agents.insert("node01".into(), 42);
        s.save(dir.path()).unwrap();
        assert_eq!(LabState::load(dir.path()).unwrap(), Some(s));
        LabState::remove(dir.path()).unwrap();
        LabState::remove(dir.path()).unwrap();
        assert_eq!(LabState::load(dir.path()).unwrap(), None);
    }
}
