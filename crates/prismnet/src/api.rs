//! prismnet's wire types: what its API answers and what it takes, in one place for callers
//! (the CLI, plasmavmc, the agents) that use [`crate::client`]. The types live beside the code
//! that gives them meaning; this module names the public surface.

pub use crate::model::{
    Binding, Direction, Plug, Port, Protocol, Route, Router, Rule, SecurityGroup, ServiceIp, Subnet, Vpc,
};
pub use crate::ops::{NewPort, NewRouter, NewSecurityGroup, NewServiceIp, NewSubnet, NewVpc, PortPatch};
pub use crate::plan::{HostPlan, PortPlan, SubnetPlan};
pub use crate::server::{GroupRules, HostRegistration};
pub use ultracloud_resource::audit::Event;
pub use ultracloud_resource::page::{ListQuery, Page};
pub use ultracloud_resource::watch::WatchAnswer;
