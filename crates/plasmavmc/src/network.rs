//! The controller's client of prismnet: VM NICs are prismnet ports bound to the VM's worker
//! as tap devices. Calls go to the tenant's own project path, so a subnet or port of another
//! tenant is simply not found there.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use ultracloud_iam::guard::TokenSource;
use ultracloud_prismnet::model::Port;

use crate::model::Owner;

/// What went wrong talking to prismnet.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// prismnet refused the request (4xx): the message is for the user.
    #[error("{0}")]
    Refused(String),
    /// prismnet is unreachable or failing.
    #[error("prismnet is unavailable: {0}")]
    Unavailable(String),
}

/// A prismnet controller client with the platform's credentials.
#[derive(Debug, Clone)]
pub struct Prismnet {
    http: reqwest::Client,
    bases: Vec<String>,
    tokens: Arc<TokenSource>,
}

/// The device owner prismnet records for a VM's port.
pub fn device_owner(vm: &str) -> String {
    format!("compute:vm/{vm}")
}

impl Prismnet {
    /// A client of the prismnet replicas at `bases` (`http://host:port,…`).
    pub fn new(bases: &str, tokens: Arc<TokenSource>) -> Self {
        let bases =
            bases.split(',').map(|b| b.trim().trim_end_matches('/').to_owned()).filter(|b| !b.is_empty()).collect();
        Self { http: ultracloud_tls::client::http_client(), bases, tokens }
    }

    /// `{base}/v1/tenants/{tenant}/projects/{project}/{segments…}`, each segment
    /// percent-encoded: no ID or name can step into another path.
    fn url(base: &str, owner: &Owner, segments: &[&str]) -> Result<reqwest::Url, NetError> {
        let mut url =
            reqwest::Url::parse(base).map_err(|e| NetError::Unavailable(format!("prismnet URL {base}: {e}")))?;
        url.path_segments_mut()
            .map_err(|()| NetError::Unavailable(format!("prismnet URL {base} cannot take a path")))?
            .pop_if_empty()
            .extend(["v1", "tenants", owner.tenant.as_str(), "projects", owner.project.as_str()])
            .extend(segments);
        Ok(url)
    }

    async fn call(
        &self,
        method: reqwest::Method,
        owner: &Owner,
        segments: &[&str],
        body: Option<Value>,
    ) -> Result<Value, NetError> {
        let token = self.tokens.token().await.map_err(NetError::Unavailable)?;
        let mut last = "no prismnet endpoint configured".to_owned();
        for base in &self.bases {
            let url = Self::url(base, owner, segments)?;
            let mut req = self.http.request(method.clone(), url).bearer_auth(&token).timeout(Duration::from_secs(20));
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = format!("{base}: {e}");
                    continue;
                }
            };
            let status = resp.status();
            if status == http::StatusCode::UNAUTHORIZED {
                self.tokens.forget();
            }
            if status.is_server_error() {
                last = format!("{base} answered {status}");
                continue;
            }
            let text = resp.text().await.unwrap_or_default();
            if !status.is_success() {
                let message = serde_json::from_str::<Value>(&text)
                    .ok()
                    .and_then(|v| v["error"]["message"].as_str().map(str::to_owned))
                    .unwrap_or(text);
                return Err(NetError::Refused(message));
            }
            return Ok(if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or(Value::Null) });
        }
        Err(NetError::Unavailable(last))
    }

    fn port(v: Value) -> Result<Port, NetError> {
        serde_json::from_value(v)
            .map_err(|e| NetError::Unavailable(format!("prismnet answered an unreadable port: {e}")))
    }

    /// Creates a port for `vm` in `subnet` (ID or name), bound to `host` as a tap.
    pub async fn create_port(&self, owner: &Owner, subnet: &str, vm: &str, host: &str) -> Result<Port, NetError> {
        let body = json!({
            "subnet": subnet,
            "name": format!("{vm}-nic"),
            "binding": {"host": host, "plug": {"kind": "tap"}},
            "device_owner": device_owner(vm),
        });
        Self::port(self.call(reqwest::Method::POST, owner, &["ports"], Some(body)).await?)
    }

    /// A port by ID or name.
    pub async fn get_port(&self, owner: &Owner, port: &str) -> Result<Port, NetError> {
        Self::port(self.call(reqwest::Method::GET, owner, &["ports", port], None).await?)
    }

    /// Binds a port to `vm` on `host` (creation with an existing port, and migrations); with
    /// `standby`, its tap is also made, detached, on that host (a live migration's target).
    pub async fn bind_port(
        &self,
        owner: &Owner,
        port: &str,
        vm: &str,
        host: &str,
        standby: Option<&str>,
    ) -> Result<Port, NetError> {
        let binding = json!({"host": host, "plug": {"kind": "tap"}, "standby": standby});
        let body = json!({"binding": binding, "device_owner": device_owner(vm)});
        Self::port(self.call(reqwest::Method::PATCH, owner, &["ports", port], Some(body)).await?)
    }

    /// Unbinds a port the user brought (it stays, with its addresses).
    pub async fn unbind_port(&self, owner: &Owner, port: &str) -> Result<(), NetError> {
        let body = json!({"binding": null, "device_owner": ""});
        match self.call(reqwest::Method::PATCH, owner, &["ports", port], Some(body)).await {
            Ok(_) => Ok(()),
            Err(NetError::Refused(m)) if m.contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Deletes a port plasmavmc created (gone already is fine).
    pub async fn delete_port(&self, owner: &Owner, port: &str) -> Result<(), NetError> {
        match self.call(reqwest::Method::DELETE, owner, &["ports", port], None).await {
            Ok(_) => Ok(()),
            Err(NetError::Refused(m)) if m.contains("not found") => Ok(()),
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_never_leave_their_path_segment() {
        let owner = Owner { tenant: "acme".into(), project: "web".into() };
        let url = Prismnet::url("http://10.0.0.1:8580/", &owner, &["ports", "../../../globex/projects/app/ports/p1"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "http://10.0.0.1:8580/v1/tenants/acme/projects/web/ports/..%2F..%2F..%2Fglobex%2Fprojects%2Fapp%2Fports%2Fp1"
        );
        let url = Prismnet::url("http://10.0.0.1:8580", &owner, &["ports", "p?x=1#y"]).unwrap();
        assert_eq!(url.path(), "/v1/tenants/acme/projects/web/ports/p%3Fx=1%23y");
        assert!(url.query().is_none());
    }
}
