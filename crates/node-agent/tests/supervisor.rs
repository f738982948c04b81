//! The supervisor against real child processes (`/bin/sh`), with a fast backoff.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ultracloud_node_agent::backoff::Backoff;
use ultracloud_node_agent::spec::{RestartPolicy, ServiceSpec};
use ultracloud_node_agent::status::{ServiceState, ServiceStatus};
use ultracloud_node_agent::supervisor::SupervisorHandle;

fn sh(name: &str, script: &str, restart: RestartPolicy) -> ServiceSpec {
    ServiceSpec {
        name: name.to_owned(),
        program: PathBuf::from("/bin/sh"),
        args: vec!["-c".to_owned(), script.to_owned()],
        env: BTreeMap::new(),
        restart,
        stop_timeout: Duration::from_secs(5),
    }
}

fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(50),
        max: Duration::from_millis(400),
        reset_after: Duration::from_secs(10),
    }
}

async fn wait_for(sup: &SupervisorHandle, what: &str, cond: impl Fn(&[ServiceStatus]) -> bool) -> Vec<ServiceStatus> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let status = sup.status().await.unwrap();
        if cond(&status) {
            return status;
        }
        assert!(tokio::time::Instant::now() < deadline, "timed out waiting for {what}; last status {status:#?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn alive(pid: u32) -> bool {
    // A zombie still has /proc/<pid>; treat it as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat.split(") ").nth(1).unwrap_or("").starts_with('Z'),
        Err(_) => false,
    }
}

fn log_of(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(format!("{name}.log"))).unwrap_or_default()
}

#[tokio::test]
async fn crashing_service_is_restarted_with_backoff_and_logged() {
    let dir = tempfile::tempdir().unwrap();
    let sup = SupervisorHandle::spawn(dir.path().to_owned(), fast_backoff());
    sup.apply(vec![sh("crashy", "echo booting; exit 3", RestartPolicy::Always)]).await.unwrap();
    let status = wait_for(&sup, "3 restarts", |s| s[0].restarts >= 3).await;
    let exit = status[0].last_exit.as_ref().unwrap();
    assert_eq!(exit.code, Some(3));
    assert_eq!(exit.description, "exit code 3");
    let log = log_of(dir.path(), "crashy");
    assert!(log.matches("booting").count() >= 3, "child output is captured: {log}");
    assert!(
        log.contains("restart #1 in 0.1s") && log.contains("restart #2 in 0.1s") && log.contains("restart #3 in 0.2s"),
        "backoff doubles and is logged: {log}"
    );
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn shutdown_terminates_every_child() {
    let dir = tempfile::tempdir().unwrap();
    let sup = SupervisorHandle::spawn(dir.path().to_owned(), fast_backoff());
    sup.apply(vec![
        sh("a", "exec sleep 1000", RestartPolicy::Always),
        sh("b", "sleep 1000 & wait", RestartPolicy::Always),
    ])
    .await
    .unwrap();
    let status = wait_for(&sup, "both running", |s| s.iter().all(|x| x.state == ServiceState::Running)).await;
    let pids: Vec<u32> = status.iter().map(|s| s.pid.unwrap()).collect();
    assert!(pids.iter().all(|p| alive(*p)));
    sup.shutdown().await.unwrap();
    for pid in pids {
        assert!(!alive(pid), "pid {pid} survived shutdown");
    }
    // The grandchild `sleep` of b was in b's process group and got SIGTERM too.
    let leftover = std::process::Command::new("pgrep").args(["-f", "^sleep 1000$"]).output();
    if let Ok(out) = leftover {
        for pid in String::from_utf8_lossy(&out.stdout).lines() {
            let ppid = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            assert!(!ppid.contains(&format!(" {} ", std::process::id())), "grandchild {pid} left behind");
        }
    }
}

#[tokio::test]
async fn service_ignoring_sigterm_is_killed_after_its_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let sup = SupervisorHandle::spawn(dir.path().to_owned(), fast_backoff());
    let mut spec = sh("stubborn", "trap '' TERM; echo trapped; while true; do sleep 0.05; done", RestartPolicy::Always);
    spec.stop_timeout = Duration::from_millis(300);
    sup.apply(vec![spec]).await.unwrap();
    wait_for(&sup, "running", |s| s[0].state == ServiceState::Running).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !log_of(dir.path(), "stubborn").contains("trapped") {
        assert!(std::time::Instant::now() < deadline, "the child never installed its trap");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    sup.apply(vec![]).await.unwrap();
    let log = log_of(dir.path(), "stubborn");
    assert!(log.contains("killed by SIGKILL"), "{log}");
}

#[tokio::test]
async fn restart_policies_decide_the_final_state() {
    let dir = tempfile::tempdir().unwrap();
    let sup = SupervisorHandle::spawn(dir.path().to_owned(), fast_backoff());
    sup.apply(vec![
        sh("never-fails", "exit 2", RestartPolicy::Never),
        sh("onfail-ok", "exit 0", RestartPolicy::OnFailure),
        sh("onfail-bad", "exit 1", RestartPolicy::OnFailure),
    ])
    .await
    .unwrap();
    let status = wait_for(&sup, "settled", |s| {
        // Sorted by name: never-fails, onfail-bad, onfail-ok.
        s[0].state == ServiceState::Failed && s[1].restarts >= 1 && s[2].state == ServiceState::Stopped
    })
    .await;
    let by_name: BTreeMap<&str, &ServiceStatus> = status.iter().map(|s| (s.name.as_str(), s)).collect();
    assert_eq!(by_name["never-fails"].state, ServiceState::Failed);
    assert_eq!(by_name["never-fails"].restarts, 0);
    assert_eq!(by_name["onfail-ok"].state, ServiceState::Stopped);
    assert!(by_name["onfail-bad"].restarts >= 1);
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn apply_reconciles_added_removed_and_changed_services() {
    let dir = tempfile::tempdir().unwrap();
    let sup = SupervisorHandle::spawn(dir.path().to_owned(), fast_backoff());
    sup.apply(vec![
        sh("keep", "exec sleep 1000", RestartPolicy::Always),
        sh("drop", "exec sleep 1000", RestartPolicy::Always),
    ])
    .await
    .unwrap();
    let before = wait_for(&sup, "running", |s| s.iter().all(|x| x.state == ServiceState::Running)).await;
    let keep_pid = before.iter().find(|s| s.name == "keep").unwrap().pid.unwrap();
    let drop_pid = before.iter().find(|s| s.name == "drop").unwrap().pid.unwrap();

    sup.apply(vec![
        sh("keep", "exec sleep 1000", RestartPolicy::Always),
        sh("new", "exec sleep 1000", RestartPolicy::Always),
    ])
    .await
    .unwrap();
    let after = wait_for(&sup, "new running", |s| s.iter().all(|x| x.state == ServiceState::Running)).await;
    let names: Vec<&str> = after.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["keep", "new"]);
    assert_eq!(after[0].pid, Some(keep_pid), "an unchanged service is not restarted");
    assert!(!alive(drop_pid), "a removed service is stopped");

    sup.apply(vec![sh("keep", "exec sleep 999", RestartPolicy::Always)]).await.unwrap();
    let changed = wait_for(&sup, "changed running", |s| s.len() == 1 && s[0].state == ServiceState::Running).await;
    assert_ne!(changed[0].pid, Some(keep_pid), "a changed spec restarts the service");
    assert!(!alive(keep_pid));
    sup.shutdown().await.unwrap();
}

#[tokio::test]
async fn missing_program_is_reported_and_retried() {
    let dir = tempfile::tempdir().unwrap();
    let sup = SupervisorHandle::spawn(dir.path().to_owned(), fast_backoff());
    let mut spec = sh("ghost", "", RestartPolicy::Always);
    spec.program = PathBuf::from("/nonexistent/ultracloud-ghost");
    sup.apply(vec![spec]).await.unwrap();
    let status = wait_for(&sup, "a restart", |s| s[0].restarts >= 1).await;
    let exit = status[0].last_exit.as_ref().unwrap();
    assert!(exit.description.starts_with("spawn failed"), "{}", exit.description);
    assert!(log_of(dir.path(), "ghost").contains("/nonexistent/ultracloud-ghost"));
    sup.shutdown().await.unwrap();
}
