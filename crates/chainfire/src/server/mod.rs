//! Start-up of a chainfire member: storage, identity, Raft, the gRPC listeners, and the
//! leader's background duties (lease expiry, promotion of caught-up learners).

mod authority;
pub mod cluster;
pub mod health;
pub mod kv;
pub mod lease;
pub mod listen;
pub mod maintenance;
pub mod peer;
pub mod watch;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use openraft::ChangeMembers;
use redb::{Database, ReadableDatabase, TableDefinition};
use tokio_util::sync::CancellationToken;
use ultracloud_runtime::admin::{ListenError, bind};

use crate::config::{ChainfireConfig, ClusterState, cluster_id, member_id, socket_of};
use crate::error::EtcdError;
use crate::lessor::Lessor;
use crate::mvcc::Mvcc;
use crate::node::Node;
use crate::pb::etcdserverpb::cluster_server::ClusterServer;
use crate::pb::etcdserverpb::kv_server::KvServer;
use crate::pb::etcdserverpb::lease_server::LeaseServer;
use crate::pb::etcdserverpb::maintenance_server::MaintenanceServer;
use crate::pb::etcdserverpb::watch_server::WatchServer;
use crate::pb::peer::internal_request::Request as Internal;
use crate::pb::peer::peer_server::PeerServer;
use crate::pb::peer::{Empty, InternalRequest, MemberAttributes};
use crate::raft::LogStore;
use crate::raft::network::{MAX_PEER_MESSAGE, Network, peer_channel, peer_client};
use crate::raft::state_machine::StateMachine;
use crate::raft::types::{Member, Raft};
use crate::watch_hub::WatchHub;

pub use crate::data_files::{LOG_FILE, SNAPSHOT_FILE, STORE_FILE};
/// Local (never replicated) facts of this member: its ID and its cluster's.
const LOCAL: TableDefinition<&str, u64> = TableDefinition::new("local");
/// gRPC framing overhead allowed above `max_request_bytes` (as etcd does).
const GRPC_OVERHEAD: usize = 512 * 1024;

/// Why a member could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The database could not be opened.
    #[error("cannot open the store {path}")]
    Storage {
        /// The database file.
        path: std::path::PathBuf,
        /// What failed.
        #[source]
        source: redb::Error,
    },
    /// A store operation failed.
    #[error("store error: {0}")]
    Store(#[from] EtcdError),
    /// Configuration that cannot work (bad URL, unknown member…).
    #[error("{0}")]
    Config(String),
    /// A listener could not be bound.
    #[error(transparent)]
    Listen(#[from] ListenError),
    /// Raft failed to start.
    #[error("raft: {0}")]
    Raft(String),
}

/// A running member.
pub struct Running {
    /// The member.
    pub node: Arc<Node>,
    /// Client API addresses actually bound.
    pub client_addrs: Vec<SocketAddr>,
    /// Peer addresses actually bound.
    pub peer_addrs: Vec<SocketAddr>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running").field("client_addrs", &self.client_addrs).finish_non_exhaustive()
    }
}

impl Running {
    /// Waits for the listeners to finish (after `shutdown` was cancelled), stops Raft, and makes
    /// the store durable so the next start need not re-apply the log.
    pub async fn wait(self) {
        for t in self.tasks {
            let _ = t.await;
        }
        if let Err(e) = self.node.raft.shutdown().await {
            tracing::warn!(error = %e, "raft shutdown");
        }
        if let Err(e) = self.node.state_machine.sync() {
            tracing::warn!(error = %e, "syncing the store at shutdown");
        }
    }
}

fn storage_err(path: &std::path::Path) -> impl Fn(redb::Error) -> StartError + '_ {
    move |source| StartError::Storage { path: path.to_owned(), source }
}

/// Starts a member with `config`, its state in `data_dir` (already locked by the caller), and
/// serves until `shutdown` is cancelled. `http`: plain HTTP routes served on the client URLs
/// beside the etcd API and `/health` (the runtime's `/metrics`, `/readyz`…), as etcd does.
pub fn start<'a>(
    config: ChainfireConfig,
    data_dir: &'a std::path::Path,
    shutdown: CancellationToken,
    http: axum::Router,
) -> ultracloud_runtime::Entry<'a, Result<Running, StartError>> {
    Box::pin(start_member(config, data_dir, shutdown, http))
}

async fn start_member(
    config: ChainfireConfig,
    data_dir: &std::path::Path,
    shutdown: CancellationToken,
    http: axum::Router,
) -> Result<Running, StartError> {
    // Two files, so the log writer's fsyncs and the state machine's applies never wait for each
    // other's write lock (redb has one writer per database).
    let log_path = data_dir.join(LOG_FILE);
    let db = Arc::new(Database::create(&log_path).map_err(|e| storage_err(&log_path)(e.into()))?);
    let log: LogStore =
        ultracloud_raftlog::LogDb::open(db.clone(), "chainfire-log-writer").map_err(storage_err(&log_path))?.group(0);
    let store_path = data_dir.join(STORE_FILE);
    let store_db = Arc::new(Database::create(&store_path).map_err(|e| storage_err(&store_path)(e.into()))?);
    let mvcc = Mvcc::open(store_db)?;

    // Bind first, so a taken port fails the start before anything else happens.
    let mut client_listeners = Vec::new();
    for url in &config.listen_client_urls {
        let addr = socket_of(url).map_err(StartError::Config)?;
        client_listeners.push(bind(addr, "chainfire client API (--listen-client-urls)").await?);
    }
    let mut peer_listeners = Vec::new();
    for url in &config.listen_peer_urls {
        let addr = socket_of(url).map_err(StartError::Config)?;
        peer_listeners.push(bind(addr, "chainfire peer API (--listen-peer-urls)").await?);
    }

    let (id, cluster) = identity(&db, &config).await?;
    tracing::info!(member = format!("{id:x}"), cluster = format!("{cluster:x}"), name = %config.name, "chainfire identity");

    let revs = mvcc.revisions()?;
    let hub = WatchHub::new(revs.current, 0);
    let lessor = Arc::new(Lessor::default());
    lessor.reset(mvcc.leases()?);
    let sm = StateMachine::new(mvcc.clone(), hub.clone(), lessor.clone(), data_dir.join(SNAPSHOT_FILE));
    hub.set_applied(sm.applied_index());
    let raft_config = openraft::Config {
        cluster_name: config.initial_cluster_token.clone(),
        heartbeat_interval: config.heartbeat_interval_ms,
        election_timeout_min: config.election_timeout_ms,
        election_timeout_max: config.election_timeout_ms * 2,
        install_snapshot_timeout: 10_000,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(config.snapshot_count),
        max_in_snapshot_log_to_keep: config.snapshot_catchup_entries,
        // Purge in batches, but never wait for more entries than a snapshot interval holds.
        purge_batch_size: (config.snapshot_count / 2).clamp(1, 256),
        ..Default::default()
    }
    .validate()
    .map_err(|e| StartError::Config(format!("raft settings: {e}")))?;
    let raft = Raft::new(id, Arc::new(raft_config), Network::default(), log, sm.clone())
        .await
        .map_err(|e| StartError::Raft(e.to_string()))?;

    if config.initial_cluster_state == ClusterState::New
        && !raft.is_initialized().await.map_err(|e| StartError::Raft(e.to_string()))?
    {
        let members = initial_members(&config)?;
        // Every member of a new cluster initializes with the same membership; that is safe.
        if let Err(e) = raft.initialize(members).await {
            tracing::debug!(error = %e, "initialize (another member may have done it)");
        }
    }

    let node = Arc::new(Node::new(id, cluster, raft, mvcc, hub, lessor, config.clone(), sm, shutdown.clone()));
    let mut tasks = Vec::new();
    let client_addrs: Vec<SocketAddr> = client_listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let peer_addrs: Vec<SocketAddr> = peer_listeners.iter().filter_map(|l| l.local_addr().ok()).collect();
    let max_msg = config.max_request_bytes + GRPC_OVERHEAD;
    let tls = ultracloud_tls::setup(config.tls_dir.as_deref(), ultracloud_tls::ClientAuth::Required)
        .map_err(|e| StartError::Config(e.to_string()))?
        .map(|s| {
            let mut rustls = (*s.config).clone();
            rustls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            ultracloud_tls::serve::TlsAcceptor::from(Arc::new(rustls))
        });
    // Without TLS there is no certificate to check; the listeners are loopback-only then.
    let gate = |routes: tonic::service::Routes, roles: &'static [ultracloud_tls::Role]| -> axum::Router {
        let router = routes.into_axum_router();
        if tls.is_none() {
            return router;
        }
        router.layer(axum::middleware::from_fn_with_state(roles, listen::require_role))
    };
    let public_http = health::routes(node.clone()).merge(http);
    for listener in client_listeners {
        let mut grpc = tonic::service::RoutesBuilder::default();
        grpc.add_service(KvServer::new(kv::KvService::new(node.clone())).max_decoding_message_size(max_msg))
            .add_service(WatchServer::new(watch::WatchService::new(node.clone())).max_decoding_message_size(max_msg))
            .add_service(LeaseServer::new(lease::LeaseService::new(node.clone())).max_decoding_message_size(max_msg))
            .add_service(ClusterServer::new(cluster::ClusterService::new(node.clone())))
            .add_service(
                MaintenanceServer::new(maintenance::MaintenanceService::new(
                    node.clone(),
                    vec![log_path.clone(), store_path.clone()],
                ))
                .max_encoding_message_size(MAX_PEER_MESSAGE),
            );
        // etcd answers plain HTTP (`/health`, `/metrics`) on its client URLs too.
        let app = health::beside_grpc(public_http.clone(), gate(grpc.routes(), crate::tls::CLIENT_ROLES));
        let server = tonic::transport::Server::builder().accept_http1(true).add_routes(app.into());
        let incoming = listen::incoming(listener, tls.clone(), shutdown.clone());
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await {
                tracing::error!(error = %e, "client API server failed");
            }
        }));
    }
    for listener in peer_listeners {
        let svc = PeerServer::new(peer::PeerService::new(node.clone()))
            .max_decoding_message_size(MAX_PEER_MESSAGE)
            .max_encoding_message_size(MAX_PEER_MESSAGE);
        let routes = gate(tonic::service::Routes::new(svc), crate::tls::PEER_ROLES);
        let server = tonic::transport::Server::builder().add_routes(routes.into());
        let incoming = listen::incoming(listener, tls.clone(), shutdown.clone());
        let stop = shutdown.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = server.serve_with_incoming_shutdown(incoming, stop.cancelled_owned()).await {
                tracing::error!(error = %e, "peer API server failed");
            }
        }));
    }
    tasks.push(tokio::spawn(leader_duties(node.clone(), shutdown.clone())));
    tasks.push(tokio::spawn(publish_attributes(node.clone(), shutdown.clone())));
    tracing::info!(client = ?client_addrs, peer = ?peer_addrs, "chainfire serving");
    Ok(Running { node, client_addrs, peer_addrs, tasks })
}

fn initial_members(config: &ChainfireConfig) -> Result<BTreeMap<u64, Member>, StartError> {
    let members = config.initial_members().map_err(|e| StartError::Config(e.to_string()))?;
    Ok(members
        .into_iter()
        .map(|m| {
            let id = member_id(&m.peer_urls, &config.initial_cluster_token, None);
            (id, Member { name: m.name, peer_urls: m.peer_urls, learner: false })
        })
        .collect())
}

/// This member's ID and its cluster's: stored after the first start; derived from the initial
/// cluster for a new cluster; learned from the running members when joining one.
async fn identity(db: &Database, config: &ChainfireConfig) -> Result<(u64, u64), StartError> {
    let read = || -> Result<Option<(u64, u64)>, redb::Error> {
        let tx = db.begin_read()?;
        let t = match tx.open_table(LOCAL) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let id = t.get("member_id")?.map(|v| v.value());
        let cluster = t.get("cluster_id")?.map(|v| v.value());
        Ok(id.zip(cluster))
    };
    let path = std::path::PathBuf::from(LOG_FILE);
    if let Some(found) = read().map_err(storage_err(&path))? {
        return Ok(found);
    }
    let (id, cluster) = match config.initial_cluster_state {
        ClusterState::New => {
            let members = initial_members(config)?;
            let me =
                members.iter().find(|(_, m)| m.name == config.name).map(|(id, _)| *id).ok_or_else(|| {
                    StartError::Config(format!("--initial-cluster has no member named {}", config.name))
                })?;
            (me, cluster_id(&members.keys().copied().collect::<Vec<_>>()))
        }
        ClusterState::Existing => discover(config).await?,
    };
    let write = || -> Result<(), redb::Error> {
        let tx = db.begin_write()?;
        {
            let mut t = tx.open_table(LOCAL)?;
            t.insert("member_id", id)?;
            t.insert("cluster_id", cluster)?;
        }
        tx.commit()?;
        Ok(())
    };
    write().map_err(storage_err(&path))?;
    Ok((id, cluster))
}

/// Asks the members of `--initial-cluster` which ID the cluster gave our peer URLs.
async fn discover(config: &ChainfireConfig) -> Result<(u64, u64), StartError> {
    let mine = config.peer_urls();
    let others: Vec<String> = config
        .initial_members()
        .map_err(|e| StartError::Config(e.to_string()))?
        .into_iter()
        .filter(|m| m.name != config.name)
        .flat_map(|m| m.peer_urls)
        .collect();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        for url in &others {
            let Ok(channel) = peer_channel(url) else { continue };
            let Ok(resp) = peer_client(channel).members(Empty {}).await else { continue };
            let resp = resp.into_inner();
            if let Some(m) = resp.members.iter().find(|m| m.peer_ur_ls.iter().any(|u| mine.contains(u))) {
                return Ok((m.id, resp.cluster_id));
            }
            return Err(StartError::Config(format!(
                "the cluster at {url} has no member with peer URLs {mine:?}; add this member first with \
                 `etcdctl member add {} --peer-urls={}`",
                config.name,
                mine.join(",")
            )));
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(StartError::Config(format!("no member of --initial-cluster answered at {others:?}")));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Publishes this member's name and client URLs through Raft (retrying until it lands).
async fn publish_attributes(node: Arc<Node>, shutdown: CancellationToken) {
    let attrs =
        MemberAttributes { id: node.id, name: node.config.name.clone(), client_urls: node.config.client_urls() };
    loop {
        let req = InternalRequest { request: Some(Internal::MemberAttributes(attrs.clone())) };
        tokio::select! {
            () = shutdown.cancelled() => return,
            result = node.propose(req) => match result {
                Ok(_) => return,
                Err(e) => tracing::debug!(error = %e, "publishing member attributes; will retry"),
            },
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// What only the leader does: expire leases and promote caught-up learners.
async fn leader_duties(node: Arc<Node>, shutdown: CancellationToken) {
    let mut was_leader = false;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let leader = node.is_leader();
        if leader && !was_leader {
            // A new leader cannot know how long ago leases were renewed: give them a full TTL.
            node.lessor.refresh_all();
        }
        was_leader = leader;
        if !leader {
            continue;
        }
        for id in node.lessor.take_expired() {
            let node = node.clone();
            tokio::spawn(async move {
                let req = InternalRequest {
                    request: Some(Internal::LeaseRevoke(crate::pb::etcdserverpb::LeaseRevokeRequest { id })),
                };
                match node.propose(req).await {
                    Ok(_) | Err(EtcdError::LeaseNotFound) => tracing::info!(lease = id, "lease expired and revoked"),
                    Err(e) => {
                        tracing::warn!(lease = id, error = %e, "revoking expired lease failed; will retry");
                        node.lessor.revoke_failed(id);
                    }
                }
            });
        }
        let m = node.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let voters: Vec<u64> = membership.voter_ids().collect();
        let ready: Vec<u64> = membership
            .nodes()
            .filter(|(id, n)| !voters.contains(id) && !n.learner && node.caught_up(**id))
            .map(|(id, _)| *id)
            .collect();
        for id in ready {
            tracing::info!(member = format!("{id:x}"), "promoting caught-up member to voter");
            if let Err(e) =
                node.raft.change_membership(ChangeMembers::AddVoterIds([id].into_iter().collect()), false).await
            {
                tracing::warn!(member = format!("{id:x}"), error = %e, "promotion failed; will retry");
            }
        }
    }
}
