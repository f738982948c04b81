//! `ultracloud`: the one binary of the platform (k3s style). Every service, the node agent, the
//! host doctor and the client CLI are subcommands; this crate only parses the command line and
//! hands each command to the library that implements it.

mod cmd;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ultracloud_runtime::logging::{self, LogFormat};

/// The services this build can run as `ultracloud <service>`; the node agent starts them by name.
pub const SERVICES: &[&str] = &[
    "chainfire",
    "flaredb",
    "iam",
    "prismnet",
    "prismnet-agent",
    "plasmavmc",
    "plasmavmc-agent",
    "lightningstor-node",
    "lightningstor",
];

/// UltraCloud: a self-hostable cloud platform — VMs, private networks, DNS, load balancers,
/// object storage and block volumes behind one authenticated API.
#[derive(Debug, Parser)]
#[command(name = "ultracloud", version, propagate_version = true, max_term_width = 100)]
struct Cli {
    /// Log format.
    #[arg(long, global = true, env = "ULTRACLOUD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,

    /// Log filter, e.g. `info` or `ultracloud_node_agent=debug,warn` (RUST_LOG wins when set).
    #[arg(long, global = true, env = "ULTRACLOUD_LOG_LEVEL", default_value = "info,openraft=warn")]
    log_level: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start the whole platform on this machine and prove it works with a real VM (needs root).
    Quickstart(cmd::quickstart::QuickstartArgs),
    /// Run the node agent: supervise the services of this node's roles (or `node status`).
    Node(cmd::node::NodeArgs),
    /// Check this host for what UltraCloud needs, and install what is missing.
    Doctor(cmd::doctor::DoctorArgs),
    /// Run chainfire, the replicated coordination store (etcd v3 API).
    Chainfire(cmd::chainfire::ChainfireArgs),
    /// Run flaredb, the transactional database (regions on Raft, snapshot-isolation transactions).
    Flaredb(cmd::flaredb::FlaredbArgs),
    /// Run iam: identity, tenancy, tokens and authorization for every API.
    Iam(cmd::iam::IamArgs),
    /// Log in to iam; later commands use the stored session.
    Login(cmd::account::LoginArgs),
    /// End the session (revokes its tokens).
    Logout(cmd::account::LogoutArgs),
    /// Show who you are logged in as, and your role bindings.
    Whoami(cmd::account::WhoamiArgs),
    /// Tenants: create, list, show, delete.
    Tenant(cmd::iam_admin::TenantArgs),
    /// A tenant's projects: create, list, delete.
    Project(cmd::iam_admin::ProjectArgs),
    /// Users: create, list, show, disable, enable, delete.
    User(cmd::iam_admin::UserArgs),
    /// Service accounts: create, list, delete.
    Sa(cmd::iam_admin::SaArgs),
    /// API keys: create (shown once), list, delete.
    Apikey(cmd::iam_admin::ApiKeyArgs),
    /// Custom roles and the permission catalogue.
    Role(cmd::iam_admin::RoleArgs),
    /// Role bindings: grant and revoke roles at a scope.
    Binding(cmd::iam_admin::BindingArgs),
    /// Run the prismnet controller: tenant networks, subnets, security groups, ports, IPAM.
    Prismnet(cmd::prismnet::PrismnetArgs),
    /// Run a worker's prismnet agent: bridges, VXLAN, DHCP, taps, nftables.
    PrismnetAgent(cmd::prismnet::AgentArgs),
    /// Tenant networks (VPCs): create, list, show, delete; `apply -f` a whole tenant network.
    Network(cmd::network::NetworkArgs),
    /// Subnets: create, list, show, delete.
    Subnet(cmd::network::SubnetArgs),
    /// Routers: create, list, show, delete.
    Router(cmd::network::RouterArgs),
    /// Security groups: create, list, show, rules, delete.
    Secgroup(cmd::network::SecgroupArgs),
    /// Ports: create, list, show, delete.
    Port(cmd::network::PortArgs),
    /// Run the plasmavmc controller: VMs, images, volumes, placement, migration.
    Plasmavmc(cmd::plasmavmc::PlasmavmcArgs),
    /// Run a worker's plasmavmc agent: one QEMU per VM over QMP (KVM or TCG).
    PlasmavmcAgent(cmd::plasmavmc::AgentArgs),
    /// Run a lightningstor S3 gateway: S3 over flaredb metadata and storage-node blocks.
    Lightningstor(cmd::lightningstor::GatewayArgs),
    /// Run a lightningstor storage node: durable, checksummed, content-addressed blocks.
    LightningstorNode(cmd::lightningstor::NodeArgs),
    /// Object storage: S3 access keys for a project (`s3 credentials create|list|delete`).
    S3(cmd::s3::S3Args),
    /// Virtual machines: create, list, show, start, stop, reboot, delete, console, events, migrate.
    Vm(cmd::compute::VmArgs),
    /// Images: import, list, show, delete; build-guest makes the project's guest image.
    Image(cmd::compute::ImageArgs),
    /// Volumes: create, list, attach, detach, delete.
    Volume(cmd::compute::VolumeArgs),
    /// The flaredb client: get, put, del, incr, cas, scan, txn, regions, status.
    Db(cmd::db::DbArgs),
    /// The cluster CA: init, and issue the certificates of nodes and operators (--tls-dir).
    Ca(cmd::ca::CaArgs),
    /// The six-node test cluster on this machine: build, start, smoke, status, logs, ssh, stop, clean.
    Cluster(cmd::cluster::ClusterArgs),
    /// Measure throughput and latency of a running endpoint (prints figures).
    Bench(cmd::bench::BenchArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    logging::init(cli.log_format, &cli.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Quickstart(args) => cmd::quickstart::run(args).await,
            Command::Node(args) => cmd::node::run(args).await,
            Command::Doctor(args) => cmd::doctor::run(args).await,
            Command::Chainfire(args) => cmd::chainfire::run(args).await,
            Command::Flaredb(args) => cmd::flaredb::run(args).await,
            Command::Db(args) => cmd::db::run(args).await,
            Command::Ca(args) => cmd::ca::run(args),
            Command::Iam(args) => cmd::iam::run(args).await,
            Command::Bench(args) => cmd::bench::run(args).await,
            Command::Cluster(args) => cmd::cluster::run(args).await,
            Command::Prismnet(args) => cmd::prismnet::run(args).await,
            Command::PrismnetAgent(args) => cmd::prismnet::run_agent(args).await,
            Command::Plasmavmc(args) => cmd::plasmavmc::run(args).await,
            Command::PlasmavmcAgent(args) => cmd::plasmavmc::run_agent(args).await,
            Command::Lightningstor(args) => cmd::lightningstor::run_gateway(args).await,
            Command::LightningstorNode(args) => cmd::lightningstor::run_node(args).await,
            Command::S3(args) => cmd::s3::run(args).await,
            Command::Vm(args) => cmd::compute::vm(args).await,
            Command::Image(args) => cmd::compute::image(args).await,
            Command::Volume(args) => cmd::compute::volume(args).await,
            Command::Network(args) => cmd::network::network(args).await,
            Command::Subnet(args) => cmd::network::subnet(args).await,
            Command::Router(args) => cmd::network::router(args).await,
            Command::Secgroup(args) => cmd::network::secgroup(args).await,
            Command::Port(args) => cmd::network::port(args).await,
            Command::Login(args) => cmd::account::login(args).await,
            Command::Logout(args) => cmd::account::logout(args).await,
            Command::Whoami(args) => cmd::account::whoami(args).await,
            Command::Tenant(args) => cmd::iam_admin::tenant(args).await,
            Command::Project(args) => cmd::iam_admin::project(args).await,
            Command::User(args) => cmd::iam_admin::user(args).await,
            Command::Sa(args) => cmd::iam_admin::sa(args).await,
            Command::Apikey(args) => cmd::iam_admin::apikey(args).await,
            Command::Role(args) => cmd::iam_admin::role(args).await,
            Command::Binding(args) => cmd::iam_admin::binding(args).await,
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
