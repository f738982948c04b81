//! The supervisor: an actor that owns one runner task per service and drives the set of running
//! services to the latest assignment.
//!
//! A runner spawns its process, waits for it, and on an exit applies the restart policy with
//! exponential backoff, logging every restart to the agent's log and to the service's own log.
//! Status flows out through a `watch` channel per runner, so reading status never waits on a
//! child. Assignment changes are reconciled by name: new specs start, removed ones stop, changed
//! ones restart with the new spec.

use std::collections::BTreeMap;
use std::path::PathBuf;

use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::child::{RunningChild, log_line, open_log, spawn_failure};
use crate::spec::{RestartPolicy, ServiceSpec};
use crate::status::{ExitInfo, ServiceState, ServiceStatus};

/// The supervisor task is gone (it only ends after `shutdown`).
#[derive(Debug, thiserror::Error)]
#[error("the node supervisor has shut down")]
pub struct SupervisorGone;

enum Command {
    Apply(Vec<ServiceSpec>, oneshot::Sender<()>),
    Status(oneshot::Sender<Vec<ServiceStatus>>),
    Shutdown(oneshot::Sender<()>),
}

/// Handle to the supervisor actor; cheap to clone.
#[derive(Debug, Clone)]
pub struct SupervisorHandle {
    tx: mpsc::Sender<Command>,
}

impl SupervisorHandle {
    /// Starts the supervisor; service logs go to `logs_dir/<service>.log`.
    pub fn spawn(logs_dir: PathBuf, backoff: Backoff) -> Self {
        let (tx, rx) = mpsc::channel(16);
        let actor = Supervisor { logs_dir, backoff, services: BTreeMap::new() };
        tokio::spawn(actor.run(rx));
        Self { tx }
    }

    /// Makes the running services match `specs` and returns once new ones are spawned and
    /// removed ones have stopped.
    pub async fn apply(&self, specs: Vec<ServiceSpec>) -> Result<(), SupervisorGone> {
        let (reply, done) = oneshot::channel();
        self.tx.send(Command::Apply(specs, reply)).await.map_err(|_| SupervisorGone)?;
        done.await.map_err(|_| SupervisorGone)
    }

    /// Status of every assigned service, sorted by name.
    pub async fn status(&self) -> Result<Vec<ServiceStatus>, SupervisorGone> {
        let (reply, done) = oneshot::channel();
        self.tx.send(Command::Status(reply)).await.map_err(|_| SupervisorGone)?;
        done.await.map_err(|_| SupervisorGone)
    }

    /// Stops every service (SIGTERM, then SIGKILL after its stop timeout) and waits for them.
    pub async fn shutdown(&self) -> Result<(), SupervisorGone> {
        let (reply, done) = oneshot::channel();
        self.tx.send(Command::Shutdown(reply)).await.map_err(|_| SupervisorGone)?;
        done.await.map_err(|_| SupervisorGone)
    }
}

struct Supervised {
    spec: ServiceSpec,
    cancel: CancellationToken,
    status: watch::Receiver<ServiceStatus>,
    task: JoinHandle<()>,
}

struct Supervisor {
    logs_dir: PathBuf,
    backoff: Backoff,
    services: BTreeMap<String, Supervised>,
}

impl Supervisor {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        while let Some(cmd) = rx.recv().await {
            match cmd {
                Command::Apply(specs, reply) => {
                    self.apply(specs).await;
                    let _ = reply.send(());
                }
                Command::Status(reply) => {
                    let _ = reply.send(self.services.values().map(|s| s.status.borrow().clone()).collect());
                }
                Command::Shutdown(reply) => {
                    let names: Vec<String> = self.services.keys().cloned().collect();
                    self.stop_all(names).await;
                    let _ = reply.send(());
                    return;
                }
            }
        }
    }

    async fn apply(&mut self, specs: Vec<ServiceSpec>) {
        let desired: BTreeMap<String, ServiceSpec> = specs.into_iter().map(|s| (s.name.clone(), s)).collect();
        let to_stop: Vec<String> = self
            .services
            .iter()
            .filter(|(name, s)| desired.get(*name) != Some(&s.spec))
            .map(|(name, _)| name.clone())
            .collect();
        self.stop_all(to_stop).await;
        for (name, spec) in desired {
            if !self.services.contains_key(&name) {
                let started = self.start(spec);
                self.services.insert(name, started);
            }
        }
    }

    async fn stop_all(&mut self, names: Vec<String>) {
        let stopping: Vec<Supervised> = names.iter().filter_map(|n| self.services.remove(n)).collect();
        for s in &stopping {
            tracing::info!(service = %s.spec.name, "stopping service");
            s.cancel.cancel();
        }
        for s in stopping {
            let _ = s.task.await;
        }
    }

    fn start(&self, spec: ServiceSpec) -> Supervised {
        let log = self.logs_dir.join(format!("{}.log", spec.name));
        let initial = ServiceStatus {
            name: spec.name.clone(),
            state: ServiceState::Starting,
            pid: None,
            restarts: 0,
            last_exit: None,
            log,
        };
        let (tx, rx) = watch::channel(initial);
        let cancel = CancellationToken::new();
        let runner = Runner {
            spec: spec.clone(),
            logs_dir: self.logs_dir.clone(),
            backoff: self.backoff,
            cancel: cancel.clone(),
            status: tx,
        };
        Supervised { spec, cancel, status: rx, task: tokio::spawn(runner.run()) }
    }
}

struct Runner {
    spec: ServiceSpec,
    logs_dir: PathBuf,
    backoff: Backoff,
    cancel: CancellationToken,
    status: watch::Sender<ServiceStatus>,
}

impl Runner {
    async fn run(self) {
        let name = self.spec.name.clone();
        let mut consecutive_failures = 0u32;
        loop {
            self.set(|s| {
                s.state = ServiceState::Starting;
                s.pid = None;
            });
            let exit = match self.run_once().await {
                RunOutcome::Exited(exit) => exit,
                RunOutcome::Stopped(exit) => {
                    self.set(|s| {
                        s.state = ServiceState::Stopped;
                        s.pid = None;
                        s.last_exit = exit;
                    });
                    return;
                }
            };
            let restart = match self.spec.restart {
                RestartPolicy::Always => true,
                RestartPolicy::OnFailure => exit.failed(),
                RestartPolicy::Never => false,
            };
            if !restart {
                let state = if exit.failed() { ServiceState::Failed } else { ServiceState::Stopped };
                tracing::warn!(service = %name, exit = %exit.description, state = %state, "service exited; its restart policy does not restart it");
                self.log(&format!(
                    "{name} exited ({}); not restarting (policy {:?})",
                    exit.description, self.spec.restart
                ));
                self.set(|s| {
                    s.state = state;
                    s.pid = None;
                    s.last_exit = Some(exit);
                });
                return;
            }
            if exit.ran_secs >= self.backoff.reset_after.as_secs_f64() {
                consecutive_failures = 0;
            }
            consecutive_failures += 1;
            let delay = self.backoff.delay(consecutive_failures);
            let restarts = self.status.borrow().restarts + 1;
            tracing::warn!(
                service = %name,
                exit = %exit.description,
                ran_secs = format!("{:.1}", exit.ran_secs),
                delay_ms = delay.as_millis() as u64,
                restart = restarts,
                "service exited; restarting with backoff"
            );
            self.log(&format!(
                "{name} exited ({}) after {:.1}s; restart #{restarts} in {:.1}s",
                exit.description,
                exit.ran_secs,
                delay.as_secs_f64()
            ));
            self.set(|s| {
                s.state = ServiceState::Restarting;
                s.pid = None;
                s.restarts = restarts;
                s.last_exit = Some(exit);
            });
            tokio::select! {
                () = tokio::time::sleep(delay) => {}
                () = self.cancel.cancelled() => {
                    self.set(|s| s.state = ServiceState::Stopped);
                    return;
                }
            }
        }
    }

    async fn run_once(&self) -> RunOutcome {
        let name = &self.spec.name;
        let mut log = match open_log(&self.logs_dir, name) {
            Ok(log) => log,
            Err(e) => {
                tracing::error!(service = %name, error = %e, "cannot open service log");
                return RunOutcome::Exited(spawn_failure(&e));
            }
        };
        let mut child = match RunningChild::spawn(&self.spec, &log) {
            Ok(child) => child,
            Err(e) => {
                tracing::error!(service = %name, program = %self.spec.program.display(), error = %e, "cannot start service");
                log_line(&mut log, &format!("cannot start {}: {e}", self.spec.program.display()));
                return RunOutcome::Exited(spawn_failure(&e));
            }
        };
        let pid = child.pid();
        tracing::info!(service = %name, pid, "service started");
        log_line(&mut log, &format!("started {name} (pid {pid})"));
        self.set(|s| {
            s.state = ServiceState::Running;
            s.pid = Some(pid);
        });
        tokio::select! {
            exit = child.wait() => RunOutcome::Exited(exit),
            () = self.cancel.cancelled() => {
                self.set(|s| s.state = ServiceState::Stopping);
                let exit = child.stop(self.spec.stop_timeout).await;
                tracing::info!(service = %name, pid, exit = %exit.description, "service stopped");
                log_line(&mut log, &format!("stopped {name} (pid {pid}): {}", exit.description));
                RunOutcome::Stopped(Some(exit))
            }
        }
    }

    fn set(&self, f: impl FnOnce(&mut ServiceStatus)) {
        self.status.send_modify(f);
    }

    fn log(&self, message: &str) {
        if let Ok(mut log) = open_log(&self.logs_dir, &self.spec.name) {
            log_line(&mut log, message);
        }
    }
}

enum RunOutcome {
    Exited(ExitInfo),
    Stopped(Option<ExitInfo>),
}
