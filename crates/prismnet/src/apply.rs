//! Declarative tenant networks: a file says what a project's networks should be; [`plan`]
//! compares it with what exists and lists the API calls that make them match (creates in
//! dependency order, updates, deletes in reverse order). `ultracloud network apply` runs the
//! calls (or prints them with `--dry-run`); the deployer will use the same reconciler.
//!
//! Managed: every VPC, subnet, router and security group of the project (except the
//! auto-created `default` group), and ports without a device owner (ports of VMs and DHCP
//! servers belong to plasmavmc and the agents). Immutable fields (a CIDR) are not changed in
//! place: the plan refuses and says so.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::cidr::Cidr;
use crate::model::{Port, Router, Rule, SecurityGroup, Subnet, Vpc};

/// The file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    /// Tenant.
    pub tenant: String,
    /// Project.
    pub project: String,
    /// VPCs.
    #[serde(default)]
    pub vpc: Vec<VpcSpec>,
    /// Subnets.
    #[serde(default)]
    pub subnet: Vec<SubnetSpec>,
    /// Routers.
    #[serde(default)]
    pub router: Vec<RouterSpec>,
    /// Security groups.
    #[serde(default)]
    pub security_group: Vec<GroupSpec>,
    /// Ports.
    #[serde(default)]
    pub port: Vec<PortSpec>,
}

/// A VPC in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VpcSpec {
    /// Name.
    pub name: String,
    /// Address space.
    pub cidr: Cidr,
}

/// A subnet in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubnetSpec {
    /// Name.
    pub name: String,
    /// VPC name.
    pub vpc: String,
    /// Addresses.
    pub cidr: Cidr,
    /// Gateway (default: first host).
    #[serde(default)]
    pub gateway: Option<Ipv4Addr>,
    /// DHCP (default on).
    #[serde(default)]
    pub dhcp: Option<bool>,
    /// DNS servers.
    #[serde(default)]
    pub dns_servers: Vec<Ipv4Addr>,
}

/// A router in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouterSpec {
    /// Name.
    pub name: String,
    /// VPC name.
    pub vpc: String,
    /// Subnet names.
    #[serde(default)]
    pub subnets: Vec<String>,
}

/// A security group in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupSpec {
    /// Name.
    pub name: String,
    /// Rules (`remote_group` by name).
    #[serde(default)]
    pub rules: Vec<Rule>,
}

/// A port in the file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PortSpec {
    /// Name.
    pub name: String,
    /// Subnet name.
    pub subnet: String,
    /// Fixed addresses (default: from IPAM).
    #[serde(default)]
    pub fixed_ips: Vec<Ipv4Addr>,
    /// Security group names (default: `default`).
    #[serde(default)]
    pub security_groups: Vec<String>,
}

/// What exists in the project now.
#[derive(Debug, Clone, Default)]
pub struct Current {
    /// VPCs.
    pub vpcs: Vec<Vpc>,
    /// Subnets.
    pub subnets: Vec<Subnet>,
    /// Routers.
    pub routers: Vec<Router>,
    /// Security groups.
    pub groups: Vec<SecurityGroup>,
    /// Ports.
    pub ports: Vec<Port>,
}

/// One API call of a plan.
#[derive(Debug, Clone, PartialEq)]
pub struct Action {
    /// `+` create, `~` update, `-` delete.
    pub op: char,
    /// HTTP method.
    pub method: &'static str,
    /// Path under the project (`/vpcs`, `/ports/ID`, …).
    pub path: String,
    /// Body.
    pub body: Option<Value>,
    /// What it does, for people.
    pub describe: String,
}

fn create(kind: &str, path: &str, name: &str, body: Value) -> Action {
    Action { op: '+', method: "POST", path: path.into(), body: Some(body), describe: format!("{kind} {name}") }
}

fn delete(kind: &str, path: &str, id: &str, name: &str) -> Action {
    Action { op: '-', method: "DELETE", path: format!("{path}/{id}"), body: None, describe: format!("{kind} {name}") }
}

/// Rules with group references as names (as in the file), for comparison and creation.
fn rules_by_name(rules: &[Rule], names: &BTreeMap<String, String>) -> Vec<Rule> {
    rules
        .iter()
        .map(|r| Rule {
            remote_group: r.remote_group.as_ref().map(|g| names.get(g).cloned().unwrap_or_else(|| g.clone())),
            ..r.clone()
        })
        .collect()
}

/// The calls that make `current` match `spec`; an error names what cannot change in place.
pub fn plan(spec: &Spec, current: &Current) -> Result<Vec<Action>, String> {
    let mut out = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    for (kind, name) in spec
        .vpc
        .iter()
        .map(|v| ("vpc", &v.name))
        .chain(spec.subnet.iter().map(|s| ("subnet", &s.name)))
        .chain(spec.router.iter().map(|r| ("router", &r.name)))
        .chain(spec.security_group.iter().map(|g| ("security_group", &g.name)))
        .chain(spec.port.iter().map(|p| ("port", &p.name)))
    {
        if !seen.insert((kind, name.clone())) {
            return Err(format!("{kind} {name:?} appears twice in the file"));
        }
    }
    let vpc_names: BTreeMap<&str, &Vpc> = current.vpcs.iter().map(|v| (v.name.as_str(), v)).collect();
    let vpc_by_id: BTreeMap<&str, &str> = current.vpcs.iter().map(|v| (v.id.as_str(), v.name.as_str())).collect();
    let subnet_names: BTreeMap<&str, &Subnet> = current.subnets.iter().map(|s| (s.name.as_str(), s)).collect();
    let subnet_by_id: BTreeMap<&str, &str> = current.subnets.iter().map(|s| (s.id.as_str(), s.name.as_str())).collect();
    let group_names: BTreeMap<&str, &SecurityGroup> = current.groups.iter().map(|g| (g.name.as_str(), g)).collect();
    let group_by_id: BTreeMap<String, String> = current.groups.iter().map(|g| (g.id.clone(), g.name.clone())).collect();

    // Creates and updates, in dependency order.
    for v in &spec.vpc {
        match vpc_names.get(v.name.as_str()) {
            None => out.push(create("vpc", "/vpcs", &v.name, json!({"name": v.name, "cidr": v.cidr}))),
            Some(cur) if cur.cidr != v.cidr => {
                return Err(format!(
                    "vpc {}: cidr {} → {} cannot change in place; delete it first",
                    v.name, cur.cidr, v.cidr
                ));
            }
            Some(_) => {}
        }
    }
    for g in &spec.security_group {
        let want = serde_json::to_value(&g.rules).unwrap_or_default();
        match group_names.get(g.name.as_str()) {
            None => {
                out.push(create("security_group", "/security-groups", &g.name, json!({"name": g.name, "rules": want})))
            }
            Some(cur) => {
                if serde_json::to_value(rules_by_name(&cur.rules, &group_by_id)).unwrap_or_default() != want {
                    out.push(Action {
                        op: '~',
                        method: "PUT",
                        path: format!("/security-groups/{}", cur.id),
                        body: Some(json!({"rules": want})),
                        describe: format!("security_group {} rules", g.name),
                    });
                }
            }
        }
    }
    for s in &spec.subnet {
        match subnet_names.get(s.name.as_str()) {
            None => out.push(create(
                "subnet",
                "/subnets",
                &s.name,
                json!({"name": s.name, "vpc": s.vpc, "cidr": s.cidr, "gateway": s.gateway, "dhcp": s.dhcp, "dns_servers": s.dns_servers}),
            )),
            Some(cur) if cur.cidr != s.cidr || vpc_by_id.get(cur.vpc.as_str()) != Some(&s.vpc.as_str()) => {
                return Err(format!("subnet {}: its cidr or VPC cannot change in place; delete it first", s.name));
            }
            Some(_) => {}
        }
    }
    for r in &spec.router {
        let exists = current.routers.iter().find(|c| c.name == r.name);
        let names: Vec<&str> = exists
            .map(|c| c.subnets.iter().filter_map(|id| subnet_by_id.get(id.as_str()).copied()).collect())
            .unwrap_or_default();
        match exists {
            None => out.push(create(
                "router",
                "/routers",
                &r.name,
                json!({"name": r.name, "vpc": r.vpc, "subnets": r.subnets}),
            )),
            Some(c) if names != r.subnets.iter().map(String::as_str).collect::<Vec<_>>() => {
                // Routers are small: replace.
                out.push(delete("router", "/routers", &c.id, &r.name));
                out.push(create(
                    "router",
                    "/routers",
                    &r.name,
                    json!({"name": r.name, "vpc": r.vpc, "subnets": r.subnets}),
                ));
            }
            Some(_) => {}
        }
    }
    let managed_ports: Vec<&Port> = current.ports.iter().filter(|p| p.device_owner.is_empty()).collect();
    for p in &spec.port {
        let groups = if p.security_groups.is_empty() { vec!["default".to_owned()] } else { p.security_groups.clone() };
        match managed_ports.iter().find(|c| c.name == p.name) {
            None => out.push(create(
                "port",
                "/ports",
                &p.name,
                json!({"name": p.name, "subnet": p.subnet, "fixed_ips": p.fixed_ips, "security_groups": groups}),
            )),
            Some(cur) => {
                if subnet_by_id.get(cur.subnet.as_str()) != Some(&p.subnet.as_str())
                    || (!p.fixed_ips.is_empty() && cur.fixed_ips != p.fixed_ips)
                {
                    return Err(format!(
                        "port {}: its subnet or addresses cannot change in place; delete it first",
                        p.name
                    ));
                }
                let have: Vec<String> = cur
                    .security_groups
                    .iter()
                    .map(|id| group_by_id.get(id).cloned().unwrap_or_else(|| id.clone()))
                    .collect();
                if have != groups {
                    out.push(Action {
                        op: '~',
                        method: "PATCH",
                        path: format!("/ports/{}", cur.id),
                        body: Some(json!({"security_groups": groups})),
                        describe: format!("port {} security groups", p.name),
                    });
                }
            }
        }
    }
    // Deletes, in reverse dependency order.
    for c in managed_ports.iter().filter(|c| !spec.port.iter().any(|p| p.name == c.name)) {
        out.push(delete("port", "/ports", &c.id, if c.name.is_empty() { &c.id } else { &c.name }));
    }
    for c in current.routers.iter().filter(|c| !spec.router.iter().any(|r| r.name == c.name)) {
        out.push(delete("router", "/routers", &c.id, &c.name));
    }
    for c in current.subnets.iter().filter(|c| !spec.subnet.iter().any(|s| s.name == c.name)) {
        out.push(delete("subnet", "/subnets", &c.id, &c.name));
    }
    for c in
        current.groups.iter().filter(|c| c.name != "default" && !spec.security_group.iter().any(|g| g.name == c.name))
    {
        out.push(delete("security_group", "/security-groups", &c.id, &c.name));
    }
    for c in current.vpcs.iter().filter(|c| !spec.vpc.iter().any(|v| v.name == c.name)) {
        out.push(delete("vpc", "/vpcs", &c.id, &c.name));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Direction, Owner, Protocol};

    fn spec() -> Spec {
        toml::from_str(
            r#"
            tenant = "acme"
            project = "web"
            [[vpc]]
            name = "net"
            cidr = "10.0.0.0/16"
            [[subnet]]
            name = "s1"
            vpc = "net"
            cidr = "10.0.1.0/24"
            [[security_group]]
            name = "web"
            [[security_group.rules]]
            direction = "ingress"
            protocol = "tcp"
            port_min = 80
            [[port]]
            name = "web-1"
            subnet = "s1"
            security_groups = ["web"]
            "#,
        )
        .unwrap()
    }

    fn owner() -> Owner {
        Owner { tenant: "acme".into(), project: "web".into() }
    }

    /// What exists after the spec was applied.
    fn applied() -> Current {
        let web_rules = vec![Rule {
            direction: Direction::Ingress,
            protocol: Protocol::Tcp,
            port_min: Some(80),
            port_max: None,
            remote_cidr: None,
            remote_group: None,
        }];
        Current {
            vpcs: vec![Vpc {
                id: "vpc-1".into(),
                owner: owner(),
                meta: Default::default(),
                name: "net".into(),
                cidr: "10.0.0.0/16".parse().unwrap(),
            }],
            subnets: vec![Subnet {
                id: "subnet-1".into(),
                owner: owner(),
                meta: Default::default(),
                vpc: "vpc-1".into(),
                name: "s1".into(),
                cidr: "10.0.1.0/24".parse().unwrap(),
                gateway: Some("10.0.1.1".parse().unwrap()),
                dhcp: true,
                dns_servers: vec![],
                pools: vec![],
                vni: 1000,
            }],
            routers: vec![],
            groups: vec![
                SecurityGroup {
                    id: "sg-1".into(),
                    owner: owner(),
                    meta: Default::default(),
                    name: "web".into(),
                    rules: web_rules,
                },
                SecurityGroup {
                    id: "sg-0".into(),
                    owner: owner(),
                    meta: Default::default(),
                    name: "default".into(),
                    rules: vec![],
                },
            ],
            ports: vec![Port {
                id: "port-1".into(),
                owner: owner(),
                meta: Default::default(),
                subnet: "subnet-1".into(),
                name: "web-1".into(),
                mac: "52:54:00:00:00:01".into(),
                fixed_ips: vec!["10.0.1.2".parse().unwrap()],
                security_groups: vec!["sg-1".into()],
                binding: None,
                device_owner: String::new(),
            }],
        }
    }

    #[test]
    fn from_nothing_everything_is_created_in_dependency_order() {
        let p = plan(&spec(), &Current::default()).unwrap();
        let kinds: Vec<&str> = p.iter().map(|a| a.describe.split(' ').next().unwrap()).collect();
        assert_eq!(kinds, ["vpc", "security_group", "subnet", "port"]);
        assert!(p.iter().all(|a| a.op == '+'));
    }

    #[test]
    fn applying_twice_changes_nothing() {
        assert_eq!(plan(&spec(), &applied()).unwrap(), vec![]);
    }

    #[test]
    fn changes_update_and_removals_delete_in_reverse_order() {
        let mut s = spec();
        s.security_group[0].rules[0].port_min = Some(443);
        s.port.clear();
        s.subnet.clear();
        let p = plan(&s, &applied()).unwrap();
        let d: Vec<String> = p.iter().map(|a| format!("{}{}", a.op, a.describe)).collect();
        assert_eq!(d, ["~security_group web rules", "-port web-1", "-subnet s1"]);
        let mut s = spec();
        s.vpc[0].cidr = "10.1.0.0/16".parse().unwrap();
        assert!(plan(&s, &applied()).unwrap_err().contains("cannot change in place"));
        let mut s = spec();
        s.port.push(s.port[0].clone());
        assert!(plan(&s, &applied()).unwrap_err().contains("twice"));
    }
}
