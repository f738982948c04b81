//! Node roles and the services each one runs.
//!
//! A role is a name operators put in a node's config; the catalogue maps it to services. A role
//! may name services that this build does not have yet (the platform grows component by
//! component): those are skipped with a warning, never silently.

use serde::{Deserialize, Serialize};

/// The role of a node in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Consensus and control: chainfire, flaredb, iam, the service controllers and the object
    /// store's storage nodes.
    ControlPlane,
    /// Runs tenant workloads: the VM and network agents.
    Worker,
    /// The public edge: API gateway, metrics, credits.
    Gateway,
    /// Everything on one machine (the quickstart profile).
    AllInOne,
}

impl Role {
    /// The services a node of this role runs, in start order.
    pub fn services(self) -> &'static [&'static str] {
        const CONTROL: &[&str] =
            &["chainfire", "flaredb", "iam", "prismnet", "plasmavmc", "lightningstor-node", "lightningstor"];
        const WORKER: &[&str] = &["prismnet-agent", "plasmavmc-agent"];
        const GATEWAY: &[&str] = &["apigateway", "nightlight", "creditservice"];
        const ALL: &[&str] = &[
            "chainfire",
            "flaredb",
            "iam",
            "prismnet",
            "plasmavmc",
            "lightningstor-node",
            "lightningstor",
            "prismnet-agent",
            "plasmavmc-agent",
        ];
        match self {
            Self::ControlPlane => CONTROL,
            Self::Worker => WORKER,
            Self::Gateway => GATEWAY,
            Self::AllInOne => ALL,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_from_config_names() {
        let r: Vec<Role> = serde_json::from_str(r#"["control-plane","worker","gateway","all-in-one"]"#).unwrap();
        assert_eq!(r, [Role::ControlPlane, Role::Worker, Role::Gateway, Role::AllInOne]);
        assert!(Role::ControlPlane.services().contains(&"chainfire"));
    }
}
