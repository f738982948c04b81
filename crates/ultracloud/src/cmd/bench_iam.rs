//! `ultracloud bench iam`: token issuance (password and API key grants) and authorization
//! decisions, through iam's HTTP API and offline in the shared guard. Prints figures.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::Args;
use serde_json::Value;
use ultracloud_iam::api::Scope;
use ultracloud_iam::api::{AuthorizeRequest, TokenRequest};
use ultracloud_iam::guard::{Guard, GuardConfig};

/// Flags of `bench iam`.
#[derive(Debug, Args)]
pub struct IamBench {
    /// iam's URL (a bare host:port is https:// with `bench --tls-dir`).
    #[arg(long, default_value = "127.0.0.1:8480")]
    iam: String,
    /// The admin password file iam wrote on its first start.
    #[arg(long, value_name = "FILE")]
    admin_password_file: std::path::PathBuf,
    /// The platform API key file (for the guard's offline path).
    #[arg(long, value_name = "FILE")]
    platform_api_key_file: std::path::PathBuf,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Requests per workload and level (the password grant does a tenth: argon2 is slow on
    /// purpose).
    #[arg(long, default_value_t = 2000)]
    requests: usize,
    /// Longest any one cell may run, in seconds.
    #[arg(long, default_value_t = 30)]
    max_seconds: u64,
}

/// One cell's figures (shared by the load benchmarks: `bench iam`, `bench api`).
pub(super) struct Cell {
    /// Requests that succeeded.
    pub(super) ops: usize,
    /// Requests that failed.
    pub(super) errors: usize,
    /// Wall time of the cell.
    pub(super) elapsed: Duration,
    /// Each successful request's latency.
    pub(super) latencies: Vec<Duration>,
}

impl Cell {
    /// The header of [`Cell::row`]s.
    pub(super) fn header() -> String {
        format!(
            "{:<28} {:>7} {:>8} {:>10} {:>9} {:>9} {:>7}",
            "WORKLOAD", "CLIENTS", "OPS", "OPS/S", "P50 MS", "P99 MS", "ERRORS"
        )
    }

    /// The cell as a table row (under [`Cell::header`]).
    pub(super) fn row(&self, name: &str, clients: usize) -> String {
        let mut l = self.latencies.clone();
        l.sort();
        let pct = |p: f64| l.get(((l.len() as f64 * p) as usize).min(l.len().saturating_sub(1))).copied();
        let ms = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.2}", d.as_secs_f64() * 1e3));
        format!(
            "{name:<28} {clients:>7} {:>8} {:>10.0} {:>9} {:>9} {:>7}",
            self.ops,
            self.ops as f64 / self.elapsed.as_secs_f64(),
            ms(pct(0.5)),
            ms(pct(0.99)),
            self.errors
        )
    }
}

/// Runs `op` `requests` times over `clients` tasks (bounded by `deadline`).
async fn drive<F, Fut>(clients: usize, requests: usize, deadline: Duration, op: F) -> Cell
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        let share = requests / clients + usize::from(c < requests % clients);
        tasks.push(tokio::spawn(async move {
            let (mut lat, mut errors) = (Vec::with_capacity(share), 0);
            for i in 0..share {
                if start.elapsed() > deadline {
                    break;
                }
                let t = Instant::now();
                if op(c * 1_000_000 + i).await {
                    lat.push(t.elapsed());
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        }));
    }
    let (mut latencies, mut errors) = (Vec::new(), 0);
    for t in tasks {
        if let Ok((l, e)) = t.await {
            latencies.extend(l);
            errors += e;
        }
    }
    Cell { ops: latencies.len(), errors, elapsed: start.elapsed(), latencies }
}

async fn post(http: &reqwest::Client, url: String, token: Option<&str>, body: &impl serde::Serialize) -> Option<Value> {
    let mut r = http.post(url).json(body);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    let resp = r.send().await.ok()?;
    if !resp.status().is_success() {
        return None;
    }
    resp.json().await.ok()
}

/// Runs the benchmark.
pub async fn run(a: IamBench) -> anyhow::Result<()> {
    let iam = ultracloud_tls::client::with_scheme(&a.iam);
    let read = |f: &std::path::Path| -> anyhow::Result<String> {
        ultracloud_runtime::secret_file::read(f).with_context(|| format!("reading {}", f.display()))
    };
    let admin_pw = read(&a.admin_password_file)?;
    let platform_key = read(&a.platform_api_key_file)?;
    let http = ultracloud_tls::client::http_client();
    let login = TokenRequest::Password { username: "admin".into(), password: admin_pw };
    let Some(admin) = post(&http, format!("{iam}/v1/auth/token"), None, &login).await else {
        bail!("cannot log in as admin at {iam}");
    };
    let admin = admin["access_token"].as_str().unwrap_or_default().to_owned();
    let key_grant = TokenRequest::ApiKey { api_key: platform_key.clone() };
    let deadline = Duration::from_secs(a.max_seconds);
    let scope = Scope::Project { tenant: "bench".into(), project: "p".into() };
    let ask =
        AuthorizeRequest { subject: "user:admin".into(), action: "compute.vm.create".into(), scope: scope.clone() };
    let guard = Guard::connect(GuardConfig { endpoints: vec![iam.clone()], api_key: platform_key.clone() })
        .map_err(|e| anyhow::anyhow!(e))?;
    let authz = guard.authorizer().clone();
    authz.authenticate(&admin).await.map_err(|e| anyhow::anyhow!("guard: {e}"))?;

    println!("{}", Cell::header());
    for &clients in &a.clients {
        let (h, url, body) = (http.clone(), format!("{iam}/v1/auth/token"), login.clone());
        let cell = drive(clients, (a.requests / 10).max(clients), deadline, move |_| {
            let (h, url, body) = (h.clone(), url.clone(), body.clone());
            async move { post(&h, url, None, &body).await.is_some() }
        })
        .await;
        println!("{}", cell.row("token (password, argon2id)", clients));
        let (h, url, body) = (http.clone(), format!("{iam}/v1/auth/token"), key_grant.clone());
        let cell = drive(clients, a.requests, deadline, move |_| {
            let (h, url, body) = (h.clone(), url.clone(), body.clone());
            async move { post(&h, url, None, &body).await.is_some() }
        })
        .await;
        println!("{}", cell.row("token (API key)", clients));
        let (h, url, body, t) = (http.clone(), format!("{iam}/v1/authorize"), ask.clone(), admin.clone());
        let cell = drive(clients, a.requests, deadline, move |_| {
            let (h, url, body, t) = (h.clone(), url.clone(), body.clone(), t.clone());
            async move { post(&h, url, Some(&t), &body).await.is_some_and(|v| v["allowed"] == true) }
        })
        .await;
        println!("{}", cell.row("POST /v1/authorize", clients));
        let (z, t, s) = (authz.clone(), admin.clone(), scope.clone());
        let cell = drive(clients, a.requests * 50, deadline, move |_| {
            let (z, t, s) = (z.clone(), t.clone(), s.clone());
            async move {
                match z.authenticate(&t).await {
                    Ok(c) => z.decide(&c, "compute.vm.create", &s).await.is_ok_and(|d| d.allowed),
                    Err(_) => false,
                }
            }
        })
        .await;
        println!("{}", cell.row("guard: verify + decide", clients));
    }
    Ok(())
}
