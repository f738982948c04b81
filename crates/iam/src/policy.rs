//! Authorization: scopes, roles made of permission patterns, role bindings, and the decision
//! every API call gets (allow or deny, with the reason).
//!
//! A binding grants a role at a scope; it covers that scope and everything inside it (a
//! tenant-scope binding covers the tenant's projects; a system binding covers everything).
//! Nothing outside a binding's scope is ever granted by it, which is what keeps tenants apart.

use serde::{Deserialize, Serialize};

/// Where a resource lives (or where a binding applies).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// The whole platform.
    System,
    /// One tenant.
    Tenant {
        /// Tenant ID.
        tenant: String,
    },
    /// One project of a tenant.
    Project {
        /// Tenant ID.
        tenant: String,
        /// Project ID.
        project: String,
    },
}

impl Scope {
    /// Whether this scope is `other` or contains it.
    pub fn contains(&self, other: &Scope) -> bool {
        match (self, other) {
            (Scope::System, _) => true,
            (Scope::Tenant { tenant: a }, Scope::Tenant { tenant: b } | Scope::Project { tenant: b, .. }) => a == b,
            (Scope::Project { tenant: a, project: p }, Scope::Project { tenant: b, project: q }) => a == b && p == q,
            _ => false,
        }
    }
}

impl std::str::FromStr for Scope {
    type Err = String;

    /// The short form operators type: `system`, `TENANT` or `TENANT/PROJECT`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            _ if s == "system" => Ok(Scope::System),
            Some((t, p)) if !t.is_empty() && !p.is_empty() && !p.contains('/') => {
                Ok(Scope::Project { tenant: t.to_owned(), project: p.to_owned() })
            }
            None if !s.is_empty() => Ok(Scope::Tenant { tenant: s.to_owned() }),
            _ => Err(format!("scope {s:?}: use system, TENANT or TENANT/PROJECT")),
        }
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::System => f.write_str("system"),
            Scope::Tenant { tenant } => write!(f, "tenant/{tenant}"),
            Scope::Project { tenant, project } => write!(f, "tenant/{tenant}/project/{project}"),
        }
    }
}

/// Every action of every service: `service.resource.verb`. An action not listed is refused.
pub const CATALOGUE: &[(&str, &[&str], &[&str])] = &[
    ("iam", &["tenant", "project", "user", "service_account", "api_key", "role", "binding"], CRUD),
    (
        "compute",
        &["vm"],
        &["create", "read", "list", "update", "delete", "start", "stop", "reboot", "console", "migrate"],
    ),
    ("compute", &["image"], CRUD),
    // Each service's audit trail of a project (`GET …/events`).
    ("compute", &["event"], &["list"]),
    ("network", &["vpc", "subnet", "router", "port", "security_group", "service_ip"], CRUD),
    ("network", &["event"], &["list"]),
    ("storage", &["volume", "snapshot"], &["create", "read", "list", "update", "delete", "attach", "detach"]),
    ("object", &["bucket", "object", "credential"], CRUD),
    ("dns", &["zone", "record"], CRUD),
    ("lb", &["load_balancer", "listener", "pool", "health_check"], CRUD),
    ("db", &["key"], &["read", "list", "write"]),
    ("k8s", &["pod", "service", "deployment"], CRUD),
    ("billing", &["usage", "quota"], &["read", "list", "update"]),
    // The platform's own actions (agent routes, platform-only fields): decided at system
    // scope only, and granted only by system-scope bindings of platform roles. No tenant
    // role, whatever its patterns, ever holds one (see [`authorize`]).
    ("platform", &["host"], &["register", "read", "report", "list"]),
    ("platform", &["disk"], &["read"]),
    ("platform", &["port"], &["bind"]),
    // An S3 gateway reads the secret of an access key to verify a request's signature.
    ("platform", &["s3_credential"], &["resolve"]),
];

/// The service part of the platform's own actions.
pub const PLATFORM_ACTIONS: &str = "platform";

/// Whether `action` is one of the platform's own (see [`CATALOGUE`]).
pub fn is_platform_action(action: &str) -> bool {
    action.split('.').next() == Some(PLATFORM_ACTIONS)
}

/// Whether a permission pattern names platform actions explicitly (`platform.*`, …), which a
/// tenant's role may not.
pub fn names_platform_actions(pattern: &str) -> bool {
    pattern.split('.').next() == Some(PLATFORM_ACTIONS)
}

const CRUD: &[&str] = &["create", "read", "list", "update", "delete"];

/// Whether `action` is in the catalogue.
pub fn is_known_action(action: &str) -> bool {
    let mut parts = action.split('.');
    let (Some(s), Some(r), Some(v), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    CATALOGUE.iter().any(|(svc, resources, verbs)| *svc == s && resources.contains(&r) && verbs.contains(&v))
}

/// Every action in the catalogue.
pub fn all_actions() -> Vec<String> {
    let mut out = Vec::new();
    for (svc, resources, verbs) in CATALOGUE {
        for r in *resources {
            for v in *verbs {
                out.push(format!("{svc}.{r}.{v}"));
            }
        }
    }
    out
}

/// Whether a permission pattern grants `action`: `*` (everything), `svc.*` (a service),
/// `*.verb` (a verb of every resource), a three-part pattern with `*` for any part
/// (`svc.res.*`, `iam.*.read`), or the action itself.
pub fn pattern_matches(pattern: &str, action: &str) -> bool {
    if pattern == "*" || pattern == action {
        return true;
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let a: Vec<&str> = action.split('.').collect();
    match p.len() {
        2 if p[1] == "*" => a.len() == 3 && a[0] == p[0],
        2 if p[0] == "*" => a.len() == 3 && a[2] == p[1],
        3 if a.len() == 3 => p.iter().zip(&a).all(|(p, a)| *p == "*" || p == a),
        _ => false,
    }
}

/// A role: a name and permission patterns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Role {
    /// Name (built-in names are reserved).
    pub name: String,
    /// Permission patterns.
    pub permissions: Vec<String>,
    /// The tenant owning a custom role: it grants nothing outside that tenant. `None`: a
    /// platform-wide role (built-in, or custom made by a system admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
}

/// Checks a permission pattern: it must grant at least one action of the catalogue.
pub fn validate_pattern(pattern: &str) -> Result<(), String> {
    if all_actions().iter().any(|a| pattern_matches(pattern, a)) {
        Ok(())
    } else {
        Err(format!("permission {pattern:?} matches no action (see GET /v1/permissions)"))
    }
}

/// The name of the built-in role of platform services' own service accounts: they read
/// policies, revocations and tenancy to authorize their callers.
pub const PLATFORM_SERVICE: &str = "platform-service";

/// The name of the built-in role of node agents' service accounts (one per worker, each
/// bound to its node): register the host, read its plan, report its VMs, serve their disks
/// (and read bindings and revocations, which its disk server's guard needs to judge callers).
pub const NODE_AGENT: &str = "node-agent";

/// The name of the built-in role of S3 gateways' service accounts: they resolve access keys
/// to their secrets and projects (and read iam to authorize the keys' owners). No other role
/// reads S3 secrets.
pub const OBJECT_GATEWAY: &str = "object-gateway";

/// The built-in roles.
pub fn builtin_roles() -> Vec<Role> {
    let role = |name: &str, perms: &[&str]| Role {
        name: name.to_owned(),
        permissions: perms.iter().map(|p| (*p).to_owned()).collect(),
        tenant: None,
    };
    vec![
        role("system-admin", &["*"]),
        role("tenant-admin", &["*"]),
        role("project-admin", &["*"]),
        role(
            "member",
            &["compute.*", "network.*", "storage.*", "object.*", "dns.*", "lb.*", "db.*", "k8s.*", "*.read", "*.list"],
        ),
        role("viewer", &["*.read", "*.list"]),
        // Platform services act for the platform: they read iam and drive each other's
        // resources (a VM's port, a volume's attachment) on behalf of their callers.
        role(
            PLATFORM_SERVICE,
            &[
                "iam.*.read",
                "iam.*.list",
                "network.*",
                "compute.*",
                "storage.*",
                "platform.port.bind",
                "platform.host.list",
            ],
        ),
        role(OBJECT_GATEWAY, &["platform.s3_credential.resolve", "iam.*.read", "iam.*.list"]),
        role(
            NODE_AGENT,
            &[
                "platform.host.register",
                "platform.host.read",
                "platform.host.report",
                "platform.disk.read",
                "iam.binding.read",
            ],
        ),
    ]
}

/// A role granted to a subject at a scope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Binding {
    /// `user:<id>` or `sa:<id>`.
    pub subject: String,
    /// Role name.
    pub role: String,
    /// Where it applies.
    pub scope: Scope,
}

/// An authorization decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Decision {
    /// Allowed?
    pub allowed: bool,
    /// Why (names the binding that granted it, or what was missing).
    pub reason: String,
}

/// Decides whether `subject` may do `action` on a resource in `scope`, given its bindings and
/// the known roles (built-in and custom). Role names a binding refers to but that do not exist
/// grant nothing.
pub fn authorize(subject: &str, action: &str, scope: &Scope, bindings: &[Binding], roles: &[Role]) -> Decision {
    if !is_known_action(action) {
        return Decision { allowed: false, reason: format!("unknown action {action:?}") };
    }
    let platform = is_platform_action(action);
    if platform && *scope != Scope::System {
        return Decision {
            allowed: false,
            reason: format!("{action} is a platform action, decided at system scope only"),
        };
    }
    for b in bindings.iter().filter(|b| b.subject == subject) {
        if !b.scope.contains(scope) {
            continue;
        }
        let Some(role) = roles.iter().find(|r| r.name == b.role) else { continue };
        if role.tenant.as_ref().is_some_and(|t| !Scope::Tenant { tenant: t.clone() }.contains(scope)) {
            continue; // a tenant's custom role never reaches outside the tenant
        }
        if platform && (b.scope != Scope::System || role.tenant.is_some()) {
            continue; // platform actions come only from platform roles bound platform-wide
        }
        if let Some(p) = role.permissions.iter().find(|p| pattern_matches(p, action)) {
            return Decision {
                allowed: true,
                reason: format!("role {} bound at {} grants {action} (pattern {p:?})", role.name, b.scope),
            };
        }
    }
    Decision { allowed: false, reason: format!("no role bound to {subject} grants {action} on {scope}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> Scope {
        Scope::Tenant { tenant: t.into() }
    }

    fn project(t: &str, p: &str) -> Scope {
        Scope::Project { tenant: t.into(), project: p.into() }
    }

    fn bind(subject: &str, role: &str, scope: Scope) -> Binding {
        Binding { subject: subject.into(), role: role.into(), scope }
    }

    #[test]
    fn scopes_parse_from_their_short_form() {
        let project = Scope::Project { tenant: "acme".into(), project: "web".into() };
        assert_eq!("system".parse::<Scope>(), Ok(Scope::System));
        assert_eq!("acme".parse::<Scope>(), Ok(Scope::Tenant { tenant: "acme".into() }));
        assert_eq!("acme/web".parse::<Scope>(), Ok(project));
        for bad in ["acme/", "/web", "", "a/b/c"] {
            assert!(bad.parse::<Scope>().unwrap_err().contains("TENANT/PROJECT"), "{bad}");
        }
    }

    #[test]
    fn scopes_nest_and_never_cross_tenants() {
        assert!(Scope::System.contains(&project("a", "p")));
        assert!(tenant("a").contains(&project("a", "p")));
        assert!(!tenant("a").contains(&project("b", "p")));
        assert!(!tenant("a").contains(&Scope::System));
        assert!(!project("a", "p").contains(&tenant("a")));
        assert!(!project("a", "p").contains(&project("a", "q")));
    }

    #[test]
    fn patterns() {
        assert!(pattern_matches("*", "compute.vm.create"));
        assert!(pattern_matches("compute.*", "compute.vm.create"));
        assert!(!pattern_matches("compute.*", "computer.vm.create"));
        assert!(pattern_matches("*.read", "network.subnet.read"));
        assert!(!pattern_matches("*.read", "network.subnet.create"));
        assert!(pattern_matches("compute.vm.*", "compute.vm.stop"));
        assert!(!pattern_matches("compute.vm", "compute.vm.stop"));
        assert!(pattern_matches("iam.*.read", "iam.binding.read"));
        assert!(!pattern_matches("iam.*.read", "iam.binding.create"));
        assert!(!pattern_matches("iam.*.read", "compute.vm.read"));
        assert!(pattern_matches("*.vm.read", "compute.vm.read"));
    }

    #[test]
    fn tenants_and_projects_are_isolated() {
        let roles = builtin_roles();
        let b = vec![
            bind("user:alice", "tenant-admin", tenant("acme")),
            bind("user:bob", "member", project("acme", "web")),
            bind("user:vic", "viewer", project("acme", "web")),
            bind("user:root", "system-admin", Scope::System),
        ];
        let allowed = |s: &str, a: &str, sc: Scope| authorize(s, a, &sc, &b, &roles).allowed;
        assert!(allowed("user:alice", "compute.vm.create", project("acme", "web")));
        assert!(allowed("user:alice", "iam.project.create", tenant("acme")));
        assert!(!allowed("user:alice", "compute.vm.read", project("globex", "web")), "another tenant");
        assert!(!allowed("user:alice", "iam.tenant.create", Scope::System), "tenant admins stay in their tenant");
        assert!(allowed("user:bob", "compute.vm.delete", project("acme", "web")));
        assert!(!allowed("user:bob", "compute.vm.read", project("acme", "db")), "another project");
        assert!(!allowed("user:bob", "iam.user.create", project("acme", "web")), "members do not administer");
        assert!(allowed("user:bob", "iam.user.list", project("acme", "web")));
        assert!(allowed("user:vic", "network.subnet.read", project("acme", "web")));
        assert!(!allowed("user:vic", "network.subnet.create", project("acme", "web")));
        assert!(allowed("user:root", "iam.tenant.delete", Scope::System));
        let d = authorize("user:bob", "compute.vm.fly", &project("acme", "web"), &b, &roles);
        assert!(!d.allowed && d.reason.contains("unknown action"), "{d:?}");
        let d = authorize("user:bob", "compute.vm.read", &project("acme", "db"), &b, &roles);
        assert!(d.reason.contains("no role"), "{d:?}");
    }

    #[test]
    fn custom_roles_and_missing_roles() {
        let mut roles = builtin_roles();
        roles.push(Role {
            name: "vm-operator".into(),
            permissions: vec!["compute.vm.start".into(), "compute.vm.stop".into()],
            tenant: Some("acme".into()),
        });
        let b = vec![
            bind("sa:ops", "vm-operator", tenant("acme")),
            bind("sa:ghost", "deleted-role", tenant("acme")),
            // Bound (wrongly) at system scope: the tenant's role still stays in its tenant.
            bind("sa:wide", "vm-operator", Scope::System),
        ];
        assert!(authorize("sa:ops", "compute.vm.stop", &project("acme", "x"), &b, &roles).allowed);
        assert!(!authorize("sa:ops", "compute.vm.delete", &project("acme", "x"), &b, &roles).allowed);
        assert!(!authorize("sa:ghost", "compute.vm.read", &project("acme", "x"), &b, &roles).allowed);
        assert!(authorize("sa:wide", "compute.vm.stop", &project("acme", "x"), &b, &roles).allowed);
        assert!(!authorize("sa:wide", "compute.vm.stop", &project("globex", "x"), &b, &roles).allowed);
        assert!(validate_pattern("compute.vm.*").is_ok() && validate_pattern("*.read").is_ok());
        assert!(validate_pattern("compute.vm.fly").is_err() && validate_pattern("nothing").is_err());
    }

    #[test]
    fn platform_actions_never_reach_tenant_roles() {
        let mut roles = builtin_roles();
        roles.push(Role { name: "sneaky".into(), permissions: vec!["*".into()], tenant: Some("acme".into()) });
        let b = vec![
            bind("user:alice", "tenant-admin", tenant("acme")),
            bind("user:bob", "member", project("acme", "web")),
            bind("user:vic", "viewer", project("acme", "web")),
            bind("sa:wide", "sneaky", Scope::System),
            bind("sa:node-node04", NODE_AGENT, Scope::System),
            bind("sa:platform", PLATFORM_SERVICE, Scope::System),
            bind("user:root", "system-admin", Scope::System),
        ];
        let allowed = |s: &str, a: &str, sc: Scope| authorize(s, a, &sc, &b, &roles).allowed;
        for action in all_actions().iter().filter(|a| is_platform_action(a)) {
            for who in ["user:alice", "user:bob", "user:vic", "sa:wide"] {
                for sc in [Scope::System, tenant("acme"), project("acme", "web")] {
                    assert!(!allowed(who, action, sc.clone()), "{who} must not hold {action} at {sc}");
                }
            }
            assert!(allowed("user:root", action, Scope::System), "{action}");
            assert!(!allowed("user:root", action, tenant("acme")), "platform actions are decided at system scope");
        }
        assert!(allowed("sa:node-node04", "platform.host.report", Scope::System));
        assert!(!allowed("sa:node-node04", "platform.port.bind", Scope::System));
        assert!(!allowed("sa:node-node04", "compute.vm.read", project("acme", "web")), "agents read no tenant data");
        assert!(allowed("sa:platform", "platform.port.bind", Scope::System));
        assert!(!allowed("sa:platform", "platform.host.register", Scope::System), "controllers are not agents");
        assert!(names_platform_actions("platform.*") && !names_platform_actions("*"));
    }

    #[test]
    fn the_catalogue_is_consistent() {
        let all = all_actions();
        assert!(all.iter().all(|a| is_known_action(a)));
        assert!(all.contains(&"network.subnet.read".to_owned()) && all.contains(&"compute.vm.create".to_owned()));
        assert!(!is_known_action("compute.vm") && !is_known_action("compute.vm.create.x"));
    }
}
