//! What to run: a fully resolved service description, independent of where it came from
//! (static node config today, fleet-scheduler assignments later).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// When a service that exited is started again.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RestartPolicy {
    /// Always (the default for platform services).
    #[default]
    Always,
    /// Only after a failure (non-zero exit or killed by a signal).
    OnFailure,
    /// Never; a failed exit leaves the service `failed`.
    Never,
}

/// One service to run on this node, fully resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Service name, unique on the node; names the log file.
    pub name: String,
    /// Program to execute.
    pub program: PathBuf,
    /// Arguments.
    pub args: Vec<String>,
    /// Environment added to the agent's own.
    pub env: BTreeMap<String, String>,
    /// Restart policy.
    pub restart: RestartPolicy,
    /// How long a stop waits after SIGTERM before SIGKILL.
    #[serde(with = "secs")]
    pub stop_timeout: Duration,
}

mod secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let secs = f64::deserialize(d)?;
        Duration::try_from_secs_f64(secs).map_err(serde::de::Error::custom)
    }
}
