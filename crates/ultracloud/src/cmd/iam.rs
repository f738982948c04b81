//! `ultracloud iam`: identity, tenancy and authorization.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use serde::Serialize;
use ultracloud_iam::service::IamConfig;
use ultracloud_runtime::service::ConfigFileArg;

/// Run an iam replica: tenants, projects, users, role bindings, tokens (Ed25519 JWTs, JWKS at
/// /.well-known/jwks.json) and authorization decisions. State lives in flaredb; run as many
/// replicas as you like. The first start creates the system admin `admin`, the `platform`
/// service account (used by the other services) and `s3-gateway` (lightningstor's gateways),
/// and prints where their generated secrets are (0600 files), unless --admin-password-file /
/// --platform-api-key-file / --object-gateway-api-key-file give them.
#[derive(Debug, Args, Serialize)]
pub struct IamArgs {
    #[command(flatten)]
    #[serde(skip)]
    file: ConfigFileArg,

    #[command(flatten)]
    #[serde(flatten)]
    tls: super::ca::TlsDirArg,

    /// Where the API listens [default: 127.0.0.1:8480].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,

    /// Admin listener [default: 127.0.0.1:9103].
    #[arg(long, value_name = "ADDR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    admin_listen: Option<SocketAddr>,

    /// Data dir (only the bootstrap password file) [default: /var/lib/ultracloud/iam as root].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,

    /// flaredb nodes, host:port,… [default: 127.0.0.1:2479].
    #[arg(long, value_name = "ADDRS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    flaredb_endpoints: Option<String>,

    /// Access token lifetime in seconds [default: 300].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    token_lifetime_secs: Option<u64>,

    /// Refresh token lifetime in seconds [default: 43200].
    #[arg(long, value_name = "SECS")]
    #[serde(skip_serializing_if = "Option::is_none")]
    refresh_lifetime_secs: Option<u64>,

    /// Read the first admin's password from this file instead of generating one.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    admin_password_file: Option<PathBuf>,

    /// Read the platform service account's API key (ucak_…) from this file instead of
    /// generating one; give every replica (and every service) the same file.
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    platform_api_key_file: Option<PathBuf>,

    /// Read the `s3-gateway` service account's API key (ucak_…) from this file instead of
    /// generating one; lightningstor's gateways hold the same file (the object-gateway role:
    /// resolving S3 access keys, nothing else).
    #[arg(long, value_name = "FILE")]
    #[serde(skip)]
    object_gateway_api_key_file: Option<PathBuf>,

    /// A worker's node-agent API key (ucak_…), as NODE=FILE; repeat per worker. Every start
    /// makes sure the worker has its own service account `node-<NODE>`, bound to it with the
    /// node-agent role only, holding that key. Agents on the worker use that file, never the
    /// platform key: they may then touch only their own host's records.
    #[arg(long, value_name = "NODE=FILE")]
    #[serde(skip)]
    node_api_key_file: Vec<String>,
}

fn read_secret_file(flag: &str, f: &std::path::Path) -> anyhow::Result<String> {
    ultracloud_runtime::secret_file::read(f).map_err(|e| anyhow::anyhow!("{flag} {}: {e}", f.display()))
}

/// Runs the subcommand.
pub async fn run(args: IamArgs) -> anyhow::Result<ExitCode> {
    let mut config: IamConfig = ultracloud_runtime::config::load(args.file.config.as_deref(), &args)?;
    if let Some(f) = &args.admin_password_file {
        config.admin_password = Some(read_secret_file("--admin-password-file", f)?);
    }
    if let Some(f) = &args.platform_api_key_file {
        config.platform_api_key = Some(read_secret_file("--platform-api-key-file", f)?);
    }
    if let Some(f) = &args.object_gateway_api_key_file {
        config.object_gateway_api_key = Some(read_secret_file("--object-gateway-api-key-file", f)?);
    }
    for pair in &args.node_api_key_file {
        let (node, file) =
            pair.split_once('=').ok_or_else(|| anyhow::anyhow!("--node-api-key-file {pair:?}: use NODE=FILE"))?;
        let key = read_secret_file("--node-api-key-file", std::path::Path::new(file))?;
        config.node_api_keys.insert(node.to_owned(), key);
    }
    ultracloud_runtime::config::Validate::validate(&config)?;
    ultracloud_iam::service::run(config).await.map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(ExitCode::SUCCESS)
}
