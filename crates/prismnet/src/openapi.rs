//! The OpenAPI document of the controller, served at `/v1/openapi.json`.

use serde_json::Value;
use ultracloud_resource::openapi::build;

/// (method, path suffix, summary, action).
const OPERATIONS: &[(&str, &str, &str, &str)] = &[
    ("post", "/vpcs", "Create a VPC {name, cidr}", "network.vpc.create"),
    ("get", "/vpcs", "List VPCs", "network.vpc.list"),
    ("get", "/vpcs/{id}", "A VPC (ID or name)", "network.vpc.read"),
    ("delete", "/vpcs/{id}", "Delete a VPC without subnets or routers", "network.vpc.delete"),
    (
        "post",
        "/subnets",
        "Create a subnet {name, vpc, cidr, gateway?, no_gateway?, dhcp?, dns_servers?, pools?}",
        "network.subnet.create",
    ),
    ("get", "/subnets", "List subnets", "network.subnet.list"),
    ("get", "/subnets/{id}", "A subnet", "network.subnet.read"),
    ("delete", "/subnets/{id}", "Delete a subnet (409 while ports use it)", "network.subnet.delete"),
    ("post", "/routers", "Create a router {name, vpc, subnets?, routes?}", "network.router.create"),
    ("get", "/routers", "List routers", "network.router.list"),
    ("get", "/routers/{id}", "A router", "network.router.read"),
    ("delete", "/routers/{id}", "Delete a router", "network.router.delete"),
    (
        "post",
        "/security-groups",
        "Create a security group {name, rules?} (default: egress anywhere, ingress from the group)",
        "network.security_group.create",
    ),
    ("get", "/security-groups", "List security groups", "network.security_group.list"),
    ("get", "/security-groups/{id}", "A security group", "network.security_group.read"),
    ("put", "/security-groups/{id}", "Replace its rules {rules}", "network.security_group.update"),
    ("delete", "/security-groups/{id}", "Delete an unused security group", "network.security_group.delete"),
    (
        "post",
        "/ports",
        "Create a port {subnet, name?, mac?, fixed_ips?, security_groups?, binding?, device_owner?}",
        "network.port.create",
    ),
    ("get", "/ports", "List ports", "network.port.list"),
    ("get", "/ports/{id}", "A port", "network.port.read"),
    (
        "patch",
        "/ports/{id}",
        "Rebind a port or change its groups {binding?, security_groups?, device_owner?}",
        "network.port.update",
    ),
    ("delete", "/ports/{id}", "Delete a port (its addresses are released)", "network.port.delete"),
    ("post", "/service-ips", "Allocate a service IP {subnet, name?}", "network.service_ip.create"),
    ("get", "/service-ips", "List service IPs", "network.service_ip.list"),
    ("get", "/service-ips/{id}", "A service IP", "network.service_ip.read"),
    ("delete", "/service-ips/{id}", "Release a service IP", "network.service_ip.delete"),
    ("patch", "/vpcs/{id}/metadata", META, "network.vpc.update"),
    ("patch", "/subnets/{id}/metadata", META, "network.subnet.update"),
    ("patch", "/routers/{id}/metadata", META, "network.router.update"),
    ("patch", "/security-groups/{id}/metadata", META, "network.security_group.update"),
    ("patch", "/ports/{id}/metadata", META, "network.port.update"),
    ("patch", "/service-ips/{id}/metadata", META, "network.service_ip.update"),
];

/// What every `…/metadata` PATCH does.
const META: &str = "Set or remove labels and annotations {labels?, annotations?} (null removes; If-Match)";

/// Platform routes: (method, path, summary, action).
const PLATFORM: &[(&str, &str, &str, &str)] = &[
    ("put", "/v1/hosts/{host}", "Register an agent host {underlay_ip}", "network.port.update"),
    ("get", "/v1/hosts/{host}/plan", "The host's desired dataplane", "network.port.read"),
    ("get", "/v1/watch", "Long poll: answers when the version differs from ?after=", "network.port.read"),
];

/// The document.
pub fn document() -> Value {
    build(
        "prismnet",
        "Tenant networking: VPCs, subnets, routers, security groups, ports, service IPs. Resources are addressed by ID or name inside their project.",
        OPERATIONS,
        PLATFORM,
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_operation_is_in_the_document() {
        let d = super::document();
        let n: usize = d["paths"].as_object().unwrap().values().map(|v| v.as_object().unwrap().len()).sum();
        assert_eq!(n, super::OPERATIONS.len() + super::PLATFORM.len());
    }
}
