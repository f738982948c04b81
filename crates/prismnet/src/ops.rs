//! The controller's operations: validation against stored state, then one transaction.

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::cidr::Cidr;
use crate::ipam::{self, Pool};
use crate::model::{Binding, Owner, Plug, Port, Route, Router, Rule, SecurityGroup, ServiceIp, Subnet, Vpc};
pub use ultracloud_resource::ids::{new_id, valid_name};
pub use ultracloud_resource::store::{refuse, resolve};

use crate::store::{
    Store, StoreError, dhcp_key, txn_claim_ip, txn_claim_mac, txn_claim_vni, txn_delete, txn_get, txn_put,
    txn_release_ip, txn_release_mac, txn_release_vni, txn_scan, txn_used_ips,
};
use ultracloud_resource::store::{check_revision, obj_key};

type Result<T> = std::result::Result<T, StoreError>;

/// `POST …/vpcs`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewVpc {
    /// Name.
    pub name: String,
    /// Address space.
    pub cidr: Cidr,
    /// Labels (selected on by `?selector=`).
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub labels: ultracloud_resource::Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub annotations: ultracloud_resource::Labels,
}

/// Creates a VPC.
pub async fn create_vpc(store: &Store, owner: &Owner, req: &NewVpc) -> Result<Vpc> {
    valid_name(&req.name)?;
    if req.cidr.prefix() > 29 {
        return Err(StoreError::Invalid(format!("cidr {}: use /29 or larger", req.cidr)));
    }
    let vpc = Vpc {
        id: new_id("vpc"),
        owner: owner.clone(),
        meta: ultracloud_resource::Meta::new(req.labels.clone(), req.annotations.clone())?,
        name: req.name.clone(),
        cidr: req.cidr,
    };
    let owner = owner.clone();
    store
        .change(async move |t| {
            if !Store::txn_name_free::<Vpc>(t, &owner, &vpc.name).await? {
                return refuse(StoreError::Conflict(format!("a VPC named {:?} exists", vpc.name)));
            }
            Ok(Ok(txn_put(t, &vpc)?))
        })
        .await
}

/// Deletes a VPC without subnets or routers.
pub async fn delete_vpc(store: &Store, owner: &Owner, id: &str) -> Result<()> {
    let vpc: Vpc = store.get_owned(owner, id, "VPC").await?;
    let owner = owner.clone();
    store
        .change(async move |t| {
            let subnets: Vec<Subnet> = txn_scan(t, &Store::idx_prefix::<Subnet>(&owner)).await?;
            let routers: Vec<Router> = txn_scan(t, &Store::idx_prefix::<Router>(&owner)).await?;
            let used: Vec<&str> = subnets
                .iter()
                .filter(|s| s.vpc == vpc.id)
                .map(|s| s.name.as_str())
                .chain(routers.iter().filter(|r| r.vpc == vpc.id).map(|r| r.name.as_str()))
                .collect();
            if !used.is_empty() {
                return refuse(StoreError::Conflict(format!(
                    "VPC {:?} still has subnets or routers: {}; delete them first",
                    vpc.name,
                    used.join(", ")
                )));
            }
            txn_delete(t, &vpc)?;
            Ok(Ok(()))
        })
        .await
}

/// `POST …/subnets`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSubnet {
    /// Name.
    pub name: String,
    /// The VPC (ID or name).
    pub vpc: String,
    /// Addresses (inside the VPC's).
    pub cidr: Cidr,
    /// Gateway (default: the first host address; `"none"` is written as null with
    /// `no_gateway`).
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// No gateway at all.
    #[serde(default)]
    pub no_gateway: bool,
    /// DHCP (default on).
    #[serde(default)]
    pub dhcp: Option<bool>,
    /// DNS servers for DHCP.
    #[serde(default)]
    pub dns_servers: Vec<Ipv4Addr>,
    /// Allocation pools (default: every host address but the gateway).
    #[serde(default)]
    pub pools: Vec<Pool>,
    /// Labels (selected on by `?selector=`).
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub labels: ultracloud_resource::Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub annotations: ultracloud_resource::Labels,
}

/// Creates a subnet: inside its VPC, overlapping none of the VPC's other subnets; allocates
/// a VNI.
pub async fn create_subnet(store: &Store, owner: &Owner, req: &NewSubnet) -> Result<Subnet> {
    valid_name(&req.name)?;
    let vpc: Vpc = resolve(store, owner, &req.vpc, "VPC").await?;
    if !vpc.cidr.contains_net(&req.cidr) {
        return Err(StoreError::Invalid(format!("cidr {} is not inside VPC {} ({})", req.cidr, vpc.name, vpc.cidr)));
    }
    if req.cidr.prefix() > 29 {
        return Err(StoreError::Invalid(format!("cidr {}: use /29 or larger", req.cidr)));
    }
    let gateway = if req.no_gateway { None } else { Some(req.gateway.unwrap_or_else(|| req.cidr.hosts().0)) };
    if let Some(g) = gateway {
        let (lo, hi) = req.cidr.hosts();
        if g < lo || g > hi {
            return Err(StoreError::Invalid(format!("gateway {g} is not a host address of {}", req.cidr)));
        }
    }
    let pools = if req.pools.is_empty() { ipam::default_pools(&req.cidr, gateway) } else { req.pools.clone() };
    ipam::validate_pools(&req.cidr, gateway, &pools).map_err(StoreError::Invalid)?;
    let mut subnet = Subnet {
        id: new_id("subnet"),
        owner: owner.clone(),
        meta: ultracloud_resource::Meta::new(req.labels.clone(), req.annotations.clone())?,
        vpc: vpc.id.clone(),
        name: req.name.clone(),
        cidr: req.cidr,
        gateway,
        dhcp: req.dhcp.unwrap_or(true),
        dns_servers: req.dns_servers.clone(),
        pools,
        vni: 0,
    };
    let owner = owner.clone();
    store
        .change(async move |t| {
            if !Store::txn_name_free::<Subnet>(t, &owner, &subnet.name).await? {
                return refuse(StoreError::Conflict(format!("a subnet named {:?} exists", subnet.name)));
            }
            let siblings: Vec<Subnet> = txn_scan(t, &Store::idx_prefix::<Subnet>(&owner)).await?;
            if let Some(o) = siblings.iter().find(|s| s.vpc == subnet.vpc && s.cidr.overlaps(&subnet.cidr)) {
                return refuse(StoreError::Conflict(format!(
                    "cidr {} overlaps subnet {} ({}) of the same VPC",
                    subnet.cidr, o.name, o.cidr
                )));
            }
            subnet.vni = match txn_claim_vni(t, &subnet.id).await {
                Ok(v) => v,
                Err(StoreError::Db(e)) => return Err(e),
                Err(e) => return refuse(e),
            };
            Ok(Ok(txn_put(t, &subnet)?))
        })
        .await
}

/// Deletes a subnet; refused while ports (other than its DHCP ports) or service IPs use it.
pub async fn delete_subnet(store: &Store, owner: &Owner, id: &str) -> Result<()> {
    let subnet: Subnet = store.get_owned(owner, id, "subnet").await?;
    let ports: Vec<Port> = store.list(owner).await?;
    let in_use: Vec<String> = ports
        .iter()
        .filter(|p| p.subnet == subnet.id && p.device_owner != DHCP_OWNER)
        .map(|p| if p.name.is_empty() { p.id.clone() } else { p.name.clone() })
        .collect();
    if !in_use.is_empty() {
        return Err(StoreError::Conflict(format!(
            "subnet {:?} has {} port(s) in use: {}; delete them first",
            subnet.name,
            in_use.len(),
            in_use.join(", ")
        )));
    }
    let sips: Vec<ServiceIp> = store.list(owner).await?;
    if sips.iter().any(|s| s.subnet == subnet.id) {
        return Err(StoreError::Conflict(format!("subnet {:?} has service IPs; delete them first", subnet.name)));
    }
    let dhcp: Vec<Port> = ports.into_iter().filter(|p| p.subnet == subnet.id && p.device_owner == DHCP_OWNER).collect();
    store
        .change(async move |t| {
            for p in &dhcp {
                release_port(t, p)?;
                if let Some(b) = &p.binding {
                    t.delete(&dhcp_key(&subnet.id, &b.host));
                }
            }
            txn_release_vni(t, subnet.vni);
            txn_delete(t, &subnet)?;
            Ok(Ok(()))
        })
        .await
}

/// Who owns DHCP ports.
pub const DHCP_OWNER: &str = "network:dhcp";

/// `POST …/security-groups`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewSecurityGroup {
    /// Name.
    pub name: String,
    /// Rules (default: allow egress, allow ingress from the group).
    #[serde(default)]
    pub rules: Option<Vec<Rule>>,
    /// Labels (selected on by `?selector=`).
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub labels: ultracloud_resource::Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub annotations: ultracloud_resource::Labels,
}

fn check_rules(rules: &[Rule]) -> Result<()> {
    use crate::model::Protocol;
    for r in rules {
        if let (Some(a), Some(b)) = (r.port_min, r.port_max)
            && a > b
        {
            return Err(StoreError::Invalid(format!("rule ports {a}-{b}: min above max")));
        }
        if (r.port_min.is_some() || r.port_max.is_some()) && !matches!(r.protocol, Protocol::Tcp | Protocol::Udp) {
            return Err(StoreError::Invalid("rule ports need protocol tcp or udp".into()));
        }
        if r.remote_cidr.is_some() && r.remote_group.is_some() {
            return Err(StoreError::Invalid("a rule names remote_cidr or remote_group, not both".into()));
        }
    }
    Ok(())
}

/// Rewrites rules' `remote_group` references (IDs or names; the group's own name or ID for
/// itself) to IDs, refusing unknown groups.
async fn resolve_rule_groups(
    store: &Store,
    owner: &Owner,
    rules: &mut [Rule],
    self_id: &str,
    self_name: &str,
) -> Result<()> {
    for r in rules.iter_mut() {
        let Some(g) = r.remote_group.clone() else { continue };
        let id = if g == self_id || g == self_name {
            self_id.to_owned()
        } else {
            resolve::<SecurityGroup>(store, owner, &g, "security group").await?.id
        };
        r.remote_group = Some(id);
    }
    Ok(())
}

/// Creates a security group.
pub async fn create_security_group(store: &Store, owner: &Owner, req: &NewSecurityGroup) -> Result<SecurityGroup> {
    valid_name(&req.name)?;
    let id = new_id("sg");
    let mut rules = req.rules.clone().unwrap_or_else(|| SecurityGroup::default_rules(&id));
    check_rules(&rules)?;
    resolve_rule_groups(store, owner, &mut rules, &id, &req.name).await?;
    let sg = SecurityGroup {
        id,
        owner: owner.clone(),
        meta: ultracloud_resource::Meta::new(req.labels.clone(), req.annotations.clone())?,
        name: req.name.clone(),
        rules,
    };
    let owner = owner.clone();
    store
        .change(async move |t| {
            if !Store::txn_name_free::<SecurityGroup>(t, &owner, &sg.name).await? {
                return refuse(StoreError::Conflict(format!("a security group named {:?} exists", sg.name)));
            }
            Ok(Ok(txn_put(t, &sg)?))
        })
        .await
}

/// Replaces a security group's rules.
pub async fn update_security_group(
    store: &Store,
    owner: &Owner,
    id: &str,
    mut rules: Vec<Rule>,
    if_match: Option<u64>,
) -> Result<SecurityGroup> {
    let sg: SecurityGroup = store.get_owned(owner, id, "security group").await?;
    check_rules(&rules)?;
    resolve_rule_groups(store, owner, &mut rules, &sg.id, &sg.name).await?;
    store
        .change(async move |t| {
            // The revision is checked and continued from the stored group, in the transaction.
            let Some(mut cur) = txn_get::<SecurityGroup>(t, &obj_key::<SecurityGroup>(&sg.id)).await? else {
                return refuse(StoreError::NotFound(format!("security group {} was deleted", sg.id)));
            };
            if let Err(e) = check_revision(&cur, if_match) {
                return refuse(e);
            }
            cur.rules = rules.clone();
            Ok(Ok(txn_put(t, &cur)?))
        })
        .await
}

/// Deletes a security group no port uses.
pub async fn delete_security_group(store: &Store, owner: &Owner, id: &str) -> Result<()> {
    let sg: SecurityGroup = store.get_owned(owner, id, "security group").await?;
    let ports: Vec<Port> = store.list(owner).await?;
    if let Some(p) = ports.iter().find(|p| p.security_groups.contains(&sg.id)) {
        return Err(StoreError::Conflict(format!("security group {:?} is used by port {}", sg.name, p.id)));
    }
    store
        .change(async move |t| {
            txn_delete(t, &sg)?;
            Ok(Ok(()))
        })
        .await
}

/// The project's `default` security group, created on first use.
pub async fn default_security_group(store: &Store, owner: &Owner) -> Result<SecurityGroup> {
    if let Some(id) = store.id_by_name::<SecurityGroup>(owner, "default").await? {
        return store.get_owned(owner, &id, "security group").await;
    }
    match create_security_group(
        store,
        owner,
        &NewSecurityGroup {
            name: "default".into(),
            rules: None,
            labels: Default::default(),
            annotations: Default::default(),
        },
    )
    .await
    {
        Err(StoreError::Conflict(_)) => {
            let id = store.id_by_name::<SecurityGroup>(owner, "default").await?.unwrap_or_default();
            store.get_owned(owner, &id, "security group").await
        }
        other => other,
    }
}

/// `POST …/ports`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPort {
    /// The subnet (ID or name).
    pub subnet: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// MAC (default: generated).
    #[serde(default)]
    pub mac: Option<String>,
    /// Requested addresses (default: one from IPAM).
    #[serde(default)]
    pub fixed_ips: Vec<Ipv4Addr>,
    /// Security groups, IDs or names (default: the project's `default` group).
    #[serde(default)]
    pub security_groups: Option<Vec<String>>,
    /// Where it is plugged in.
    #[serde(default)]
    pub binding: Option<Binding>,
    /// What uses it.
    #[serde(default)]
    pub device_owner: String,
    /// Labels (selected on by `?selector=`).
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub labels: ultracloud_resource::Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub annotations: ultracloud_resource::Labels,
}

fn release_port(
    t: &mut ultracloud_flaredb::client::Txn,
    p: &Port,
) -> std::result::Result<(), ultracloud_flaredb::error::FlareError> {
    for ip in &p.fixed_ips {
        txn_release_ip(t, &p.subnet, *ip);
    }
    txn_release_mac(t, &p.subnet, &p.mac);
    txn_delete(t, p)
}

/// Creates a port: addresses from IPAM (never one twice) or as requested (refused when taken).
pub async fn create_port(store: &Store, owner: &Owner, req: &NewPort, by: By) -> Result<Port> {
    by.may_set(req.binding.is_some(), Some(&req.device_owner), "")?;
    let subnet: Subnet = resolve(store, owner, &req.subnet, "subnet").await?;
    let mac = match &req.mac {
        Some(m) if crate::model::valid_mac(m) => m.to_ascii_lowercase(),
        Some(m) => return Err(StoreError::Invalid(format!("mac {m:?}: use a unicast aa:bb:cc:dd:ee:ff"))),
        None => crate::model::generate_mac(),
    };
    for ip in &req.fixed_ips {
        if !subnet.cidr.contains(*ip)
            || Some(*ip) == subnet.gateway
            || *ip == subnet.cidr.network()
            || *ip == subnet.cidr.broadcast()
        {
            return Err(StoreError::Invalid(format!(
                "address {ip} is not assignable in {} ({})",
                subnet.name, subnet.cidr
            )));
        }
    }
    let groups = match &req.security_groups {
        None if req.device_owner == DHCP_OWNER => Vec::new(),
        None => vec![default_security_group(store, owner).await?.id],
        Some(list) => {
            let mut ids = Vec::new();
            for g in list {
                ids.push(resolve::<SecurityGroup>(store, owner, g, "security group").await?.id);
            }
            ids
        }
    };
    if let Some(b) = &req.binding {
        check_binding(b)?;
    }
    let mut port = Port {
        id: new_id("port"),
        owner: owner.clone(),
        meta: ultracloud_resource::Meta::new(req.labels.clone(), req.annotations.clone())?,
        subnet: subnet.id.clone(),
        name: req.name.clone(),
        mac,
        fixed_ips: Vec::new(),
        security_groups: groups,
        binding: req.binding.clone(),
        device_owner: req.device_owner.clone(),
    };
    let requested = req.fixed_ips.clone();
    store
        .change(async move |t| {
            if txn_get::<Subnet>(t, format!("prismnet/obj/subnet/{}", subnet.id).as_bytes()).await?.is_none() {
                return refuse(StoreError::NotFound(format!("subnet {} was deleted", subnet.name)));
            }
            let used = txn_used_ips(t, &subnet.id).await?;
            let ips = if requested.is_empty() {
                match ipam::next_free(&subnet.pools, &used) {
                    Some(ip) => vec![ip],
                    None => return refuse(StoreError::Conflict(format!("subnet {} has no free address", subnet.name))),
                }
            } else {
                if let Some(taken) = requested.iter().find(|ip| used.contains(ip)) {
                    return refuse(StoreError::Conflict(format!("address {taken} is in use in {}", subnet.name)));
                }
                requested.clone()
            };
            if !txn_claim_mac(t, &subnet.id, &port.mac, &port.id).await? {
                return refuse(StoreError::Conflict(format!("mac {} is in use in {}", port.mac, subnet.name)));
            }
            for ip in &ips {
                txn_claim_ip(t, &subnet.id, *ip, &format!("port:{}", port.id));
            }
            port.fixed_ips = ips;
            Ok(Ok(txn_put(t, &port)?))
        })
        .await
}

/// `PATCH …/ports/{id}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortPatch {
    /// New binding (`null` unbinds; absent: unchanged).
    #[serde(default, with = "::serde_with::rust::double_option", skip_serializing_if = "Option::is_none")]
    pub binding: Option<Option<Binding>>,
    /// New security groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security_groups: Option<Vec<String>>,
    /// New device owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device_owner: Option<String>,
}

/// Refuses a binding no host could carry out.
fn check_binding(b: &Binding) -> Result<()> {
    if let Plug::Netns { netns } = &b.plug
        && (netns.is_empty() || netns.contains('/') || netns.len() > 64)
    {
        return Err(StoreError::Invalid(format!("netns {netns:?} is not a namespace name")));
    }
    if let Some(standby) = &b.standby {
        if standby.is_empty() || *standby == b.host {
            return Err(StoreError::Invalid(format!("standby host {standby:?} must be another host than {}", b.host)));
        }
        if b.plug != Plug::Tap {
            return Err(StoreError::Invalid("only a tap plug can stand by on a second host".into()));
        }
    }
    Ok(())
}

/// Who asks for a port change: a port's binding (which host plugs it in, a standby host, a
/// namespace) and the device owners the platform reserves are the platform's alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum By {
    /// A tenant's user or service account.
    Tenant,
    /// A platform service or operator (holds `platform.port.bind`).
    Platform,
}

/// Whether a device owner is one the platform reserves (`network:dhcp`, `compute:vm/…`: any
/// `kind:` prefix).
pub fn reserved_owner(owner: &str) -> bool {
    owner.contains(':')
}

impl By {
    /// Refuses a tenant setting a binding, a reserved device owner, or changing the owner of a
    /// port the platform owns (`current`).
    fn may_set(self, binding: bool, device_owner: Option<&str>, current: &str) -> Result<()> {
        if self == By::Platform {
            return Ok(());
        }
        if binding {
            return Err(StoreError::Forbidden("binding: ports are plugged in by the platform, not by tenants".into()));
        }
        if let Some(o) = device_owner.filter(|o| reserved_owner(o) || reserved_owner(current)) {
            return Err(StoreError::Forbidden(format!(
                "device_owner {o:?}: owners with a kind prefix (network:, compute:) and the ports they own are the platform's"
            )));
        }
        Ok(())
    }
}

/// Updates a port's binding, groups or owner (a VM moving host rebinds its port).
pub async fn update_port(
    store: &Store,
    owner: &Owner,
    id: &str,
    patch: &PortPatch,
    by: By,
    if_match: Option<u64>,
) -> Result<Port> {
    let mut port: Port = store.get_owned(owner, id, "port").await?;
    by.may_set(patch.binding.is_some(), patch.device_owner.as_deref(), &port.device_owner)?;
    if let Some(Some(b)) = &patch.binding {
        check_binding(b)?;
    }
    if let Some(groups) = &patch.security_groups {
        let mut ids = Vec::new();
        for g in groups {
            ids.push(resolve::<SecurityGroup>(store, owner, g, "security group").await?.id);
        }
        port.security_groups = ids;
    }
    if let Some(b) = &patch.binding {
        port.binding = b.clone();
    }
    if let Some(o) = &patch.device_owner {
        port.device_owner = o.clone();
    }
    store
        .change(async move |t| {
            let Some(cur) = txn_get::<Port>(t, &obj_key::<Port>(&port.id)).await? else {
                return refuse(StoreError::NotFound(format!("port {} was deleted", port.id)));
            };
            if let Err(e) = check_revision(&cur, if_match) {
                return refuse(e);
            }
            let mut next = port.clone();
            next.meta = cur.meta;
            Ok(Ok(txn_put(t, &next)?))
        })
        .await
}

/// Deletes a port, releasing its addresses and MAC. A port the platform owns (a VM's NIC, a
/// DHCP server's) is deleted by the platform only.
pub async fn delete_port(store: &Store, owner: &Owner, id: &str, by: By) -> Result<()> {
    let port: Port = store.get_owned(owner, id, "port").await?;
    if by == By::Tenant && reserved_owner(&port.device_owner) {
        return Err(StoreError::Forbidden(format!(
            "port {id} belongs to {}; it goes with what owns it",
            port.device_owner
        )));
    }
    store
        .change(async move |t| {
            release_port(t, &port)?;
            Ok(Ok(()))
        })
        .await
}

/// `POST …/routers`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRouter {
    /// Name.
    pub name: String,
    /// The VPC (ID or name).
    pub vpc: String,
    /// Subnets to attach (IDs or names, in the VPC).
    #[serde(default)]
    pub subnets: Vec<String>,
    /// Static routes (next hops inside attached subnets).
    #[serde(default)]
    pub routes: Vec<Route>,
    /// Labels (selected on by `?selector=`).
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub labels: ultracloud_resource::Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub annotations: ultracloud_resource::Labels,
}

/// Creates a router.
pub async fn create_router(store: &Store, owner: &Owner, req: &NewRouter) -> Result<Router> {
    valid_name(&req.name)?;
    let vpc: Vpc = resolve(store, owner, &req.vpc, "VPC").await?;
    let mut subnets = Vec::new();
    for s in &req.subnets {
        let subnet: Subnet = resolve(store, owner, s, "subnet").await?;
        if subnet.vpc != vpc.id {
            return Err(StoreError::Invalid(format!("subnet {} is not in VPC {}", subnet.name, vpc.name)));
        }
        subnets.push(subnet);
    }
    for r in &req.routes {
        if !subnets.iter().any(|s| s.cidr.contains(r.nexthop)) {
            return Err(StoreError::Invalid(format!("next hop {} is in no attached subnet", r.nexthop)));
        }
    }
    let router = Router {
        id: new_id("router"),
        owner: owner.clone(),
        meta: ultracloud_resource::Meta::new(req.labels.clone(), req.annotations.clone())?,
        vpc: vpc.id,
        name: req.name.clone(),
        subnets: subnets.into_iter().map(|s| s.id).collect(),
        routes: req.routes.clone(),
    };
    let owner = owner.clone();
    store
        .change(async move |t| {
            if !Store::txn_name_free::<Router>(t, &owner, &router.name).await? {
                return refuse(StoreError::Conflict(format!("a router named {:?} exists", router.name)));
            }
            Ok(Ok(txn_put(t, &router)?))
        })
        .await
}

/// Deletes a router.
pub async fn delete_router(store: &Store, owner: &Owner, id: &str) -> Result<()> {
    let router: Router = store.get_owned(owner, id, "router").await?;
    store
        .change(async move |t| {
            txn_delete(t, &router)?;
            Ok(Ok(()))
        })
        .await
}

/// `POST …/service-ips`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewServiceIp {
    /// The subnet (ID or name).
    pub subnet: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Labels (selected on by `?selector=`).
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub labels: ultracloud_resource::Labels,
    /// Annotations.
    #[serde(default, skip_serializing_if = "ultracloud_resource::Labels::is_empty")]
    pub annotations: ultracloud_resource::Labels,
}

/// Allocates a service IP (a VIP) from a subnet's pools.
pub async fn create_service_ip(store: &Store, owner: &Owner, req: &NewServiceIp) -> Result<ServiceIp> {
    let subnet: Subnet = resolve(store, owner, &req.subnet, "subnet").await?;
    let mut sip = ServiceIp {
        id: new_id("sip"),
        owner: owner.clone(),
        meta: ultracloud_resource::Meta::new(req.labels.clone(), req.annotations.clone())?,
        subnet: subnet.id.clone(),
        address: Ipv4Addr::UNSPECIFIED,
        name: req.name.clone(),
    };
    store
        .change(async move |t| {
            let used = txn_used_ips(t, &subnet.id).await?;
            let Some(ip) = ipam::next_free(&subnet.pools, &used) else {
                return refuse(StoreError::Conflict(format!("subnet {} has no free address", subnet.name)));
            };
            txn_claim_ip(t, &subnet.id, ip, &format!("sip:{}", sip.id));
            sip.address = ip;
            Ok(Ok(txn_put(t, &sip)?))
        })
        .await
}

/// Releases a service IP.
pub async fn delete_service_ip(store: &Store, owner: &Owner, id: &str) -> Result<()> {
    let sip: ServiceIp = store.get_owned(owner, id, "service IP").await?;
    store
        .change(async move |t| {
            txn_release_ip(t, &sip.subnet, sip.address);
            txn_delete(t, &sip)?;
            Ok(Ok(()))
        })
        .await
}

/// The DHCP port of `subnet` on `host`, created on first use.
pub async fn ensure_dhcp_port(store: &Store, subnet: &Subnet, host: &str) -> Result<Port> {
    let key = dhcp_key(&subnet.id, host);
    if let Some(id) = store.db.get(&key).await?
        && let Some(p) = store.get::<Port>(&String::from_utf8_lossy(&id)).await?
    {
        return Ok(p);
    }
    let req = NewPort {
        subnet: subnet.id.clone(),
        name: format!("dhcp-{host}"),
        binding: Some(Binding { host: host.to_owned(), plug: Plug::Tap, standby: None }),
        device_owner: DHCP_OWNER.into(),
        security_groups: Some(Vec::new()),
        ..Default::default()
    };
    let port = create_port(store, &subnet.owner, &req, By::Platform).await?;
    // Two agents of one host racing would both create; the claim decides, the loser is freed.
    let won = store.db.compare_and_swap(&key, None, Some(port.id.as_bytes())).await?.is_none();
    if won {
        return Ok(port);
    }
    delete_port(store, &subnet.owner, &port.id, By::Platform).await?;
    let id = store.db.get(&key).await?.unwrap_or_default();
    store.get_owned(&subnet.owner, &String::from_utf8_lossy(&id), "port").await
}
