//! `ultracloud ca`: the cluster CA — make it once, issue each node's and operator's certificate.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Args, Subcommand};
use ultracloud_tls::{CertAuthority, IssueRequest, Role};

/// The cluster CA: every node and operator holds a certificate it issued; chainfire and flaredb
/// admit only those, and every client trusts only it. See docs/security.md.
#[derive(Debug, Args)]
pub struct CaArgs {
    #[command(subcommand)]
    command: CaCommand,
}

#[derive(Debug, Subcommand)]
enum CaCommand {
    /// Make a new CA in DIR (ca.pem, ca-key.pem 0600); refuses to replace one.
    Init {
        /// Where the CA lives (keep it off the nodes).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// The CA's name.
        #[arg(long, default_value = "UltraCloud cluster CA")]
        name: String,
    },
    /// Issue a certificate into OUT (ca.pem, cert.pem, key.pem 0600): a service's --tls-dir.
    Issue {
        /// The CA directory.
        #[arg(long, value_name = "DIR")]
        ca: PathBuf,
        /// The holder's name (a node name, or an operator's).
        #[arg(long)]
        name: String,
        /// control-plane (chainfire/flaredb peers and the services on those nodes), worker, or
        /// admin (an operator's client certificate).
        #[arg(long)]
        role: Role,
        /// Addresses the holder serves on (repeat or comma-separate).
        #[arg(long, value_delimiter = ',')]
        ip: Vec<IpAddr>,
        /// DNS names the holder serves on.
        #[arg(long, value_delimiter = ',')]
        dns: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = ultracloud_tls::ca::DEFAULT_CERT_DAYS)]
        days: u32,
        /// The holder's directory to write.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
    },
}

/// Runs the subcommand.
pub fn run(args: CaArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        CaCommand::Init { dir, name } => {
            if dir.join(ultracloud_tls::ca::CA_KEY_FILE).exists() {
                anyhow::bail!("{} already holds a CA; issue from it, or choose another directory", dir.display());
            }
            CertAuthority::create(&name)?.save(&dir).with_context(|| format!("writing the CA to {}", dir.display()))?;
            println!("CA made in {} (ca.pem to trust, ca-key.pem to keep safe)", dir.display());
        }
        CaCommand::Issue { ca, name, role, ip, dns, days, out } => {
            let authority = CertAuthority::load(&ca).with_context(|| format!("loading the CA in {}", ca.display()))?;
            let req = IssueRequest { name, role, ips: ip, dns, days };
            authority.issue(&req, &out)?;
            println!("issued {} ({}) into {}: use it as --tls-dir", req.name, req.role, out.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The `--tls-dir` flag every service shares.
#[derive(Debug, Clone, Default, Args, serde::Serialize)]
pub struct TlsDirArg {
    /// TLS directory (ca.pem, cert.pem, key.pem from `ultracloud ca issue`): serve TLS and
    /// reach other services over TLS with this certificate [default: plain HTTP, loopback].
    #[arg(long, value_name = "DIR")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_dir: Option<PathBuf>,
}
