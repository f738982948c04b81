//! The controller's HTTP API. Tenant resources live under
//! `/v1/tenants/{tenant}/projects/{project}/{vms,images,volumes}` and every route is guarded by
//! iam (`compute.<resource>.<verb>` in that project); agents use `/v1/hosts/…` and `/v1/watch`
//! with a platform service-account token.

use std::net::Ipv4Addr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ultracloud_iam::guard::Guard;
use ultracloud_resource::MetaPatch;
use ultracloud_resource::audit::Event as AuditEvent;
pub use ultracloud_resource::http::Items;
use ultracloud_resource::http::{HasStore, IfMatch, Tagged, api_error, created, owner, patch_meta, with_etag};
use ultracloud_resource::page::ListQuery;
use ultracloud_resource::store::patch_meta as patch_metadata;
pub use ultracloud_resource::watch::WatchAnswer;
use ultracloud_resource::watch::{VersionWatch, WatchQuery};
use ultracloud_resource::{Store, StoreError};
use ultracloud_runtime::error::{ApiError, ApiJson};

use crate::model::{Event, Host, Image, Vm, VmState, VmStatus, Volume, now_ms};
use crate::network::Prismnet;
use crate::ops::{self, Action};
use crate::records;

/// Console text kept per VM (the tail of its serial output).
pub const CONSOLE_KEPT: usize = 64 * 1024;

/// The controller: its store, its prismnet client and the version agents watch.
#[derive(Debug)]
pub struct Controller {
    /// flaredb records.
    pub store: Store,
    /// prismnet, for NICs.
    pub net: Prismnet,
    /// Where imported images may come from.
    pub images: crate::image_fetch::ImagePolicy,
    version: VersionWatch,
    plans: crate::plan::PlanCache,
}

impl HasStore for Controller {
    fn store(&self) -> &Store {
        &self.store
    }
}

impl Controller {
    /// A controller over `store`; `watch_versions` keeps the version current.
    pub fn new(store: Store, net: Prismnet, images: crate::image_fetch::ImagePolicy) -> Arc<Self> {
        Arc::new(Self { store, net, images, version: VersionWatch::default(), plans: Default::default() })
    }

    /// Keeps the version agents long-poll current until `shutdown`.
    pub async fn watch_versions(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        self.version.follow(&self.store, shutdown).await;
    }
}

type Ctl = State<Arc<Controller>>;
type ApiResult<T> = Result<T, ApiError>;
type ProjectPath = Path<(String, String)>;
type ItemPath = Path<(String, String, String)>;

/// A VM as the API shows it: the record, what its agent last reported, and its addresses.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VmView {
    /// The record.
    #[serde(flatten)]
    pub vm: Vm,
    /// Its state (from the last report; `pending` before the first).
    pub state: VmState,
    /// The last report.
    #[serde(default)]
    pub status: Option<VmStatus>,
    /// Its NICs' addresses.
    pub addresses: Vec<Ipv4Addr>,
}

impl Tagged for VmView {
    fn revision(&self) -> u64 {
        self.vm.meta.revision
    }
}

async fn view(store: &Store, vm: Vm) -> Result<VmView, StoreError> {
    let status = records::status(store, &vm.id).await?;
    let addresses = vm.nics.iter().flat_map(|n| n.ips.iter().copied()).collect();
    Ok(VmView { state: status.as_ref().map(|s| s.state).unwrap_or_default(), status, addresses, vm })
}

async fn create_vm(State(c): Ctl, Path((t, p)): ProjectPath, ApiJson(r): ApiJson<ops::NewVm>) -> ApiResult<Response> {
    let vm = ops::create_vm(&c.store, &c.net, &owner((t, p)), &r).await.map_err(api_error)?;
    Ok(created(view(&c.store, vm).await.map_err(api_error)?))
}

async fn list_vms(
    State(c): Ctl,
    Path((t, p)): ProjectPath,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Items<VmView>>> {
    let page = c.store.list_page::<Vm>(&owner((t, p)), &q).await.map_err(api_error)?;
    let mut items = Vec::new();
    for vm in page.items {
        items.push(view(&c.store, vm).await.map_err(api_error)?);
    }
    Ok(Json(Items { items, next_page_token: page.next_page_token }))
}

async fn show_vm(State(c): Ctl, Path((t, p, id)): ItemPath) -> ApiResult<Response> {
    let vm = ops::resolve::<Vm>(&c.store, &owner((t, p)), &id, "VM").await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, view(&c.store, vm).await.map_err(api_error)?))
}

/// A VM's metadata PATCH answers with the VM as `GET` shows it.
async fn patch_vm_meta(
    State(c): Ctl,
    Path((t, p, id)): ItemPath,
    IfMatch(rev): IfMatch,
    ApiJson(patch): ApiJson<MetaPatch>,
) -> ApiResult<Response> {
    let vm: Vm = patch_metadata(&c.store, &owner((t, p)), &id, "VM", &patch, rev).await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, view(&c.store, vm).await.map_err(api_error)?))
}

/// An action on a VM (`If-Match` honoured); the VM as it now is, with its `ETag`.
async fn act(c: &Controller, t: String, p: String, id: &str, action: Action, rev: Option<u64>) -> ApiResult<Response> {
    let vm = ops::act(&c.store, &owner((t, p)), id, action, rev).await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, view(&c.store, vm).await.map_err(api_error)?))
}

async fn start_vm(State(c): Ctl, Path((t, p, id)): ItemPath, IfMatch(rev): IfMatch) -> ApiResult<Response> {
    act(&c, t, p, &id, Action::Start, rev).await
}

async fn stop_vm(State(c): Ctl, Path((t, p, id)): ItemPath, IfMatch(rev): IfMatch) -> ApiResult<Response> {
    act(&c, t, p, &id, Action::Stop, rev).await
}

async fn reboot_vm(State(c): Ctl, Path((t, p, id)): ItemPath, IfMatch(rev): IfMatch) -> ApiResult<Response> {
    act(&c, t, p, &id, Action::Reboot, rev).await
}

/// `DELETE …/vms/{id}`: 202 while its agent tears it down; the record goes after.
async fn delete_vm(State(c): Ctl, Path((t, p, id)): ItemPath, IfMatch(rev): IfMatch) -> ApiResult<Response> {
    let o = owner((t, p));
    let vm = ops::act(&c.store, &o, &id, Action::Delete, rev).await.map_err(api_error)?;
    // A VM on a worker that never registered (or was removed) has nothing to tear down.
    let hosts = records::hosts(&c.store).await.map_err(api_error)?;
    if !hosts.iter().any(|h| h.name == vm.host) {
        ops::finish_delete(&c.store, &c.net, &vm).await.map_err(api_error)?;
        return Ok(http::StatusCode::NO_CONTENT.into_response());
    }
    c.store.bump().await.map_err(api_error)?;
    Ok((http::StatusCode::ACCEPTED, Json(view(&c.store, vm).await.map_err(api_error)?)).into_response())
}

async fn migrate_vm(
    State(c): Ctl,
    Path((t, p, id)): ItemPath,
    IfMatch(rev): IfMatch,
    ApiJson(r): ApiJson<ops::MigrateRequest>,
) -> ApiResult<Response> {
    let vm = ops::migrate(&c.store, &c.net, &owner((t, p)), &id, &r, rev).await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, view(&c.store, vm).await.map_err(api_error)?))
}

async fn console(State(c): Ctl, Path((t, p, id)): ItemPath) -> ApiResult<String> {
    let vm = ops::resolve::<Vm>(&c.store, &owner((t, p)), &id, "VM").await.map_err(api_error)?;
    records::console(&c.store, &vm.id).await.map_err(api_error)
}

async fn events(State(c): Ctl, Path((t, p, id)): ItemPath) -> ApiResult<Json<Items<Event>>> {
    let vm = ops::resolve::<Vm>(&c.store, &owner((t, p)), &id, "VM").await.map_err(api_error)?;
    Ok(Json(Items::all(records::events(&c.store, &vm.id).await.map_err(api_error)?)))
}

async fn import_image(
    State(c): Ctl,
    Path((t, p)): ProjectPath,
    ApiJson(r): ApiJson<ops::NewImage>,
) -> ApiResult<Response> {
    ops::import_image(&c.store, &owner((t, p)), &r, &c.images).await.map(created).map_err(api_error)
}

async fn list_images(
    State(c): Ctl,
    Path((t, p)): ProjectPath,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Items<Image>>> {
    c.store.list_page::<Image>(&owner((t, p)), &q).await.map(Json).map_err(api_error)
}

async fn show_image(State(c): Ctl, Path((t, p, id)): ItemPath) -> ApiResult<Response> {
    let image = ops::resolve::<Image>(&c.store, &owner((t, p)), &id, "image").await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, image))
}

async fn delete_image(State(c): Ctl, Path((t, p, id)): ItemPath) -> ApiResult<http::StatusCode> {
    ops::delete_image(&c.store, &owner((t, p)), &id).await.map_err(api_error)?;
    Ok(http::StatusCode::NO_CONTENT)
}

async fn create_volume(
    State(c): Ctl,
    Path((t, p)): ProjectPath,
    ApiJson(r): ApiJson<ops::NewVolume>,
) -> ApiResult<Response> {
    ops::create_volume(&c.store, &owner((t, p)), &r).await.map(created).map_err(api_error)
}

async fn list_volumes(
    State(c): Ctl,
    Path((t, p)): ProjectPath,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Items<Volume>>> {
    c.store.list_page::<Volume>(&owner((t, p)), &q).await.map(Json).map_err(api_error)
}

async fn show_volume(State(c): Ctl, Path((t, p, id)): ItemPath) -> ApiResult<Response> {
    let vol = ops::resolve::<Volume>(&c.store, &owner((t, p)), &id, "volume").await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, vol))
}

/// `GET …/events`: the project's audit trail (every change, who, when), oldest first.
async fn list_audit(
    State(c): Ctl,
    Path((t, p)): ProjectPath,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Items<AuditEvent>>> {
    c.store.events(&owner((t, p)), &q).await.map(Json).map_err(api_error)
}

async fn delete_volume(State(c): Ctl, Path((t, p, id)): ItemPath) -> ApiResult<http::StatusCode> {
    ops::delete_volume(&c.store, &owner((t, p)), &id).await.map_err(api_error)?;
    Ok(http::StatusCode::NO_CONTENT)
}

/// `POST …/volumes/{id}/attach`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttachRequest {
    /// The VM (ID or name; stopped) to attach the volume to.
    pub vm: String,
}

async fn attach_volume(
    State(c): Ctl,
    Path((t, p, id)): ItemPath,
    IfMatch(rev): IfMatch,
    ApiJson(r): ApiJson<AttachRequest>,
) -> ApiResult<Response> {
    let vol = ops::set_attachment(&c.store, &owner((t, p)), &id, Some(&r.vm), rev).await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, vol))
}

async fn detach_volume(State(c): Ctl, Path((t, p, id)): ItemPath, IfMatch(rev): IfMatch) -> ApiResult<Response> {
    let vol = ops::set_attachment(&c.store, &owner((t, p)), &id, None, rev).await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, vol))
}

/// `PUT /v1/hosts/{host}`: an agent's registration and heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRegistration {
    /// vCPUs offered.
    pub vcpus: u32,
    /// Memory offered (MiB).
    pub memory_mib: u32,
    /// `kvm` or `tcg`.
    pub accel: String,
    /// The agent's disk-transfer URL.
    pub agent_url: String,
    /// Its underlay address.
    pub address: Ipv4Addr,
}

fn check_host_name(host: &str) -> ApiResult<()> {
    if host.is_empty() || host.len() > 63 || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(ApiError::invalid(format!("host name {host:?}: letters, digits, dashes, dots")));
    }
    Ok(())
}

async fn register_host(
    State(c): Ctl,
    Path(host): Path<String>,
    ApiJson(r): ApiJson<HostRegistration>,
) -> ApiResult<http::StatusCode> {
    check_host_name(&host)?;
    let h = Host {
        name: host,
        vcpus: r.vcpus,
        memory_mib: r.memory_mib,
        accel: r.accel,
        agent_url: r.agent_url,
        address: r.address,
        seen_ms: now_ms(),
    };
    records::put_host(&c.store, &h).await.map_err(api_error)?;
    Ok(http::StatusCode::NO_CONTENT)
}

async fn list_hosts(State(c): Ctl) -> ApiResult<Json<Items<Host>>> {
    Ok(Json(Items::all(records::hosts(&c.store).await.map_err(api_error)?)))
}

/// A VM's migration source, as its target sees it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SourceInfo {
    /// The source worker.
    pub host: String,
    /// Its agent's disk-transfer URL.
    pub agent_url: String,
    /// Its underlay address.
    pub address: Ipv4Addr,
    /// Whether it has stopped the VM and its disks can be copied (cold).
    pub ready: bool,
    /// Whether the guest was up there (live: it stays up, so the target does not wait for a
    /// readiness marker it will not print again).
    #[serde(default)]
    pub guest_ready: bool,
}

/// One VM of a host's plan.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedVm {
    /// The VM.
    pub vm: Vm,
    /// Its image.
    pub image: Image,
    /// Its volumes.
    pub volumes: Vec<Volume>,
    /// On a migration target: the source.
    #[serde(default)]
    pub source: Option<SourceInfo>,
}

/// What a host should run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HostPlan {
    /// The version it was made at.
    pub version: u64,
    /// VMs placed on the host, or migrating to it.
    pub vms: Vec<PlannedVm>,
    /// Every volume living on the host (files of others are removed).
    pub volumes: Vec<Volume>,
}

async fn host_plan(State(c): Ctl, Path(host): Path<String>) -> ApiResult<Json<HostPlan>> {
    check_host_name(&host)?;
    c.plans.plan_for(&c.store, &host).await.map(Json).map_err(api_error)
}

async fn put_status(
    State(c): Ctl,
    Path((host, vm)): Path<(String, String)>,
    ApiJson(s): ApiJson<VmStatus>,
) -> ApiResult<http::StatusCode> {
    ops::report(&c.store, &c.net, &host, &vm, s).await.map_err(api_error)?;
    Ok(http::StatusCode::NO_CONTENT)
}

async fn put_console(
    State(c): Ctl,
    Path((host, vm)): Path<(String, String)>,
    body: String,
) -> ApiResult<http::StatusCode> {
    // Only the worker the VM runs on (or is moving to) writes its console.
    let bound = c
        .store
        .get::<Vm>(&vm)
        .await
        .map_err(api_error)?
        .filter(|v| v.host == host || v.migration.as_ref().is_some_and(|m| m.target == host));
    if bound.is_none() {
        return Err(ApiError::not_found(format!("no VM {vm} on host {host}")));
    }
    let mut cut = body.len().saturating_sub(CONSOLE_KEPT);
    while !body.is_char_boundary(cut) {
        cut += 1;
    }
    let tail = &body[cut..];
    records::put_console(&c.store, &vm, tail).await.map_err(api_error)?;
    Ok(http::StatusCode::NO_CONTENT)
}

async fn watch_version(State(c): Ctl, Query(q): Query<WatchQuery>) -> Json<WatchAnswer> {
    Json(c.version.wait(q.after).await)
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

/// The API router, every route but the OpenAPI document behind `guard`.
pub fn router(ctl: Arc<Controller>, guard: &Arc<Guard>) -> Router {
    let g = |action: &'static str| guard.require(action);
    let node = |action: &'static str| guard.require_node(action);
    // Creates take `Idempotency-Key`; the layer sits inside the guard (added first).
    let idem = axum::middleware::from_fn_with_state(ctl.store.clone(), ultracloud_resource::idempotency::layer);
    let base = "/v1/tenants/{tenant}/projects/{project}";
    Router::new()
        .route(
            &format!("{base}/vms"),
            post(create_vm)
                .route_layer(idem.clone())
                .route_layer(g("compute.vm.create"))
                .merge(get(list_vms).route_layer(g("compute.vm.list"))),
        )
        .route(
            &format!("{base}/vms/{{id}}"),
            get(show_vm)
                .route_layer(g("compute.vm.read"))
                .merge(axum::routing::delete(delete_vm).route_layer(g("compute.vm.delete"))),
        )
        .route(&format!("{base}/vms/{{id}}/start"), post(start_vm).route_layer(g("compute.vm.start")))
        .route(&format!("{base}/vms/{{id}}/stop"), post(stop_vm).route_layer(g("compute.vm.stop")))
        .route(&format!("{base}/vms/{{id}}/reboot"), post(reboot_vm).route_layer(g("compute.vm.reboot")))
        .route(&format!("{base}/vms/{{id}}/migrate"), post(migrate_vm).route_layer(g("compute.vm.migrate")))
        .route(&format!("{base}/vms/{{id}}/console"), get(console).route_layer(g("compute.vm.console")))
        .route(&format!("{base}/vms/{{id}}/events"), get(events).route_layer(g("compute.vm.read")))
        .route(
            &format!("{base}/images"),
            post(import_image)
                .route_layer(idem.clone())
                .route_layer(g("compute.image.create"))
                .merge(get(list_images).route_layer(g("compute.image.list"))),
        )
        .route(
            &format!("{base}/images/{{id}}"),
            get(show_image)
                .route_layer(g("compute.image.read"))
                .merge(axum::routing::delete(delete_image).route_layer(g("compute.image.delete"))),
        )
        .route(
            &format!("{base}/volumes"),
            post(create_volume)
                .route_layer(idem.clone())
                .route_layer(g("storage.volume.create"))
                .merge(get(list_volumes).route_layer(g("storage.volume.list"))),
        )
        .route(
            &format!("{base}/volumes/{{id}}"),
            get(show_volume)
                .route_layer(g("storage.volume.read"))
                .merge(axum::routing::delete(delete_volume).route_layer(g("storage.volume.delete"))),
        )
        .route(&format!("{base}/volumes/{{id}}/attach"), post(attach_volume).route_layer(g("storage.volume.attach")))
        .route(&format!("{base}/volumes/{{id}}/detach"), post(detach_volume).route_layer(g("storage.volume.detach")))
        .route(&format!("{base}/vms/{{id}}/metadata"), patch(patch_vm_meta).route_layer(g("compute.vm.update")))
        .route(
            &format!("{base}/images/{{id}}/metadata"),
            patch(patch_meta::<Controller, Image>).route_layer(g("compute.image.update")),
        )
        .route(
            &format!("{base}/volumes/{{id}}/metadata"),
            patch(patch_meta::<Controller, Volume>).route_layer(g("storage.volume.update")),
        )
        .route(&format!("{base}/events"), get(list_audit).route_layer(g("compute.event.list")))
        // Platform-only: operators and platform services list the workers; each worker's
        // agent touches only its own host's records (the node authorizer).
        .route("/v1/hosts", get(list_hosts).route_layer(g("platform.host.list")))
        .route("/v1/hosts/{host}", put(register_host).route_layer(node("platform.host.register")))
        .route("/v1/hosts/{host}/plan", get(host_plan).route_layer(node("platform.host.read")))
        .route("/v1/hosts/{host}/vms/{vm}/status", put(put_status).route_layer(node("platform.host.report")))
        .route("/v1/hosts/{host}/vms/{vm}/console", put(put_console).route_layer(node("platform.host.report")))
        .route("/v1/watch", get(watch_version).route_layer(node("platform.host.read")))
        .route("/v1/openapi.json", get(openapi))
        .with_state(ctl)
}
