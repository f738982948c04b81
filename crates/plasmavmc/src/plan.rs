//! Building a host's plan. Every agent asks for its plan after each store version, so the
//! listing of all VMs and volumes behind the plans is made once per version and shared: a
//! request then costs what its own host holds, not what the whole cloud holds.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::Mutex;
use ultracloud_resource::{Store, StoreError};

use crate::model::{Image, MigrationStep, Vm, Volume};
use crate::records;
use crate::server::{HostPlan, PlannedVm, SourceInfo};

/// The store's VMs and volumes grouped by host, as listed at one store version. (Hosts are not
/// kept: a host re-registering does not change the version, so sources are read fresh.)
#[derive(Debug, Default)]
struct Inputs {
    version: u64,
    /// VMs by the host they run on and by the host they migrate to.
    vms: HashMap<String, Vec<Vm>>,
    /// Volumes by ID.
    volumes: HashMap<String, Volume>,
    /// IDs of the volumes living on each host.
    volumes_on: HashMap<String, Vec<String>>,
}

impl Inputs {
    async fn list(store: &Store, version: u64) -> Result<Self, StoreError> {
        let mut inputs = Self { version, ..Self::default() };
        for vm in store.list_all::<Vm>().await? {
            if let Some(target) = vm.migration.as_ref().map(|m| m.target.clone())
                && target != vm.host
            {
                inputs.vms.entry(target).or_default().push(vm.clone());
            }
            inputs.vms.entry(vm.host.clone()).or_default().push(vm);
        }
        for volume in store.list_all::<Volume>().await? {
            if let Some(host) = &volume.host {
                inputs.volumes_on.entry(host.clone()).or_default().push(volume.id.clone());
            }
            inputs.volumes.insert(volume.id.clone(), volume);
        }
        Ok(inputs)
    }
}

/// The listing behind the plans, kept for the store version it was made at.
#[derive(Debug, Default)]
pub struct PlanCache {
    // An async lock: requests arriving together at a new version wait for one listing.
    latest: Mutex<Option<Arc<Inputs>>>,
}

impl PlanCache {
    async fn inputs(&self, store: &Store) -> Result<Arc<Inputs>, StoreError> {
        let version = store.version().await?;
        let mut latest = self.latest.lock().await;
        if let Some(inputs) = latest.as_ref().filter(|i| i.version == version) {
            return Ok(inputs.clone());
        }
        let inputs = Arc::new(Inputs::list(store, version).await?);
        *latest = Some(inputs.clone());
        Ok(inputs)
    }

    /// What `host` should run: its VMs (with their images and volumes), the VMs migrating to
    /// it (with their source), and every volume that lives or is arriving there.
    pub async fn plan_for(&self, store: &Store, host: &str) -> Result<HostPlan, StoreError> {
        let inputs = self.inputs(store).await?;
        let mut vms = Vec::new();
        for vm in inputs.vms.get(host).into_iter().flatten() {
            let Some(image) = store.get::<Image>(&vm.image).await? else {
                tracing::warn!(vm = %vm.id, image = %vm.image, "VM refers to a missing image");
                continue;
            };
            let source = match vm.migration.as_ref() {
                Some(m) if m.target == host && vm.host != host => source_of(store, vm).await?,
                _ => None,
            };
            let volumes = vm.volumes.iter().filter_map(|id| inputs.volumes.get(id)).cloned().collect();
            vms.push(PlannedVm { vm: vm.clone(), image, volumes, source });
        }
        // Volumes held here, and those of VMs moving here (their files arrive before the move).
        let held = inputs.volumes_on.get(host).into_iter().flatten();
        let incoming = vms.iter().filter(|p| p.vm.host != host).flat_map(|p| p.vm.volumes.iter());
        let mut ids: Vec<&String> = held.chain(incoming).collect();
        ids.sort();
        ids.dedup();
        let volumes = ids.into_iter().filter_map(|id| inputs.volumes.get(id)).cloned().collect();
        Ok(HostPlan { version: inputs.version, vms, volumes })
    }
}

/// A migrating VM's source, as its target sees it.
async fn source_of(store: &Store, vm: &Vm) -> Result<Option<SourceInfo>, StoreError> {
    let hosts = records::hosts(store).await?;
    let status = records::status(store, &vm.id).await?.unwrap_or_default();
    Ok(hosts.iter().find(|h| h.name == vm.host).map(|h| SourceInfo {
        host: h.name.clone(),
        agent_url: h.agent_url.clone(),
        address: h.address,
        ready: status.host == vm.host && status.migration_step == Some(MigrationStep::SourceReady),
        guest_ready: status.host == vm.host && status.guest_ready,
    }))
}
