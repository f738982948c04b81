//! `ultracloud tenant|project|user|sa|apikey|role|binding`: iam's resources on the command
//! line, through the session of `ultracloud login`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::Value;
use ultracloud_iam::api::{Binding, NewKey, NewProject, NewUser, Role, Scope, ServiceAccount, Tenant, UserPatch};

use super::session::{self, Session};
use super::table::Output;

/// Flags every iam resource command takes.
#[derive(Debug, Args)]
pub struct Common {
    /// iam's URL (default: the one logged in to).
    #[arg(long, global = true, env = "ULTRACLOUD_IAM")]
    iam: Option<String>,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    output: Output,
    /// Same as `-o json`.
    #[arg(long, global = true, hide = true)]
    json: bool,
}

impl Common {
    async fn session(&self) -> anyhow::Result<Session> {
        Session::open(self.iam.as_deref()).await
    }

    fn out(&self) -> Output {
        self.output.or_json(self.json)
    }

    fn show(&self, v: &Value) {
        self.out().one(v);
    }
}

/// Manage tenants (system admins create and delete them).
#[derive(Debug, Args)]
pub struct TenantArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: TenantCommand,
}

#[derive(Debug, Subcommand)]
enum TenantCommand {
    /// Create a tenant.
    Create {
        /// ID: lowercase letters, digits, dashes.
        id: String,
        /// Display name.
        #[arg(long, default_value = "")]
        display_name: String,
    },
    /// List the tenants you may see.
    List,
    /// Show a tenant.
    Show {
        /// ID.
        id: String,
    },
    /// Delete an empty tenant.
    Delete {
        /// ID.
        id: String,
    },
}

/// Runs `tenant`.
pub async fn tenant(args: TenantArgs) -> anyhow::Result<ExitCode> {
    let (c, s) = (&args.common, args.common.session().await?);
    match args.command {
        TenantCommand::Create { id, display_name } => {
            c.show(&s.iam_send(Method::POST, "/v1/tenants", &Tenant { id, display_name }).await?)
        }
        TenantCommand::List => c.out().list(&s.iam_list("/v1/tenants").await?, &["id", "display_name"]),
        TenantCommand::Show { id } => c.show(&s.iam(Method::GET, &format!("/v1/tenants/{id}")).await?),
        TenantCommand::Delete { id } => {
            s.iam(Method::DELETE, &format!("/v1/tenants/{id}")).await?;
            println!("tenant {id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Manage a tenant's projects.
#[derive(Debug, Args)]
pub struct ProjectArgs {
    #[command(flatten)]
    common: Common,
    /// The tenant.
    #[arg(long, short, global = true, env = "ULTRACLOUD_TENANT")]
    tenant: Option<String>,
    #[command(subcommand)]
    command: ProjectCommand,
}

#[derive(Debug, Subcommand)]
enum ProjectCommand {
    /// Create a project.
    Create {
        /// ID.
        id: String,
    },
    /// List projects.
    List,
    /// Delete a project.
    Delete {
        /// ID.
        id: String,
    },
}

/// Runs `project`.
pub async fn project(args: ProjectArgs) -> anyhow::Result<ExitCode> {
    let Some(tenant) = &args.tenant else { bail!("which tenant? pass --tenant (or set ULTRACLOUD_TENANT)") };
    let (c, s) = (&args.common, args.common.session().await?);
    let base = format!("/v1/tenants/{tenant}/projects");
    match args.command {
        ProjectCommand::Create { id } => c.show(&s.iam_send(Method::POST, &base, &NewProject { id }).await?),
        ProjectCommand::List => c.out().list(&s.iam_list(&base).await?, &["tenant", "id"]),
        ProjectCommand::Delete { id } => {
            s.iam(Method::DELETE, &format!("{base}/{id}")).await?;
            println!("project {tenant}/{id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Manage users.
#[derive(Debug, Args)]
pub struct UserArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: UserCommand,
}

#[derive(Debug, Subcommand)]
enum UserCommand {
    /// Create a user; the password comes from --password-file, ULTRACLOUD_NEW_PASSWORD or the
    /// terminal.
    Create {
        /// Login name.
        name: String,
        /// Home tenant (none: a platform user).
        #[arg(long, short)]
        tenant: Option<String>,
        /// Read the password from this file.
        #[arg(long, value_name = "FILE")]
        password_file: Option<PathBuf>,
    },
    /// List the users you may see.
    List,
    /// Show a user.
    Show {
        /// Name.
        name: String,
    },
    /// Disable a user (its tokens are revoked).
    Disable {
        /// Name.
        name: String,
    },
    /// Enable a disabled user.
    Enable {
        /// Name.
        name: String,
    },
    /// Delete a user, its API keys and bindings.
    Delete {
        /// Name.
        name: String,
    },
}

/// Runs `user`.
pub async fn user(args: UserArgs) -> anyhow::Result<ExitCode> {
    let (c, s) = (&args.common, args.common.session().await?);
    match args.command {
        UserCommand::Create { name, tenant, password_file } => {
            let pw = session::read_secret(password_file.as_deref(), "ULTRACLOUD_NEW_PASSWORD", "New password")?;
            let body = NewUser { name, tenant, password: pw };
            c.show(&s.iam_send(Method::POST, "/v1/users", &body).await?);
        }
        UserCommand::List => c.out().list(&s.iam_list("/v1/users").await?, &["id", "tenant", "disabled"]),
        UserCommand::Show { name } => c.show(&s.iam(Method::GET, &format!("/v1/users/{name}")).await?),
        UserCommand::Disable { name } => c.show(
            &s.iam_send(
                Method::PATCH,
                &format!("/v1/users/{name}"),
                &UserPatch { disabled: Some(true), ..UserPatch::default() },
            )
            .await?,
        ),
        UserCommand::Enable { name } => c.show(
            &s.iam_send(
                Method::PATCH,
                &format!("/v1/users/{name}"),
                &UserPatch { disabled: Some(false), ..UserPatch::default() },
            )
            .await?,
        ),
        UserCommand::Delete { name } => {
            s.iam(Method::DELETE, &format!("/v1/users/{name}")).await?;
            println!("user {name} deleted; its tokens are revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Manage service accounts (non-human subjects that use API keys).
#[derive(Debug, Args)]
pub struct SaArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: SaCommand,
}

#[derive(Debug, Subcommand)]
enum SaCommand {
    /// Create a service account.
    Create {
        /// ID.
        id: String,
        /// Home tenant (none: a platform account).
        #[arg(long, short)]
        tenant: Option<String>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Bind it to a worker: its tokens may then act only for that host's agent routes
        /// (give it the node-agent role at system scope). Platform accounts only.
        #[arg(long, value_name = "HOST", conflicts_with = "tenant")]
        node: Option<String>,
    },
    /// List the service accounts you may see.
    List,
    /// Delete a service account, its keys and bindings.
    Delete {
        /// ID.
        id: String,
    },
}

/// Runs `sa`.
pub async fn sa(args: SaArgs) -> anyhow::Result<ExitCode> {
    let (c, s) = (&args.common, args.common.session().await?);
    match args.command {
        SaCommand::Create { id, tenant, description, node } => {
            let body = ServiceAccount { id, tenant, description, node };
            c.show(&s.iam_send(Method::POST, "/v1/service-accounts", &body).await?);
        }
        SaCommand::List => {
            c.out().list(&s.iam_list("/v1/service-accounts").await?, &["id", "tenant", "node", "description"])
        }
        SaCommand::Delete { id } => {
            s.iam(Method::DELETE, &format!("/v1/service-accounts/{id}")).await?;
            println!("service account {id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Manage API keys (yours, or a service account's).
#[derive(Debug, Args)]
pub struct ApiKeyArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: ApiKeyCommand,
}

#[derive(Debug, Subcommand)]
enum ApiKeyCommand {
    /// Create a key; it is printed once, so store it.
    Create {
        /// Whose key (user:NAME or sa:ID; default: you).
        #[arg(long)]
        owner: Option<String>,
        /// What it is for.
        #[arg(long, default_value = "")]
        description: String,
        /// Lifetime in seconds (default: until deleted).
        #[arg(long, value_name = "SECS")]
        expires_in: Option<u64>,
    },
    /// List keys (never the keys themselves).
    List {
        /// Whose keys (default: yours).
        #[arg(long)]
        owner: Option<String>,
    },
    /// Delete a key; tokens issued for it stop working.
    Delete {
        /// Key ID.
        id: String,
    },
}

/// Runs `apikey`.
pub async fn apikey(args: ApiKeyArgs) -> anyhow::Result<ExitCode> {
    let (c, s) = (&args.common, args.common.session().await?);
    match args.command {
        ApiKeyCommand::Create { owner, description, expires_in } => {
            let body = NewKey { owner, description, expires_in };
            let v = s.iam_send(Method::POST, "/v1/api-keys", &body).await?;
            if c.out() != Output::Table {
                c.show(&v);
            } else {
                println!(
                    "API key {} for {} (shown once; store it now):",
                    super::table::cell(&v["id"]),
                    super::table::cell(&v["owner"])
                );
                println!("{}", super::table::cell(&v["api_key"]));
            }
        }
        ApiKeyCommand::List { owner } => {
            let path = match owner {
                Some(o) => format!("/v1/api-keys?owner={o}"),
                None => "/v1/api-keys".into(),
            };
            c.out().list(&s.iam_list(&path).await?, &["id", "owner", "created", "expires", "description"]);
        }
        ApiKeyCommand::Delete { id } => {
            s.iam(Method::DELETE, &format!("/v1/api-keys/{id}")).await?;
            println!("API key {id} deleted; its tokens are revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Manage custom roles (built-in: system-admin, tenant-admin, project-admin, member, viewer).
#[derive(Debug, Args)]
pub struct RoleArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: RoleCommand,
}

#[derive(Debug, Subcommand)]
enum RoleCommand {
    /// Create a custom role.
    Create {
        /// Name.
        name: String,
        /// Permission patterns (e.g. compute.vm.start, network.*, *.read), repeatable.
        #[arg(long = "permission", short, required = true)]
        permissions: Vec<String>,
        /// The tenant owning it (none: platform-wide, system admins only).
        #[arg(long, short)]
        tenant: Option<String>,
    },
    /// List custom roles you may see.
    List,
    /// Show a role (built-in or custom).
    Show {
        /// Name.
        name: String,
    },
    /// Delete a custom role that is no longer bound.
    Delete {
        /// Name.
        name: String,
    },
    /// List every action of the permission catalogue.
    Actions,
}

/// Runs `role`.
pub async fn role(args: RoleArgs) -> anyhow::Result<ExitCode> {
    let (c, s) = (&args.common, args.common.session().await?);
    match args.command {
        RoleCommand::Create { name, permissions, tenant } => {
            let body = Role { name, permissions, tenant };
            c.show(&s.iam_send(Method::POST, "/v1/roles", &body).await?);
        }
        RoleCommand::List => c.out().list(&s.iam_list("/v1/roles").await?, &["name", "tenant", "permissions"]),
        RoleCommand::Show { name } => c.show(&s.iam(Method::GET, &format!("/v1/roles/{name}")).await?),
        RoleCommand::Delete { name } => {
            s.iam(Method::DELETE, &format!("/v1/roles/{name}")).await?;
            println!("role {name} deleted");
        }
        RoleCommand::Actions => {
            let v = s.iam(Method::GET, "/v1/permissions").await?;
            for a in v["actions"].as_array().into_iter().flatten() {
                println!("{}", super::table::cell(a));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Grant and revoke roles: a binding gives a subject a role at a scope.
#[derive(Debug, Args)]
pub struct BindingArgs {
    #[command(flatten)]
    common: Common,
    #[command(subcommand)]
    command: BindingCommand,
}

#[derive(Debug, Subcommand)]
enum BindingCommand {
    /// Grant a role.
    Create {
        /// user:NAME or sa:ID.
        subject: String,
        /// Role name.
        role: String,
        /// system, TENANT or TENANT/PROJECT.
        #[arg(long)]
        scope: String,
    },
    /// List bindings you may see.
    List {
        /// Only this subject's.
        #[arg(long)]
        subject: Option<String>,
    },
    /// Remove a binding (its ID is in `binding list`).
    Delete {
        /// user:NAME or sa:ID.
        subject: String,
        /// Binding ID (ROLE@SCOPE).
        id: String,
    },
}

/// Runs `binding`.
pub async fn binding(args: BindingArgs) -> anyhow::Result<ExitCode> {
    let (c, s) = (&args.common, args.common.session().await?);
    match args.command {
        BindingCommand::Create { subject, role, scope } => {
            let body = Binding { subject, role, scope: scope.parse::<Scope>().map_err(anyhow::Error::msg)? };
            c.show(&s.iam_send(Method::POST, "/v1/bindings", &body).await?);
        }
        BindingCommand::List { subject } => {
            let path = match subject {
                Some(sub) => format!("/v1/bindings?subject={sub}"),
                None => "/v1/bindings".into(),
            };
            c.out().list(&s.iam_list(&path).await?, &["id", "subject", "role", "scope"]);
        }
        BindingCommand::Delete { subject, id } => {
            s.iam(Method::DELETE, &format!("/v1/bindings/{subject}/{id}")).await?;
            println!("binding {subject}/{id} deleted");
        }
    }
    Ok(ExitCode::SUCCESS)
}
