//! `ultracloud bench api`: create/get/list/delete requests per second through a kit-based
//! service — prismnet's ports, with the typed client, as any caller makes them — at several
//! concurrency levels. Run it against a kept quickstart; it makes its ports in the given
//! subnet and deletes them again. Prints figures, never pass/fail.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use anyhow::Context;
use clap::Args;
use ultracloud_prismnet::api::{ListQuery, NewPort};
use ultracloud_prismnet::client::Prismnet;
use ultracloud_resource::Owner;
use ultracloud_resource::client::{Bearer, Client};

use super::bench_iam::Cell;

/// Flags of `bench api`.
#[derive(Debug, Args)]
pub struct ApiBench {
    /// iam's URL.
    #[arg(long, default_value = "127.0.0.1:8480")]
    iam: String,
    /// prismnet's URL.
    #[arg(long, default_value = "127.0.0.1:8580")]
    prismnet: String,
    /// The admin password file iam wrote on its first start.
    #[arg(long, value_name = "FILE")]
    admin_password_file: std::path::PathBuf,
    /// Tenant.
    #[arg(long, default_value = "demo")]
    tenant: String,
    /// Project.
    #[arg(long, default_value = "quickstart")]
    project: String,
    /// The subnet the ports are made in.
    #[arg(long, default_value = "demo")]
    subnet: String,
    /// Concurrency levels, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16")]
    clients: Vec<usize>,
    /// Ports created (and deleted) per level; gets are ten times as many, lists half.
    #[arg(long, default_value_t = 100)]
    ports: usize,
}

/// Every cell of `bench api` stops after this, however many calls remain.
const CELL_BOUND: std::time::Duration = std::time::Duration::from_secs(120);

/// Runs `total` calls of `op(i)` over `clients` tasks, until done or `deadline` has passed;
/// returns the cell and the successful calls' outputs.
pub(super) async fn cell<F, Fut, T>(
    clients: usize,
    total: usize,
    deadline: std::time::Duration,
    op: F,
) -> (Cell, Vec<T>)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<T>> + Send,
    T: Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let tasks: Vec<_> = (0..clients.max(1))
        .map(|_| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let (mut lat, mut out, mut errors) = (Vec::new(), Vec::new(), 0);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total || start.elapsed() > deadline {
                        return (lat, out, errors);
                    }
                    let t = Instant::now();
                    match op(i).await {
                        Ok(v) => {
                            lat.push(t.elapsed());
                            out.push(v);
                        }
                        Err(e) => {
                            errors += 1;
                            if errors == 1 {
                                eprintln!("  first error: {e:#}");
                            }
                        }
                    }
                }
            })
        })
        .collect();
    let (mut latencies, mut outs, mut errors) = (Vec::new(), Vec::new(), 0);
    for t in tasks {
        if let Ok((l, o, e)) = t.await {
            latencies.extend(l);
            outs.extend(o);
            errors += e;
        }
    }
    (Cell { ops: latencies.len(), errors, elapsed: start.elapsed(), latencies }, outs)
}

/// Runs `bench api`.
pub async fn run(a: ApiBench) -> anyhow::Result<std::process::ExitCode> {
    let password = ultracloud_runtime::secret_file::read(&a.admin_password_file)
        .with_context(|| format!("reading {}", a.admin_password_file.display()))?;
    let grant = ultracloud_iam::api::TokenRequest::Password { username: "admin".into(), password };
    let issued: ultracloud_iam::api::Issued =
        Client::new("iam", &[&a.iam])?.post(&["v1", "auth", "token"]).json(&grant).retry_safe().fetch().await?;
    let client =
        Client::new(Prismnet::SERVICE, &[&a.prismnet])?.with_credentials(Arc::new(Bearer(issued.access_token)));
    let net = Arc::new(Prismnet::new(client));
    let owner = Arc::new(Owner { tenant: a.tenant.clone(), project: a.project.clone() });
    let tag = ultracloud_iam::credential::new_id()[..4].to_owned();
    println!("prismnet ports at {} ({}/{}), {} per level", a.prismnet, a.tenant, a.project, a.ports);
    println!("{}", Cell::header());
    for &clients in &a.clients {
        let (n, s, t) = (net.clone(), owner.clone(), tag.clone());
        let subnet = a.subnet.clone();
        let (c, ids) = cell(clients, a.ports, CELL_BOUND, move |i| {
            let (n, s) = (n.clone(), s.clone());
            let new =
                NewPort { subnet: subnet.clone(), name: format!("bench-{t}-{clients}-{i}"), ..NewPort::default() };
            async move { Ok(n.ports(&s).create(&new).await?.id) }
        })
        .await;
        println!("{}", c.row("POST …/ports (create)", clients));
        if ids.is_empty() {
            println!("  no port was created at {clients} clients; nothing to read or delete");
            continue;
        }
        let ids = Arc::new(ids);
        let (n, s, i2) = (net.clone(), owner.clone(), ids.clone());
        let (c, _) = cell(clients, a.ports * 10, CELL_BOUND, move |i| {
            let (n, s, id) = (n.clone(), s.clone(), i2[i % i2.len().max(1)].clone());
            async move { Ok(n.ports(&s).get(&id).await?.id) }
        })
        .await;
        println!("{}", c.row("GET …/ports/{id}", clients));
        let (n, s) = (net.clone(), owner.clone());
        let (c, _) = cell(clients, (a.ports / 2).max(1), CELL_BOUND, move |_| {
            let (n, s) = (n.clone(), s.clone());
            async move { Ok(n.ports(&s).list_all(&ListQuery::default()).await?.len()) }
        })
        .await;
        println!("{}", c.row("GET …/ports (list)", clients));
        let (n, s, i2) = (net.clone(), owner.clone(), ids.clone());
        let (c, _) = cell(clients, ids.len(), CELL_BOUND, move |i| {
            let (n, s, id) = (n.clone(), s.clone(), i2[i].clone());
            async move { Ok(n.ports(&s).delete(&id).await?) }
        })
        .await;
        println!("{}", c.row("DELETE …/ports/{id}", clients));
    }
    Ok(std::process::ExitCode::SUCCESS)
}
