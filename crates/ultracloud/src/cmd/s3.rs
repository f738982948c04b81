//! `ultracloud s3`: lightningstor's administration on the command line. Data commands are what
//! `aws s3` and `s3cmd` do (docs/lightningstor.md says how to point them at UltraCloud).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use reqwest::Method;
use ultracloud_iam::api::{CreatedS3Credential, NewS3Credential};

use super::session::Session;
use super::table::Output;

/// Object storage (S3): access keys for a project, and the storage nodes' state.
#[derive(Debug, Args)]
pub struct S3Args {
    /// Tenant (default: your home tenant).
    #[arg(long, short, global = true, env = "ULTRACLOUD_TENANT")]
    tenant: Option<String>,
    /// Project whose buckets the keys reach.
    #[arg(long, short, global = true, env = "ULTRACLOUD_PROJECT")]
    project: Option<String>,
    /// iam's URL (default: the one logged in to).
    #[arg(long, global = true, env = "ULTRACLOUD_IAM")]
    iam: Option<String>,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    #[command(subcommand)]
    command: S3Command,
}

#[derive(Debug, Subcommand)]
enum S3Command {
    /// S3 access keys of the project: requests signed with one act as its creator, in the
    /// project, and reach only the project's buckets.
    Credentials {
        #[command(subcommand)]
        command: CredentialCommand,
    },
    /// Operating the object store (platform operators: needs an admin certificate).
    Admin {
        #[command(subcommand)]
        command: AdminCommand,
    },
}

#[derive(Debug, Subcommand)]
enum AdminCommand {
    /// Each storage node: reachable, blocks held, bytes, free space, fsync, corrupt blocks set
    /// aside, its last scrub, and its repair worker (passes, running, progress, the last pass's copies sent,
    /// dropped and deferred).
    Status {
        /// The storage nodes: name=URL,… (what the gateways' --nodes names).
        #[arg(long, env = "ULTRACLOUD_LIGHTNINGSTOR_NODES", value_name = "NODES")]
        nodes: String,
        /// The operator's TLS directory (an admin certificate from `ultracloud ca issue`).
        #[arg(long, env = "ULTRACLOUD_TLS_DIR", value_name = "DIR")]
        tls_dir: Option<PathBuf>,
    },
    /// Garbage collection: run a pass now (deleting blocks no object or upload references and
    /// that are older than --grace-secs), or show the last pass of any gateway with --last.
    /// The gateways also run passes on their own (--gc-interval-secs).
    Gc {
        /// The storage nodes: name=URL,… (what the gateways' --nodes names).
        #[arg(long, env = "ULTRACLOUD_LIGHTNINGSTOR_NODES", value_name = "NODES", required_unless_present = "last")]
        nodes: Option<String>,
        /// flaredb nodes, host:port,… (the gateways' metadata).
        #[arg(long, env = "ULTRACLOUD_FLAREDB", value_name = "ADDRS", default_value = "127.0.0.1:2479")]
        flaredb: String,
        /// Keep unreferenced blocks younger than this: longer than the longest PUT in flight.
        #[arg(long, value_name = "SECS", default_value_t = 3600, value_parser = clap::value_parser!(u64).range(60..))]
        grace_secs: u64,
        /// Only show the last pass's report.
        #[arg(long)]
        last: bool,
        /// The operator's TLS directory (an admin certificate from `ultracloud ca issue`).
        #[arg(long, env = "ULTRACLOUD_TLS_DIR", value_name = "DIR")]
        tls_dir: Option<PathBuf>,
    },
}

/// `s3 admin gc`.
async fn admin_gc(
    nodes: Option<&str>,
    flaredb: &str,
    grace: std::time::Duration,
    last: bool,
    tls_dir: Option<&std::path::Path>,
    output: Output,
) -> anyhow::Result<ExitCode> {
    use ultracloud_lightningstor::gateway::gc::{Collector, Pass};
    if let Some(dir) = tls_dir {
        ultracloud_tls::client::install_dir(dir).with_context(|| format!("--tls-dir {}", dir.display()))?;
    }
    let db = ultracloud_flaredb::Client::new(ultracloud_resource::setup::split(flaredb))
        .with_context(|| format!("--flaredb {flaredb}"))?;
    if last {
        match Collector::last(&db).await.context("reading the last report from flaredb")? {
            Some(report) => output.one(&report),
            None => println!("no garbage-collection pass has run yet"),
        }
        return Ok(ExitCode::SUCCESS);
    }
    let list = ultracloud_lightningstor::config::parse_nodes("--nodes", nodes.unwrap_or_default())?;
    if list.is_empty() {
        bail!("--nodes: name at least one storage node (name=URL,…)");
    }
    let cluster = ultracloud_lightningstor::client::Cluster::new(list, 1, 1 << 20)?;
    eprintln!("marking the blocks objects and uploads reference, then sweeping every storage node…");
    match Collector::new(db, std::sync::Arc::new(cluster), grace).pass().await.context("the pass failed")? {
        Pass::Ran(report) => {
            let complete = report.errors.is_empty();
            output.one(&report);
            Ok(if complete { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Pass::Busy { holder, until_ms } => {
            bail!("another collector ({holder}) is running a pass (its lease ends at {until_ms} ms); try later")
        }
    }
}

/// One storage node's row of `s3 admin status`.
async fn node_row(name: &str, url: &str) -> serde_json::Value {
    use ultracloud_lightningstor::client::NodeClient;
    let client = match NodeClient::new(url) {
        Ok(c) => c,
        Err(e) => return serde_json::json!({"node": name, "url": url, "state": format!("bad URL: {e}")}),
    };
    let (status, repair) = tokio::join!(client.status(), client.repair_status());
    let mut row = serde_json::json!({"node": name, "url": url});
    match status {
        Ok(s) => {
            row["state"] = "up".into();
            row["blocks"] = s.blocks.into();
            row["bytes"] = s.bytes.into();
            row["free_bytes"] = s.free_bytes.into();
            row["fsync"] = s.fsync.into();
            row["corrupt_found"] = s.corrupt_found.into();
            row["last_scrub"] = match s.last_scrub_ms {
                Some(ms) => format!(
                    "{} checked, {} rotten, {} s ago",
                    s.last_scrub_checked,
                    s.last_scrub_corrupt,
                    ultracloud_runtime::clock::now_ms().saturating_sub(ms) / 1000
                )
                .into(),
                None => "none since start".into(),
            };
        }
        Err(e) => row["state"] = format!("unreachable: {e}").into(),
    }
    if let Ok(r) = repair {
        row["repair"] = if !r.enabled {
            "off".into()
        } else if r.running {
            format!("running ({} scanned)", r.progress).into()
        } else {
            format!("idle after {} passes", r.passes).into()
        };
        if let Some(last) = r.last {
            row["last_pass"] = format!(
                "{} scanned, {} copied, {} dropped, {} deferred, {} ms",
                last.scanned, last.copied, last.dropped, last.deferred, last.millis
            )
            .into();
        }
    }
    row
}

/// `s3 admin status`.
async fn admin_status(nodes: &str, tls_dir: Option<&std::path::Path>, output: Output) -> anyhow::Result<ExitCode> {
    if let Some(dir) = tls_dir {
        ultracloud_tls::client::install_dir(dir).with_context(|| format!("--tls-dir {}", dir.display()))?;
    }
    let list = ultracloud_lightningstor::config::parse_nodes("--nodes", nodes)?;
    if list.is_empty() {
        bail!("--nodes: name at least one storage node (name=URL,…)");
    }
    let rows = futures::future::join_all(list.iter().map(|n| node_row(&n.member.id, &n.url))).await;
    let down = rows.iter().filter(|r| r["state"] != "up").count();
    let columns =
        ["node", "state", "blocks", "bytes", "free_bytes", "corrupt_found", "last_scrub", "repair", "last_pass"];
    output.list(&rows, &columns);
    Ok(if down == 0 { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

#[derive(Debug, Subcommand)]
enum CredentialCommand {
    /// Create an access key pair; the secret is shown this once (or only written to --write).
    Create {
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Write the pair as an AWS shared-credentials file (0600) instead of printing the
        /// secret: `AWS_SHARED_CREDENTIALS_FILE=FILE aws --endpoint-url … s3 ls`.
        #[arg(long, value_name = "FILE")]
        write: Option<PathBuf>,
    },
    /// List the project's access keys (never their secrets).
    List,
    /// Delete an access key; gateways refuse it within seconds.
    Delete {
        /// The access key ID (UC…).
        access_key_id: String,
    },
}

/// An AWS shared-credentials file holding one pair as the default profile.
fn shared_credentials(c: &CreatedS3Credential) -> String {
    format!(
        "# ultracloud s3 credentials: {}/{} ({})\n[default]\naws_access_key_id = {}\naws_secret_access_key = {}\n",
        c.record.tenant, c.record.project, c.record.owner, c.record.access_key_id, c.secret_access_key
    )
}

/// Runs `s3`.
pub async fn run(args: S3Args) -> anyhow::Result<ExitCode> {
    let command = match args.command {
        S3Command::Admin { command: AdminCommand::Status { nodes, tls_dir } } => {
            return admin_status(&nodes, tls_dir.as_deref(), args.output).await;
        }
        S3Command::Admin { command: AdminCommand::Gc { nodes, flaredb, grace_secs, last, tls_dir } } => {
            let grace = std::time::Duration::from_secs(grace_secs);
            return admin_gc(nodes.as_deref(), &flaredb, grace, last, tls_dir.as_deref(), args.output).await;
        }
        S3Command::Credentials { command } => command,
    };
    let session = Session::open(args.iam.as_deref()).await?;
    let tenant = match &args.tenant {
        Some(t) => t.clone(),
        None => {
            let me = session.iam(Method::GET, "/v1/auth/whoami").await?;
            me["claims"]["tenant"]
                .as_str()
                .map(str::to_owned)
                .context("which tenant? pass --tenant (or set ULTRACLOUD_TENANT)")?
        }
    };
    let Some(project) = &args.project else { bail!("which project? pass --project (or set ULTRACLOUD_PROJECT)") };
    let base = format!("/v1/tenants/{tenant}/projects/{project}/s3-credentials");
    match command {
        CredentialCommand::Create { description, write } => {
            let answer = session.iam_send(Method::POST, &base, &NewS3Credential { description }).await?;
            let created: CreatedS3Credential =
                serde_json::from_value(answer).context("iam answered without a credential")?;
            match write {
                Some(path) => {
                    ultracloud_runtime::secret_file::write(&path, &shared_credentials(&created))
                        .with_context(|| format!("--write {}", path.display()))?;
                    println!(
                        "access key {} for {tenant}/{project} written to {} (0600)",
                        created.record.access_key_id,
                        path.display()
                    );
                }
                None => args.output.one(&created),
            }
        }
        CredentialCommand::List => {
            let items = session.iam_list(&base).await?;
            args.output.list(&items, &["access_key_id", "owner", "created", "description"]);
        }
        CredentialCommand::Delete { access_key_id } => {
            session.iam(Method::DELETE, &format!("{base}/{access_key_id}")).await?;
            println!("access key {access_key_id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_credentials_file_is_what_aws_reads() {
        let c = CreatedS3Credential {
            record: ultracloud_iam::api::S3CredentialView {
                access_key_id: "UCABC".into(),
                tenant: "acme".into(),
                project: "web".into(),
                owner: "user:alice".into(),
                created: 0,
                description: String::new(),
            },
            secret_access_key: "s3cr3t".into(),
        };
        let f = shared_credentials(&c);
        assert!(f.contains("[default]\naws_access_key_id = UCABC\naws_secret_access_key = s3cr3t\n"), "{f}");
    }
}
