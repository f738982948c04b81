//! The client side of a tenant's project in one service: a logged-in session, the service's
//! typed client on the kit's multi-replica [`Client`] (the session renews its token), the
//! project the commands address, and how they print.

use std::sync::Arc;

use anyhow::{Context, bail};
use clap::Args;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ultracloud_resource::client::{Client, Collection};
use ultracloud_resource::page::ListQuery;
use ultracloud_resource::{Labels, Owner};

use super::session::Session;
use super::table::Output;

/// The project a resource command addresses and how it prints (every resource command takes
/// these).
#[derive(Debug, Args)]
pub struct ProjectArgs {
    /// Tenant (default: your home tenant).
    #[arg(long, short, global = true, env = "ULTRACLOUD_TENANT")]
    pub tenant: Option<String>,
    /// Project.
    #[arg(long, short, global = true, env = "ULTRACLOUD_PROJECT")]
    pub project: Option<String>,
    /// iam's URL (default: the one logged in to).
    #[arg(long, global = true, env = "ULTRACLOUD_IAM")]
    pub iam: Option<String>,
    /// Output format.
    #[arg(long, short, global = true, value_enum, default_value_t = Output::Table)]
    pub output: Output,
    /// Same as `-o json`.
    #[arg(long, global = true, hide = true)]
    pub json: bool,
}

/// What a `list` command lists.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only resources whose labels match (`env=prod,tier!=db,gpu,!legacy`).
    #[arg(long, short = 'l')]
    pub selector: Option<String>,
    /// Only the resource with this name.
    #[arg(long)]
    pub name: Option<String>,
    /// Items fetched per request (every page is fetched and printed).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub page_size: u16,
}

impl ListArgs {
    /// The list query of the first page.
    pub fn query(&self) -> ListQuery {
        ListQuery {
            limit: Some(usize::from(self.page_size)),
            page_token: None,
            selector: self.selector.clone(),
            name: self.name.clone(),
        }
    }
}

/// Labels and annotations a `create` command sets.
#[derive(Debug, Clone, Default, Args)]
pub struct MetaArgs {
    /// A label, KEY=VALUE (repeatable); list with `-l KEY=VALUE`.
    #[arg(long = "label", value_name = "KEY=VALUE", value_parser = ultracloud_resource::meta::parse_pair)]
    pub labels: Vec<(String, String)>,
    /// An annotation, KEY=VALUE (repeatable).
    #[arg(long = "annotation", value_name = "KEY=VALUE", value_parser = ultracloud_resource::meta::parse_pair)]
    pub annotations: Vec<(String, String)>,
}

impl MetaArgs {
    /// The labels and annotations as the API takes them.
    pub fn split(&self) -> (Labels, Labels) {
        (self.labels.iter().cloned().collect(), self.annotations.iter().cloned().collect())
    }
}

/// `label NAME KEY=VALUE… KEY-…`: changes a resource's labels (and annotations) after it was
/// created, as a merge patch.
#[derive(Debug, clap::Args)]
pub struct LabelArgs {
    /// Name or ID.
    pub name: String,
    /// `KEY=VALUE` sets a label, `KEY-` removes it.
    #[arg(value_name = "KEY=VALUE|KEY-", value_parser = parse_change)]
    pub labels: Vec<(String, Option<String>)>,
    /// An annotation to set (`KEY=VALUE`) or remove (`KEY-`), repeatable.
    #[arg(long = "annotation", value_name = "KEY=VALUE|KEY-", value_parser = parse_change)]
    pub annotations: Vec<(String, Option<String>)>,
}

/// `KEY=VALUE` (set) or `KEY-` (remove), as `kubectl label` takes them.
fn parse_change(s: &str) -> Result<(String, Option<String>), String> {
    match s.strip_suffix('-') {
        Some(k) if !k.is_empty() && !k.contains('=') => Ok((k.to_owned(), None)),
        _ => ultracloud_resource::meta::parse_pair(s).map(|(k, v)| (k, Some(v))).map_err(|e| format!("{e} or KEY-")),
    }
}

impl LabelArgs {
    /// The patch the API takes.
    pub fn patch(&self) -> anyhow::Result<ultracloud_resource::MetaPatch> {
        let patch = ultracloud_resource::MetaPatch {
            labels: self.labels.iter().cloned().collect(),
            annotations: self.annotations.iter().cloned().collect(),
        };
        anyhow::ensure!(!patch.is_empty(), "name at least one change: KEY=VALUE, KEY- or --annotation");
        Ok(patch)
    }
}

/// An open session, the service's client and the project.
pub struct Ctx {
    /// The service, authenticated by the session (whose token renews itself).
    pub client: Client,
    /// The project addressed.
    pub owner: Owner,
    /// How to print.
    pub out: Output,
}

impl Ctx {
    /// Opens the session and a client of `service` at `endpoints` (comma-separated); the
    /// tenant defaults to the caller's home tenant.
    pub async fn open(service: &str, endpoints: &str, args: &ProjectArgs) -> anyhow::Result<Self> {
        let session = Arc::new(Session::open(args.iam.as_deref()).await?);
        let tenant = match &args.tenant {
            Some(t) => t.clone(),
            None => {
                let me = session.iam(reqwest::Method::GET, "/v1/auth/whoami").await?;
                me["claims"]["tenant"]
                    .as_str()
                    .map(str::to_owned)
                    .context("which tenant? pass --tenant (or set ULTRACLOUD_TENANT)")?
            }
        };
        let Some(project) = args.project.clone() else {
            bail!("which project? pass --project (or set ULTRACLOUD_PROJECT)")
        };
        // A command line waits for one answer: one round over the replicas, then the error.
        let client = Client::from_list(service, endpoints)?.with_credentials(session.clone()).with_rounds(1);
        Ok(Self { client, owner: Owner { tenant, project }, out: args.output.or_json(args.json) })
    }

    /// Prints every item of a collection (following `next_page_token`) as rows of `fields`.
    pub async fn list<R, N>(&self, c: Collection<'_, R, N>, args: &ListArgs, fields: &[&str]) -> anyhow::Result<()>
    where
        R: DeserializeOwned + Serialize,
        N: Serialize,
    {
        let items = c.list_all(&args.query()).await?;
        self.out.list(&items, fields);
        Ok(())
    }

    /// Prints one resource.
    pub fn show<T: Serialize>(&self, item: &T) {
        self.out.one(item);
    }

    /// Changes the labels and annotations of a collection's resource and shows it.
    pub async fn label<R: DeserializeOwned + Serialize, N: Serialize>(
        &self,
        c: Collection<'_, R, N>,
        args: &LabelArgs,
    ) -> anyhow::Result<()> {
        self.show(&c.patch_meta(&args.name, &args.patch()?, None).await?);
        Ok(())
    }

    /// Deletes `id` from a collection and says so.
    pub async fn delete<R: DeserializeOwned, N: Serialize>(
        &self,
        c: Collection<'_, R, N>,
        id: &str,
        what: &str,
    ) -> anyhow::Result<()> {
        c.delete(id).await?;
        println!("{what} {id} deleted");
        Ok(())
    }
}
