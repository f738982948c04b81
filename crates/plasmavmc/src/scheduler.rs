//! Placement: which worker a VM runs on. A pure function of the registered hosts and the VMs
//! already placed, so it is tested without a cluster.
//!
//! A host fits when its free vCPUs and memory cover the VM. Among hosts that fit, those
//! holding no VM of the same anti-affinity label come first (the label is a preference: with
//! one worker, two replicas still run), then the one with the most free memory, then by name.

use crate::model::{Host, Vm};

/// What a placement needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// vCPUs.
    pub vcpus: u32,
    /// Memory in MiB.
    pub memory_mib: u32,
    /// Anti-affinity label.
    pub anti_affinity: Option<&'a str>,
    /// A VM being moved (its own reservation does not count against its current host).
    pub moving: Option<&'a str>,
    /// Only this host (a migration target), when set.
    pub only: Option<&'a str>,
}

/// A host's free capacity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Free {
    /// Host name.
    pub host: String,
    /// Free vCPUs (may be negative after a host shrank).
    pub vcpus: i64,
    /// Free memory in MiB.
    pub memory_mib: i64,
    /// VMs on it with the requested anti-affinity label.
    pub same_label: usize,
}

/// Why no host was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoFit {
    /// No agent is registered (or none has been heard from lately).
    #[error("no worker is available (no plasmavmc agent has reported recently)")]
    NoHosts,
    /// The host asked for is not a live worker.
    #[error("worker {0:?} is not a live plasmavmc worker")]
    UnknownHost(String),
    /// Nothing has room; names the best candidate's shortfall.
    #[error(
        "no worker can fit {vcpus} vCPU(s) and {memory_mib} MiB: the roomiest, {host}, has {free_vcpus} vCPU(s) \
         and {free_memory_mib} MiB free"
    )]
    Shortfall {
        /// vCPUs asked.
        vcpus: u32,
        /// Memory asked.
        memory_mib: u32,
        /// The roomiest host.
        host: String,
        /// Its free vCPUs.
        free_vcpus: i64,
        /// Its free memory.
        free_memory_mib: i64,
    },
}

/// Free capacity of every live host given the VMs placed (VMs being deleted still hold their
/// share until they are gone; a migrating VM holds room on both ends).
pub fn free_capacity(hosts: &[Host], vms: &[Vm], req: &Request<'_>) -> Vec<Free> {
    hosts
        .iter()
        .map(|h| {
            let mut f = Free {
                host: h.name.clone(),
                vcpus: i64::from(h.vcpus),
                memory_mib: i64::from(h.memory_mib),
                same_label: 0,
            };
            for vm in vms {
                let here = vm.host == h.name || vm.migration.as_ref().is_some_and(|m| m.target == h.name);
                if !here || Some(vm.id.as_str()) == req.moving && vm.host == h.name {
                    continue;
                }
                f.vcpus -= i64::from(vm.vcpus);
                f.memory_mib -= i64::from(vm.memory_mib);
                if req.anti_affinity.is_some() && vm.anti_affinity.as_deref() == req.anti_affinity {
                    f.same_label += 1;
                }
            }
            f
        })
        .collect()
}

/// Picks a host for `req`.
pub fn place(hosts: &[Host], vms: &[Vm], req: &Request<'_>) -> Result<String, NoFit> {
    if let Some(only) = req.only
        && !hosts.iter().any(|h| h.name == only)
    {
        return Err(NoFit::UnknownHost(only.to_owned()));
    }
    let free: Vec<Free> =
        free_capacity(hosts, vms, req).into_iter().filter(|f| req.only.is_none_or(|o| o == f.host)).collect();
    if free.is_empty() {
        return Err(NoFit::NoHosts);
    }
    let fits = |f: &&Free| f.vcpus >= i64::from(req.vcpus) && f.memory_mib >= i64::from(req.memory_mib);
    let best = free
        .iter()
        .filter(fits)
        .min_by(|a, b| (a.same_label, -a.memory_mib, &a.host).cmp(&(b.same_label, -b.memory_mib, &b.host)));
    match best {
        Some(f) => Ok(f.host.clone()),
        None => {
            let roomiest =
                free.iter().max_by(|a, b| (a.memory_mib, a.vcpus, &b.host).cmp(&(b.memory_mib, b.vcpus, &a.host)));
            let r = roomiest.ok_or(NoFit::NoHosts)?;
            Err(NoFit::Shortfall {
                vcpus: req.vcpus,
                memory_mib: req.memory_mib,
                host: r.host.clone(),
                free_vcpus: r.vcpus,
                free_memory_mib: r.memory_mib,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use proptest::prelude::*;

    use super::*;
    use crate::model::{Owner, Power, RestartPolicy};

    fn host(name: &str, vcpus: u32, memory_mib: u32) -> Host {
        Host {
            name: name.into(),
            vcpus,
            memory_mib,
            accel: "tcg".into(),
            agent_url: String::new(),
            address: Ipv4Addr::LOCALHOST,
            seen_ms: 0,
        }
    }

    fn vm(id: &str, host: &str, vcpus: u32, memory_mib: u32, label: Option<&str>) -> Vm {
        Vm {
            id: id.into(),
            owner: Owner { tenant: "t".into(), project: "p".into() },
            meta: Default::default(),
            name: id.into(),
            image: "img".into(),
            vcpus,
            memory_mib,
            nics: vec![],
            volumes: vec![],
            user_data: None,
            restart_policy: RestartPolicy::OnFailure,
            anti_affinity: label.map(str::to_owned),
            stop_timeout_s: 10,
            host: host.into(),
            power: Power::Running,
            reboot_seq: 0,
            migration: None,
            deleting: false,
            created_ms: 0,
        }
    }

    fn req(vcpus: u32, memory_mib: u32) -> Request<'static> {
        Request { vcpus, memory_mib, anti_affinity: None, moving: None, only: None }
    }

    #[test]
    fn most_free_memory_wins() {
        let hosts = [host("a", 8, 4096), host("b", 8, 8192)];
        assert_eq!(place(&hosts, &[], &req(1, 512)).unwrap(), "b");
        let vms = [vm("v", "b", 1, 6000, None)];
        assert_eq!(place(&hosts, &vms, &req(1, 512)).unwrap(), "a");
    }

    #[test]
    fn anti_affinity_spreads_then_doubles_up() {
        let hosts = [host("a", 8, 8192), host("b", 8, 4096)];
        let vms = [vm("v1", "a", 1, 512, Some("web"))];
        let r = Request { anti_affinity: Some("web"), ..req(1, 512) };
        assert_eq!(place(&hosts, &vms, &r).unwrap(), "b");
        let vms = [vm("v1", "a", 1, 512, Some("web")), vm("v2", "b", 1, 512, Some("web"))];
        assert!(place(&hosts, &vms, &r).is_ok(), "a preference, not a hard rule");
    }

    #[test]
    fn a_shortfall_names_the_roomiest_host() {
        let hosts = [host("a", 2, 1024), host("b", 4, 2048)];
        let e = place(&hosts, &[], &req(1, 1_000_000)).unwrap_err();
        assert_eq!(
            e.to_string(),
            "no worker can fit 1 vCPU(s) and 1000000 MiB: the roomiest, b, has 4 vCPU(s) and 2048 MiB free"
        );
        assert_eq!(place(&[], &[], &req(1, 1)).unwrap_err(), NoFit::NoHosts);
    }

    #[test]
    fn a_migration_holds_room_on_the_target_and_frees_its_source_for_itself() {
        let hosts = [host("a", 2, 1024), host("b", 2, 1024)];
        let mut moving = vm("m", "a", 2, 1024, None);
        let r = Request { moving: Some("m"), only: Some("a"), ..req(2, 1024) };
        assert_eq!(place(&hosts, std::slice::from_ref(&moving), &r).unwrap(), "a");
        moving.migration = Some(crate::model::Migration {
            target: "b".into(),
            kind: crate::model::MigrationKind::Cold,
            started_ms: 0,
            incoming: None,
        });
        assert!(place(&hosts, &[moving], &Request { only: Some("b"), ..req(1, 1) }).is_err());
        assert_eq!(
            place(&hosts, &[], &Request { only: Some("zz"), ..req(1, 1) }),
            Err(NoFit::UnknownHost("zz".into()))
        );
    }

    proptest! {
        /// Whatever is placed, a chosen host had room, and a refusal means no host had room.
        #[test]
        fn placement_respects_capacity(
            caps in proptest::collection::vec((1u32..16, 256u32..16384), 1..5),
            placed in proptest::collection::vec((0usize..5, 1u32..4, 128u32..4096), 0..10),
            want in (1u32..8, 128u32..8192),
        ) {
            let hosts: Vec<Host> = caps.iter().enumerate().map(|(i, (c, m))| host(&format!("h{i}"), *c, *m)).collect();
            let vms: Vec<Vm> = placed.iter().enumerate()
                .map(|(i, (h, c, m))| vm(&format!("v{i}"), &format!("h{}", h % hosts.len()), *c, *m, None))
                .collect();
            let r = req(want.0, want.1);
            let free = free_capacity(&hosts, &vms, &r);
            match place(&hosts, &vms, &r) {
                Ok(h) => {
                    let f = free.iter().find(|f| f.host == h).unwrap();
                    prop_assert!(f.vcpus >= i64::from(want.0) && f.memory_mib >= i64::from(want.1));
                }
                Err(_) => prop_assert!(free.iter().all(|f| f.vcpus < i64::from(want.0) || f.memory_mib < i64::from(want.1))),
            }
        }
    }
}
