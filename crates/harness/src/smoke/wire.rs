//! The wire check: chainfire, flaredb and lightningstor's storage nodes on every control-plane
//! node refuse whoever lacks a cluster certificate of an allowed role — no certificate, a
//! worker's, plain HTTP/gRPC — and flaredb's Raft and placement routes refuse even an operator's.

use std::time::Duration;

use anyhow::{Context, bail};

use super::Seen;
use crate::lab::Lab;
use crate::topology::{Role, ports};

/// An HTTP client presenting the certificate in `dir` (or none) and trusting the lab's CA.
fn client(lab_ca: &std::path::Path, holder: Option<&std::path::Path>) -> anyhow::Result<reqwest::Client> {
    let builder = match holder {
        Some(dir) => ultracloud_tls::ClusterTls::load(dir)?.http_client_builder()?,
        None => reqwest::Client::builder().use_preconfigured_tls(ultracloud_tls::trust_only(lab_ca)?),
    };
    Ok(builder.timeout(Duration::from_secs(5)).build()?)
}

/// chainfire's answer to a get from an etcd client over TLS with `tls` (plain without).
async fn etcd_get(addr: &str, tls: Option<etcd_client::TlsOptions>) -> Result<(), String> {
    let mut opts = etcd_client::ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_timeout(Duration::from_secs(3));
    let scheme = if tls.is_some() { "https" } else { "http" };
    if let Some(t) = tls {
        opts = opts.with_tls(t);
    }
    let mut c =
        etcd_client::Client::connect([format!("{scheme}://{addr}")], Some(opts)).await.map_err(|e| e.to_string())?;
    c.get("smoke/wire", None).await.map(|_| ()).map_err(|e| e.to_string())
}

/// Probes every control-plane node; every probe must be refused.
pub(super) async fn refuse_without_certificates(lab: &Lab) -> anyhow::Result<Seen> {
    let secrets = lab.secrets()?;
    let ca = secrets.tls.join("ca").join(ultracloud_tls::CA_FILE);
    let worker = lab.topo.nodes.iter().find(|n| n.role == Role::Worker).context("no worker")?;
    let worker_dir = secrets.tls_dir(&worker.name);
    let anonymous = client(&ca, None)?;
    let as_worker = client(&ca, Some(&worker_dir))?;
    let as_operator = client(&ca, Some(&secrets.admin_tls_dir()))?;
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
    let ca_pem = std::fs::read_to_string(&ca)?;
    let (_, worker_cert, worker_key) = ultracloud_tls::ClusterTls::load(&worker_dir)?.pem_parts();
    let mut refused = 0;
    for n in lab.topo.control_plane() {
        let db = n.addr(ports::FLAREDB);
        let status = format!("https://{db}/v1/status");
        if anonymous.get(&status).send().await.is_ok() {
            bail!("flaredb on {} answered a client without a certificate", n.name);
        }
        let r = as_worker.get(&status).send().await.with_context(|| format!("flaredb on {}", n.name))?;
        if r.status() != 403 {
            bail!("flaredb on {} answered {} to a worker's certificate", n.name, r.status());
        }
        let r =
            as_operator.post(format!("https://{db}/internal/heartbeat")).json(&serde_json::json!({})).send().await?;
        if r.status() != 403 {
            bail!("flaredb on {} answered {} to an operator on a peer route", n.name, r.status());
        }
        let r = plain.get(format!("http://{db}/v1/status")).send().await?;
        if r.status() != 400 {
            bail!("flaredb on {} answered {} to plain HTTP", n.name, r.status());
        }
        let cf = n.addr(ports::CHAINFIRE).to_string();
        let ca_only = etcd_client::TlsOptions::new().ca_certificate(etcd_client::Certificate::from_pem(&ca_pem));
        if etcd_get(&cf, Some(ca_only.clone())).await.is_ok() {
            bail!("chainfire on {} answered a client without a certificate", n.name);
        }
        let worker_tls = ca_only.identity(etcd_client::Identity::from_pem(&worker_cert, &worker_key));
        match etcd_get(&cf, Some(worker_tls)).await {
            Err(e) if e.contains("may not use") => {}
            other => bail!("chainfire on {} did not refuse a worker's certificate: {other:?}", n.name),
        }
        if etcd_get(&cf, None).await.is_ok() {
            bail!("chainfire on {} answered plain gRPC", n.name);
        }
        // lightningstor's storage nodes: blocks only for the control plane and operators.
        let store = n.addr(ports::LIGHTNINGSTOR_NODE);
        let blocks = format!("https://{store}/v1/blocks?limit=1");
        if anonymous.get(&blocks).send().await.is_ok() {
            bail!("the storage node on {} answered a client without a certificate", n.name);
        }
        let r = as_worker.get(&blocks).send().await.with_context(|| format!("the storage node on {}", n.name))?;
        if r.status() != 403 {
            bail!("the storage node on {} answered {} to a worker's certificate", n.name, r.status());
        }
        let r = plain.get(format!("http://{store}/v1/status")).send().await?;
        if r.status() != 400 {
            bail!("the storage node on {} answered {} to plain HTTP", n.name, r.status());
        }
        refused += 10;
    }
    Ok(Seen::new(format!(
        "{refused} probes refused: no certificate, {}'s worker certificate, plain HTTP/gRPC, an operator on flaredb's peer routes",
        worker.name
    )))
}
