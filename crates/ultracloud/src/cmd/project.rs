//! The client side of a tenant's project in one service: a logged-in session and the
//! service's `/v1/tenants/{tenant}/projects/{project}` base, with the calls every resource
//! command makes (create, list as a table, show, delete).

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::Value;

use super::session::Session;
use super::table;

/// An open session with the project's base path.
pub struct Ctx {
    /// The session.
    pub s: Session,
    /// `<service>/v1/tenants/{tenant}/projects/{project}`.
    pub base: String,
    /// Print JSON instead of tables.
    pub json: bool,
}

impl Ctx {
    /// Opens the session; the tenant defaults to the caller's home tenant.
    pub async fn open(
        service: &str,
        tenant: Option<&str>,
        project: Option<&str>,
        iam: Option<&str>,
        json: bool,
    ) -> anyhow::Result<Self> {
        let s = Session::open(iam).await?;
        let tenant = match tenant {
            Some(t) => t.to_owned(),
            None => {
                let me = s.iam(Method::GET, "/v1/auth/whoami", None).await?;
                me["claims"]["tenant"]
                    .as_str()
                    .map(str::to_owned)
                    .context("which tenant? pass --tenant (or set ULTRACLOUD_TENANT)")?
            }
        };
        let Some(project) = project else { bail!("which project? pass --project (or set ULTRACLOUD_PROJECT)") };
        let base = format!("{}/v1/tenants/{tenant}/projects/{project}", ultracloud_tls::client::with_scheme(service));
        Ok(Self { s, base, json })
    }
}

impl Ctx {
    /// Calls `path` under the project base.
    pub async fn call(&self, method: Method, path: &str, body: Option<&Value>) -> anyhow::Result<Value> {
        self.s.call(method, &self.base, path, body).await
    }

    /// The items of a list answer.
    pub async fn items<T: serde::de::DeserializeOwned>(&self, path: &str) -> anyhow::Result<Vec<T>> {
        let v = self.call(Method::GET, path, None).await?;
        let items = v["items"].as_array().cloned().unwrap_or_default();
        items.into_iter().map(|i| serde_json::from_value(i).with_context(|| format!("reading {path}"))).collect()
    }

    /// Prints a list answer as a table of `fields`.
    pub async fn list(&self, path: &str, fields: &[&str]) -> anyhow::Result<()> {
        let v = self.call(Method::GET, path, None).await?;
        table::items(self.json, v["items"].as_array().map(Vec::as_slice).unwrap_or_default(), fields);
        Ok(())
    }

    /// Prints one resource.
    pub fn show(&self, v: &Value) {
        if self.json {
            println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
            return;
        }
        let rows: Vec<Vec<String>> =
            v.as_object().map(|o| o.iter().map(|(k, v)| vec![k.clone(), table::cell(v)]).collect()).unwrap_or_default();
        table::print(&["FIELD", "VALUE"], &rows);
    }

    /// Deletes `path` and says so.
    pub async fn delete(&self, path: &str, what: &str) -> anyhow::Result<()> {
        self.call(Method::DELETE, path, None).await?;
        println!("{what} deleted");
        Ok(())
    }
}
