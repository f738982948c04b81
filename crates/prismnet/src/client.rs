//! prismnet's typed client, on the kit's [`Client`] (replicas, safe retries, token renewal,
//! error decoding): a tenant project's networks as [`Collection`]s, and the agent routes.

use std::net::Ipv4Addr;
use std::time::Duration;

use ultracloud_resource::Owner;
use ultracloud_resource::client::{Client, ClientError, Collection};

use crate::api::*;

/// A client of the prismnet controller's replicas.
#[derive(Debug, Clone)]
pub struct Prismnet {
    client: Client,
}

impl Prismnet {
    /// The service's name in errors and in `Client::new`.
    pub const SERVICE: &'static str = "prismnet";

    /// prismnet through `client` (made with `Client::new(Prismnet::SERVICE, …)` and the
    /// caller's credentials).
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The kit client underneath (for calls this client has no method for).
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The project's VPCs.
    pub fn vpcs(&self, owner: &Owner) -> Collection<'_, Vpc, NewVpc> {
        Collection::new(&self.client, owner, "vpcs")
    }

    /// The project's subnets.
    pub fn subnets(&self, owner: &Owner) -> Collection<'_, Subnet, NewSubnet> {
        Collection::new(&self.client, owner, "subnets")
    }

    /// The project's routers.
    pub fn routers(&self, owner: &Owner) -> Collection<'_, Router, NewRouter> {
        Collection::new(&self.client, owner, "routers")
    }

    /// The project's security groups.
    pub fn security_groups(&self, owner: &Owner) -> Collection<'_, SecurityGroup, NewSecurityGroup> {
        Collection::new(&self.client, owner, "security-groups")
    }

    /// The project's ports.
    pub fn ports(&self, owner: &Owner) -> Collection<'_, Port, NewPort> {
        Collection::new(&self.client, owner, "ports")
    }

    /// The project's service IPs.
    pub fn service_ips(&self, owner: &Owner) -> Collection<'_, ServiceIp, NewServiceIp> {
        Collection::new(&self.client, owner, "service-ips")
    }

    /// One page of the project's audit trail.
    pub async fn events(&self, owner: &Owner, q: &ListQuery) -> Result<Page<Event>, ClientError> {
        let events = Collection::<Event, ()>::new(&self.client, owner, "events");
        events.list(q).await
    }

    /// Changes a port; with `if_match`, only if it is still at that revision.
    pub async fn update_port(
        &self,
        owner: &Owner,
        port: &str,
        patch: &PortPatch,
        if_match: Option<u64>,
    ) -> Result<Port, ClientError> {
        self.ports(owner).call(http::Method::PATCH, &[port]).json(patch).if_match(if_match).fetch().await
    }

    /// Replaces a security group's rules; with `if_match`, only if it is still at that revision.
    pub async fn set_rules(
        &self,
        owner: &Owner,
        group: &str,
        rules: &GroupRules,
        if_match: Option<u64>,
    ) -> Result<SecurityGroup, ClientError> {
        self.security_groups(owner).call(http::Method::PUT, &[group]).json(rules).if_match(if_match).fetch().await
    }

    /// Registers (or refreshes) a host's underlay address (an agent, for its own host).
    pub async fn register_host(&self, host: &str, underlay_ip: Ipv4Addr) -> Result<(), ClientError> {
        self.client.put(&["v1", "hosts", host]).json(&HostRegistration { underlay_ip }).done().await
    }

    /// The host's plan (an agent, for its own host).
    pub async fn host_plan(&self, host: &str) -> Result<HostPlan, ClientError> {
        self.client.get(&["v1", "hosts", host, "plan"]).timeout(Duration::from_secs(30)).fetch().await
    }

    /// Waits (up to ~15 s) for the controller's version to move past `after`.
    pub async fn wait(&self, after: u64) -> Result<u64, ClientError> {
        let answer: WatchAnswer =
            self.client.get(&["v1", "watch"]).query("after", after).timeout(Duration::from_secs(30)).fetch().await?;
        Ok(answer.version)
    }
}
