//! plasmavmc's typed client, on the kit's [`Client`] (replicas, safe retries, token renewal,
//! error decoding): a tenant project's VMs, images and volumes as [`Collection`]s with their
//! actions, the platform's hosts, and the agent routes.

use std::time::Duration;

use http::Method;
use ultracloud_resource::Owner;
use ultracloud_resource::client::{Client, ClientError, Collection};

use crate::api::*;

/// A client of the plasmavmc controller's replicas.
#[derive(Debug, Clone)]
pub struct Plasmavmc {
    client: Client,
}

/// What a VM action asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmAction {
    /// Power on.
    Start,
    /// Power off (ACPI, then forcibly after the VM's stop timeout).
    Stop,
    /// Reset.
    Reboot,
}

impl VmAction {
    fn segment(self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
            Self::Reboot => "reboot",
        }
    }
}

impl Plasmavmc {
    /// The service's name in errors and in `Client::new`.
    pub const SERVICE: &'static str = "plasmavmc";

    /// plasmavmc through `client` (made with `Client::new(Plasmavmc::SERVICE, …)` and the
    /// caller's credentials).
    pub fn new(client: Client) -> Self {
        Self { client }
    }

    /// The kit client underneath.
    pub fn client(&self) -> &Client {
        &self.client
    }

    /// The project's VMs (as the API shows them: record, state, addresses).
    pub fn vms(&self, owner: &Owner) -> Collection<'_, VmView, NewVm> {
        Collection::new(&self.client, owner, "vms")
    }

    /// The project's images (a create imports one).
    pub fn images(&self, owner: &Owner) -> Collection<'_, Image, NewImage> {
        Collection::new(&self.client, owner, "images")
    }

    /// The project's volumes.
    pub fn volumes(&self, owner: &Owner) -> Collection<'_, Volume, NewVolume> {
        Collection::new(&self.client, owner, "volumes")
    }

    /// Starts, stops or reboots a VM. A start or stop states the wanted power, so repeating
    /// it is harmless; a reboot is not retried once it may have arrived.
    pub async fn act(&self, owner: &Owner, vm: &str, action: VmAction) -> Result<VmView, ClientError> {
        self.act_if(owner, vm, action, None).await
    }

    /// [`Plasmavmc::act`] only while the VM is at revision `if_match` (its `ETag`; 412
    /// Precondition Failed when another change came first).
    pub async fn act_if(
        &self,
        owner: &Owner,
        vm: &str,
        action: VmAction,
        if_match: Option<u64>,
    ) -> Result<VmView, ClientError> {
        let call = self.vms(owner).call(Method::POST, &[vm, action.segment()]).if_match(if_match);
        let call = if action == VmAction::Reboot { call } else { call.retry_safe() };
        call.fetch().await
    }

    /// Moves a VM to another worker.
    pub async fn migrate(&self, owner: &Owner, vm: &str, req: &MigrateRequest) -> Result<VmView, ClientError> {
        self.vms(owner).call(Method::POST, &[vm, "migrate"]).json(req).fetch().await
    }

    /// The tail of a VM's serial console.
    pub async fn console(&self, owner: &Owner, vm: &str) -> Result<String, ClientError> {
        Ok(self.vms(owner).call(Method::GET, &[vm, "console"]).send().await?.text())
    }

    /// A VM's lifecycle events, oldest first.
    pub async fn vm_events(&self, owner: &Owner, vm: &str) -> Result<Vec<VmEvent>, ClientError> {
        let page: Page<VmEvent> = self.vms(owner).call(Method::GET, &[vm, "events"]).fetch().await?;
        Ok(page.items)
    }

    /// Attaches a volume to a stopped VM.
    pub async fn attach(&self, owner: &Owner, volume: &str, vm: &str) -> Result<Volume, ClientError> {
        let req = AttachRequest { vm: vm.to_owned() };
        self.volumes(owner).call(Method::POST, &[volume, "attach"]).json(&req).retry_safe().fetch().await
    }

    /// Detaches a volume from its stopped VM.
    pub async fn detach(&self, owner: &Owner, volume: &str) -> Result<Volume, ClientError> {
        self.volumes(owner).call(Method::POST, &[volume, "detach"]).retry_safe().fetch().await
    }

    /// One page of the project's audit trail.
    pub async fn events(&self, owner: &Owner, q: &ListQuery) -> Result<Page<Event>, ClientError> {
        Collection::<Event, ()>::new(&self.client, owner, "events").list(q).await
    }

    /// The platform's workers (platform callers only).
    pub async fn hosts(&self) -> Result<Vec<Host>, ClientError> {
        let page: Page<Host> = self.client.get(&["v1", "hosts"]).fetch().await?;
        Ok(page.items)
    }

    /// Registers (or refreshes) a worker (its agent, for its own host).
    pub async fn register_host(&self, host: &str, registration: &HostRegistration) -> Result<(), ClientError> {
        self.client.put(&["v1", "hosts", host]).json(registration).done().await
    }

    /// The worker's plan (its agent).
    pub async fn host_plan(&self, host: &str) -> Result<HostPlan, ClientError> {
        self.client.get(&["v1", "hosts", host, "plan"]).timeout(Duration::from_secs(30)).fetch().await
    }

    /// Reports a VM's status (the agent of the worker it runs on).
    pub async fn report(&self, host: &str, vm: &str, status: &VmStatus) -> Result<(), ClientError> {
        self.client.put(&["v1", "hosts", host, "vms", vm, "status"]).json(status).done().await
    }

    /// Uploads a VM's console tail (the agent of the worker it runs on).
    pub async fn upload_console(&self, host: &str, vm: &str, text: String) -> Result<(), ClientError> {
        self.client.put(&["v1", "hosts", host, "vms", vm, "console"]).text(text).done().await
    }

    /// Waits (up to ~15 s) for the controller's version to move past `after`.
    pub async fn wait(&self, after: u64) -> Result<u64, ClientError> {
        let answer: WatchAnswer =
            self.client.get(&["v1", "watch"]).query("after", after).timeout(Duration::from_secs(30)).fetch().await?;
        Ok(answer.version)
    }
}
