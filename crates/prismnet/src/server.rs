//! The controller's HTTP API. Tenant resources live under
//! `/v1/tenants/{tenant}/projects/{project}/…` and every route is guarded by iam
//! (`network.<resource>.<verb>` in that project); agents use the platform-only `/v1/hosts/…`
//! and `/v1/watch` with their node's own credential (the node authorizer keeps each to its
//! host). A port's binding and platform device owners are set by the platform only.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::routing::{delete, get, patch, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use ultracloud_iam::guard::{Guard, Principal};
use ultracloud_iam::policy::Scope;
use ultracloud_runtime::error::{ApiError, ApiJson};

use crate::model::{Owner, Port, Router as NetRouter, Rule, SecurityGroup, ServiceIp, Subnet, Vpc};
use crate::ops;
use crate::plan::{self, HostPlan};
use crate::store::{Host, Resource, Store};
use ultracloud_resource::audit::Event;
pub use ultracloud_resource::http::Items;
use ultracloud_resource::http::{HasStore, IfMatch, api_error, created, owner, patch_meta, with_etag};
use ultracloud_resource::page::ListQuery;
pub use ultracloud_resource::watch::{VersionWatch, WatchAnswer, WatchQuery};

/// The controller: its store and the version agents watch.
#[derive(Debug)]
pub struct Controller {
    /// flaredb records.
    pub store: Store,
    version: VersionWatch,
}

impl HasStore for Controller {
    fn store(&self) -> &Store {
        &self.store
    }
}

impl Controller {
    /// A controller over `store`; `watch_versions` keeps the version current.
    pub fn new(store: Store) -> Arc<Self> {
        Arc::new(Self { store, version: VersionWatch::default() })
    }

    /// Keeps the version agents long-poll current until `shutdown`.
    pub async fn watch_versions(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        self.version.follow(&self.store, shutdown).await;
    }
}

type Ctl = State<Arc<Controller>>;
type ApiResult<T> = Result<T, ApiError>;

async fn list<R: Resource + Serialize>(ctl: &Controller, o: &Owner, q: &ListQuery) -> ApiResult<Json<Items<R>>> {
    ctl.store.list_page::<R>(o, q).await.map(Json).map_err(api_error)
}

async fn show<R: Resource + Serialize>(ctl: &Controller, o: &Owner, id: &str, what: &str) -> ApiResult<Response> {
    let r = ops::resolve::<R>(&ctl.store, o, id, what).await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, r))
}

macro_rules! handlers {
    ($list:ident, $show:ident, $ty:ty, $what:literal) => {
        async fn $list(
            State(c): Ctl,
            Path(p): Path<(String, String)>,
            Query(q): Query<ListQuery>,
        ) -> ApiResult<Json<Items<$ty>>> {
            list::<$ty>(&c, &owner(p), &q).await
        }
        async fn $show(State(c): Ctl, Path((t, p, id)): Path<(String, String, String)>) -> ApiResult<Response> {
            show::<$ty>(&c, &owner((t, p)), &id, $what).await
        }
    };
}

/// `GET …/events`: the project's audit trail (every change, who, when), oldest first.
async fn list_events(
    State(c): Ctl,
    Path(p): Path<(String, String)>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Items<Event>>> {
    c.store.events(&owner(p), &q).await.map(Json).map_err(api_error)
}

handlers!(list_vpcs, show_vpc, Vpc, "VPC");
handlers!(list_subnets, show_subnet, Subnet, "subnet");
handlers!(list_routers, show_router, NetRouter, "router");
handlers!(list_groups, show_group, SecurityGroup, "security group");
handlers!(list_ports, show_port, Port, "port");
handlers!(list_sips, show_sip, ServiceIp, "service IP");

async fn create_vpc(
    State(c): Ctl,
    Path(p): Path<(String, String)>,
    ApiJson(r): ApiJson<ops::NewVpc>,
) -> ApiResult<Response> {
    ops::create_vpc(&c.store, &owner(p), &r).await.map(created).map_err(api_error)
}

async fn create_subnet(
    State(c): Ctl,
    Path(p): Path<(String, String)>,
    ApiJson(r): ApiJson<ops::NewSubnet>,
) -> ApiResult<Response> {
    ops::create_subnet(&c.store, &owner(p), &r).await.map(created).map_err(api_error)
}

async fn create_router(
    State(c): Ctl,
    Path(p): Path<(String, String)>,
    ApiJson(r): ApiJson<ops::NewRouter>,
) -> ApiResult<Response> {
    ops::create_router(&c.store, &owner(p), &r).await.map(created).map_err(api_error)
}

async fn create_group(
    State(c): Ctl,
    Path(p): Path<(String, String)>,
    ApiJson(r): ApiJson<ops::NewSecurityGroup>,
) -> ApiResult<Response> {
    ops::create_security_group(&c.store, &owner(p), &r).await.map(created).map_err(api_error)
}

/// `PUT …/security-groups/{id}`: the new rules.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupRules {
    /// The group's rules, replacing the old ones.
    pub rules: Vec<Rule>,
}

async fn update_group(
    State(c): Ctl,
    Path((t, p, id)): Path<(String, String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(r): ApiJson<GroupRules>,
) -> ApiResult<Response> {
    let o = owner((t, p));
    let g: SecurityGroup = ops::resolve(&c.store, &o, &id, "security group").await.map_err(api_error)?;
    let g = ops::update_security_group(&c.store, &o, &g.id, r.rules, if_match).await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, g))
}

/// Whether the caller acts for the platform (may set a port's platform-only fields): it holds
/// `platform.port.bind`, which only platform roles bound platform-wide grant.
fn by(caller: &Principal) -> ops::By {
    if caller.may("platform.port.bind", &Scope::System) { ops::By::Platform } else { ops::By::Tenant }
}

async fn create_port(
    State(c): Ctl,
    caller: Principal,
    Path(p): Path<(String, String)>,
    ApiJson(r): ApiJson<ops::NewPort>,
) -> ApiResult<Response> {
    ops::create_port(&c.store, &owner(p), &r, by(&caller)).await.map(created).map_err(api_error)
}

async fn update_port(
    State(c): Ctl,
    caller: Principal,
    Path((t, p, id)): Path<(String, String, String)>,
    IfMatch(if_match): IfMatch,
    ApiJson(r): ApiJson<ops::PortPatch>,
) -> ApiResult<Response> {
    let port = ops::update_port(&c.store, &owner((t, p)), &id, &r, by(&caller), if_match).await.map_err(api_error)?;
    Ok(with_etag(http::StatusCode::OK, port))
}

async fn delete_port(
    State(c): Ctl,
    caller: Principal,
    Path((t, p, id)): Path<(String, String, String)>,
) -> ApiResult<http::StatusCode> {
    let o = owner((t, p));
    let port: Port = ops::resolve(&c.store, &o, &id, "port").await.map_err(api_error)?;
    ops::delete_port(&c.store, &o, port.id(), by(&caller)).await.map_err(api_error)?;
    Ok(http::StatusCode::NO_CONTENT)
}

async fn create_sip(
    State(c): Ctl,
    Path(p): Path<(String, String)>,
    ApiJson(r): ApiJson<ops::NewServiceIp>,
) -> ApiResult<Response> {
    ops::create_service_ip(&c.store, &owner(p), &r).await.map(created).map_err(api_error)
}

macro_rules! deleter {
    ($name:ident, $ty:ty, $what:literal, $op:path) => {
        async fn $name(State(c): Ctl, Path((t, p, id)): Path<(String, String, String)>) -> ApiResult<http::StatusCode> {
            let o = owner((t, p));
            let r: $ty = ops::resolve(&c.store, &o, &id, $what).await.map_err(api_error)?;
            $op(&c.store, &o, r.id()).await.map_err(api_error)?;
            Ok(http::StatusCode::NO_CONTENT)
        }
    };
}

deleter!(delete_vpc, Vpc, "VPC", ops::delete_vpc);
deleter!(delete_subnet, Subnet, "subnet", ops::delete_subnet);
deleter!(delete_router, NetRouter, "router", ops::delete_router);
deleter!(delete_group, SecurityGroup, "security group", ops::delete_security_group);
deleter!(delete_sip, ServiceIp, "service IP", ops::delete_service_ip);

/// `PUT /v1/hosts/{host}`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostRegistration {
    /// The address other hosts' VXLAN tunnels reach this host on.
    pub underlay_ip: std::net::Ipv4Addr,
}

async fn register_host(
    State(c): Ctl,
    Path(host): Path<String>,
    ApiJson(r): ApiJson<HostRegistration>,
) -> ApiResult<http::StatusCode> {
    if host.is_empty() || host.len() > 63 || !host.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    {
        return Err(ApiError::invalid(format!("host name {host:?}: letters, digits, dashes, dots")));
    }
    crate::store::put_host(&c.store, &Host { name: host, underlay_ip: r.underlay_ip }).await.map_err(api_error)?;
    Ok(http::StatusCode::NO_CONTENT)
}

async fn host_plan(State(c): Ctl, Path(host): Path<String>) -> ApiResult<Json<HostPlan>> {
    plan::for_host(&c.store, &host).await.map(Json).map_err(api_error)
}

async fn watch_version(State(c): Ctl, Query(q): Query<WatchQuery>) -> Json<WatchAnswer> {
    Json(c.version.wait(q.after).await)
}

async fn openapi() -> Json<serde_json::Value> {
    Json(crate::openapi::document())
}

/// The API router, every route behind `guard`.
pub fn router(ctl: Arc<Controller>, guard: &Arc<Guard>) -> Router {
    let g = |action: &'static str| guard.require(action);
    // Creates take `Idempotency-Key`; the layer sits inside the guard (added first).
    let idem = axum::middleware::from_fn_with_state(ctl.store.clone(), ultracloud_resource::idempotency::layer);
    let node = |action: &'static str| guard.require_node(action);
    let base = "/v1/tenants/{tenant}/projects/{project}";
    Router::new()
        .route(
            &format!("{base}/vpcs"),
            post(create_vpc)
                .route_layer(idem.clone())
                .route_layer(g("network.vpc.create"))
                .merge(get(list_vpcs).route_layer(g("network.vpc.list"))),
        )
        .route(
            &format!("{base}/vpcs/{{id}}"),
            get(show_vpc)
                .route_layer(g("network.vpc.read"))
                .merge(delete(delete_vpc).route_layer(g("network.vpc.delete"))),
        )
        .route(
            &format!("{base}/subnets"),
            post(create_subnet)
                .route_layer(idem.clone())
                .route_layer(g("network.subnet.create"))
                .merge(get(list_subnets).route_layer(g("network.subnet.list"))),
        )
        .route(
            &format!("{base}/subnets/{{id}}"),
            get(show_subnet)
                .route_layer(g("network.subnet.read"))
                .merge(delete(delete_subnet).route_layer(g("network.subnet.delete"))),
        )
        .route(
            &format!("{base}/routers"),
            post(create_router)
                .route_layer(idem.clone())
                .route_layer(g("network.router.create"))
                .merge(get(list_routers).route_layer(g("network.router.list"))),
        )
        .route(
            &format!("{base}/routers/{{id}}"),
            get(show_router)
                .route_layer(g("network.router.read"))
                .merge(delete(delete_router).route_layer(g("network.router.delete"))),
        )
        .route(
            &format!("{base}/security-groups"),
            post(create_group)
                .route_layer(idem.clone())
                .route_layer(g("network.security_group.create"))
                .merge(get(list_groups).route_layer(g("network.security_group.list"))),
        )
        .route(
            &format!("{base}/security-groups/{{id}}"),
            get(show_group)
                .route_layer(g("network.security_group.read"))
                .merge(put(update_group).route_layer(g("network.security_group.update")))
                .merge(delete(delete_group).route_layer(g("network.security_group.delete"))),
        )
        .route(
            &format!("{base}/ports"),
            post(create_port)
                .route_layer(idem.clone())
                .route_layer(g("network.port.create"))
                .merge(get(list_ports).route_layer(g("network.port.list"))),
        )
        .route(
            &format!("{base}/ports/{{id}}"),
            get(show_port)
                .route_layer(g("network.port.read"))
                .merge(patch(update_port).route_layer(g("network.port.update")))
                .merge(delete(delete_port).route_layer(g("network.port.delete"))),
        )
        .route(
            &format!("{base}/service-ips"),
            post(create_sip)
                .route_layer(idem.clone())
                .route_layer(g("network.service_ip.create"))
                .merge(get(list_sips).route_layer(g("network.service_ip.list"))),
        )
        .route(
            &format!("{base}/service-ips/{{id}}"),
            get(show_sip)
                .route_layer(g("network.service_ip.read"))
                .merge(delete(delete_sip).route_layer(g("network.service_ip.delete"))),
        )
        .route(
            &format!("{base}/vpcs/{{id}}/metadata"),
            patch(patch_meta::<Controller, Vpc>).route_layer(g("network.vpc.update")),
        )
        .route(
            &format!("{base}/subnets/{{id}}/metadata"),
            patch(patch_meta::<Controller, Subnet>).route_layer(g("network.subnet.update")),
        )
        .route(
            &format!("{base}/routers/{{id}}/metadata"),
            patch(patch_meta::<Controller, NetRouter>).route_layer(g("network.router.update")),
        )
        .route(
            &format!("{base}/security-groups/{{id}}/metadata"),
            patch(patch_meta::<Controller, SecurityGroup>).route_layer(g("network.security_group.update")),
        )
        .route(
            &format!("{base}/ports/{{id}}/metadata"),
            patch(patch_meta::<Controller, Port>).route_layer(g("network.port.update")),
        )
        .route(
            &format!("{base}/service-ips/{{id}}/metadata"),
            patch(patch_meta::<Controller, ServiceIp>).route_layer(g("network.service_ip.update")),
        )
        .route(&format!("{base}/events"), get(list_events).route_layer(g("network.event.list")))
        // Platform-only agent routes: each worker's agent reads and registers its own host.
        .route("/v1/hosts/{host}", put(register_host).route_layer(node("platform.host.register")))
        .route("/v1/hosts/{host}/plan", get(host_plan).route_layer(node("platform.host.read")))
        .route("/v1/watch", get(watch_version).route_layer(node("platform.host.read")))
        .route("/v1/openapi.json", get(openapi))
        .with_state(ctl)
}
