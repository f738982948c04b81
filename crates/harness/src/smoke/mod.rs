//! `ultracloud cluster smoke`: checks against the running cluster, each reported PASS/FAIL
//! with its duration (and measured figures), as a table or JSON. On a failure the logs of every
//! node are saved under `<lab>/reports/<time>/` and the path is printed.

mod compute;
mod control_plane;
mod isolation;
mod network;
mod storage;
mod wire;

use std::collections::BTreeMap;
use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::lab::Lab;

/// One check's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// What it proves.
    pub name: String,
    /// Passed?
    pub passed: bool,
    /// How long it took, in seconds.
    pub seconds: f64,
    /// What was seen (or what went wrong).
    pub detail: String,
    /// Measured figures (failover and catch-up times, in seconds).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, f64>,
}

/// The whole report.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Every check, in order.
    pub checks: Vec<CheckResult>,
    /// All passed?
    pub passed: bool,
    /// Total time in seconds.
    pub seconds: f64,
    /// Where the logs were saved (on failure).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logs_saved: Option<PathBuf>,
}

/// What a check returns: a detail line and figures.
#[derive(Debug, Default)]
pub struct Seen {
    detail: String,
    figures: BTreeMap<String, f64>,
}

impl Seen {
    /// A detail line.
    pub fn new(detail: impl Into<String>) -> Self {
        Self { detail: detail.into(), figures: BTreeMap::new() }
    }

    /// Adds a measured duration.
    pub fn figure(mut self, name: &str, d: Duration) -> Self {
        self.figures.insert(name.to_owned(), (d.as_secs_f64() * 1000.0).round() / 1000.0);
        self
    }
}

/// Runs checks, printing each as it finishes.
pub struct Runner {
    checks: Vec<CheckResult>,
    quiet: bool,
    start: Instant,
}

/// The longest any check may take.
pub const CHECK_BOUND: Duration = Duration::from_secs(180);

impl Runner {
    fn new(quiet: bool) -> Self {
        if !quiet {
            println!("{:<66} {:<6} {:>7}  DETAIL", "CHECK", "RESULT", "TIME");
        }
        Self { checks: Vec::new(), quiet, start: Instant::now() }
    }

    /// Runs one check (bounded by [`CHECK_BOUND`]).
    pub async fn check<F>(&mut self, name: &str, f: F) -> bool
    where
        F: Future<Output = anyhow::Result<Seen>>,
    {
        let start = Instant::now();
        let outcome = match tokio::time::timeout(CHECK_BOUND, f).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!("did not finish within {CHECK_BOUND:?}")),
        };
        let (passed, seen) = match outcome {
            Ok(seen) => (true, seen),
            Err(e) => (false, Seen::new(format!("{e:#}"))),
        };
        let r = CheckResult {
            name: name.to_owned(),
            passed,
            seconds: (start.elapsed().as_secs_f64() * 10.0).round() / 10.0,
            detail: seen.detail,
            figures: seen.figures,
        };
        if !self.quiet {
            let result = if r.passed { "PASS" } else { "FAIL" };
            println!("{:<66} {result:<6} {:>6.1}s  {}", r.name, r.seconds, r.detail);
        }
        self.checks.push(r);
        passed
    }

    fn finish(self, lab: &Lab) -> Report {
        let passed = self.checks.iter().all(|c| c.passed);
        let logs_saved = if passed { None } else { save_logs(lab).ok() };
        Report { checks: self.checks, passed, seconds: self.start.elapsed().as_secs_f64(), logs_saved }
    }
}

/// Copies every node's logs to `<lab>/reports/<time>/`.
pub fn save_logs(lab: &Lab) -> anyhow::Result<PathBuf> {
    let dest = lab.dir.join("reports").join(ultracloud_iam::service::now_secs().to_string());
    for n in &lab.topo.nodes {
        let to = dest.join(&n.name);
        std::fs::create_dir_all(&to)?;
        let from = crate::nodes::node_dir(&lab.dir, n);
        let _ = std::fs::copy(from.join("agent.log"), to.join("agent.log"));
        if let Ok(entries) = std::fs::read_dir(from.join("logs")) {
            for e in entries.flatten() {
                let _ = std::fs::copy(e.path(), to.join(e.file_name()));
            }
        }
    }
    Ok(dest)
}

/// Runs every smoke check against the running cluster. `quiet`: print nothing (for `--json`).
pub fn run<'a>(lab: &'a Lab, quiet: bool) -> ultracloud_runtime::Entry<'a, Report> {
    Box::pin(run_checks(lab, quiet))
}

async fn run_checks(lab: &Lab, quiet: bool) -> Report {
    // The lab speaks TLS only: the harness's certificate first (made at `start`).
    if let Err(e) = lab.secrets() {
        eprintln!("warning: the lab's certificates: {e:#}");
    }
    let mut r = Runner::new(quiet);
    control_plane::run(lab, &mut r).await;
    storage::run(lab, &mut r).await;
    network::run(lab, &mut r).await;
    compute::run(lab, &mut r).await;
    let report = r.finish(lab);
    if !quiet {
        let failed = report.checks.iter().filter(|c| !c.passed).count();
        println!(
            "{} checks, {} passed, {failed} failed, in {:.1}s",
            report.checks.len(),
            report.checks.len() - failed,
            report.seconds
        );
        if let Some(p) = &report.logs_saved {
            println!("logs of every node saved under {}", p.display());
        }
    }
    report
}
