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

/// Object storage (S3): access keys for a project.
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
    let S3Command::Credentials { command } = args.command;
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
