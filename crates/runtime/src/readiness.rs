//! Readiness: a service is ready when every check it registered passes. Checks cover the
//! service's own state (e.g. "raft has a leader") and its dependencies (e.g. "flaredb reachable"),
//! so `/readyz` tells an operator or a load balancer whether the service can do its job now.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use serde::Serialize;

type CheckFn = Arc<dyn Fn() -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync>;

/// How long one check may take before it counts as failed.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

/// The set of readiness checks of a service; cheap to clone.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<Vec<(String, CheckFn)>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").finish_non_exhaustive()
    }
}

/// The outcome of one check.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct CheckResult {
    /// Check name, e.g. `raft-leader` or `dependency:flaredb`.
    pub name: String,
    /// Whether it passed.
    pub ok: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// The answer of `/readyz`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct ReadinessReport {
    /// All checks passed.
    pub ready: bool,
    /// Each check.
    pub checks: Vec<CheckResult>,
}

impl Readiness {
    /// Adds a check; `check` returns `Err(reason)` while not ready.
    pub fn add<F, Fut>(&self, name: impl Into<String>, check: F)
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        let f: CheckFn = Arc::new(move || Box::pin(check()));
        self.checks.lock().unwrap_or_else(PoisonError::into_inner).push((name.into(), f));
    }

    /// Runs every check concurrently, each bounded by [`CHECK_TIMEOUT`].
    pub async fn evaluate(&self) -> ReadinessReport {
        let checks: Vec<(String, CheckFn)> = self.checks.lock().unwrap_or_else(PoisonError::into_inner).clone();
        let runs = checks.into_iter().map(|(name, f)| async move {
            let outcome = tokio::time::timeout(CHECK_TIMEOUT, f()).await;
            let (ok, detail) = match outcome {
                Ok(Ok(())) => (true, None),
                Ok(Err(reason)) => (false, Some(reason)),
                Err(_) => (false, Some(format!("check timed out after {CHECK_TIMEOUT:?}"))),
            };
            CheckResult { name, ok, detail }
        });
        let checks: Vec<CheckResult> = futures::future::join_all(runs).await;
        ReadinessReport { ready: checks.iter().all(|c| c.ok), checks }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_when_all_checks_pass() {
        let r = Readiness::default();
        assert!(r.evaluate().await.ready, "no checks means ready");
        r.add("always", || async { Ok(()) });
        r.add("dependency:flaredb", || async { Err("connection refused".to_owned()) });
        let report = r.evaluate().await;
        assert!(!report.ready);
        assert_eq!(report.checks[1].detail.as_deref(), Some("connection refused"));
    }
}
