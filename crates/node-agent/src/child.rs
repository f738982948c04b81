//! Starting and stopping one service process.
//!
//! Each child gets its own process group, so a Ctrl-C on the agent's terminal reaches only the
//! agent, which then stops its children in order; and so a stop reaches the service's own helper
//! processes too. Each child also asks the kernel for SIGTERM when the agent dies, so a killed
//! agent never leaves services holding their data-dir locks behind.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::process::{Child, Command};

use crate::spec::ServiceSpec;
use crate::status::ExitInfo;

/// A running service process.
#[derive(Debug)]
pub struct RunningChild {
    child: Child,
    pid: u32,
    started: Instant,
}

/// Opens `<logs>/<service>.log` for appending (creating it 0640).
pub fn open_log(logs_dir: &Path, service: &str) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::create_dir_all(logs_dir)?;
    OpenOptions::new().create(true).append(true).mode(0o640).open(logs_dir.join(format!("{service}.log")))
}

/// Writes one agent line into the service log, so the log tells the whole story on its own.
pub fn log_line(log: &mut File, message: &str) {
    let now = humantime_now();
    let _ = writeln!(log, "--- ultracloud node {now}: {message}");
}

impl RunningChild {
    /// Spawns the service described by `spec` with stdout and stderr appended to `log`.
    pub fn spawn(spec: &ServiceSpec, log: &File) -> std::io::Result<Self> {
        let mut cmd = Command::new(&spec.program);
        cmd.args(&spec.args)
            .envs(&spec.env)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log.try_clone()?)
            .process_group(0)
            .kill_on_drop(false);
        let parent = std::process::id();
        #[allow(unsafe_code)]
        // SAFETY: the closure runs between fork and exec in the child and only makes two
        // async-signal-safe syscalls (prctl and getppid); it allocates nothing and takes no locks.
        unsafe {
            cmd.pre_exec(move || {
                nix::sys::prctl::set_pdeathsig(Signal::SIGTERM).map_err(std::io::Error::from)?;
                // The agent may have died between fork and prctl: then nobody would signal us.
                if nix::unistd::getppid().as_raw() as u32 != parent {
                    return Err(std::io::Error::other("node agent exited during spawn"));
                }
                Ok(())
            });
        }
        let child = cmd.spawn()?;
        let pid = child.id().ok_or_else(|| std::io::Error::other("child exited before its pid was read"))?;
        Ok(Self { child, pid, started: Instant::now() })
    }

    /// The process id (also its process group id).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Waits for the process to exit.
    pub async fn wait(&mut self) -> ExitInfo {
        let status = self.child.wait().await;
        exit_info(status, self.started.elapsed())
    }

    /// Stops the process group: SIGTERM, then SIGKILL after `timeout`. Returns how it ended.
    pub async fn stop(&mut self, timeout: Duration) -> ExitInfo {
        self.signal_group(Signal::SIGTERM);
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(status) => exit_info(status, self.started.elapsed()),
            Err(_) => {
                tracing::warn!(pid = self.pid, ?timeout, "service ignored SIGTERM; sending SIGKILL");
                self.signal_group(Signal::SIGKILL);
                let status = self.child.wait().await;
                exit_info(status, self.started.elapsed())
            }
        }
    }

    fn signal_group(&self, signal: Signal) {
        // The group exists as long as any member lives; ESRCH means everyone is already gone.
        if let Err(e) = killpg(Pid::from_raw(self.pid as i32), signal)
            && e != nix::errno::Errno::ESRCH
        {
            tracing::warn!(pid = self.pid, %signal, error = %e, "cannot signal service");
        }
    }
}

/// Describes a spawn that failed as an exit, so it follows the same restart path.
pub fn spawn_failure(err: &std::io::Error) -> ExitInfo {
    ExitInfo {
        code: None,
        signal: None,
        description: format!("spawn failed: {err}"),
        at: ultracloud_runtime::clock::now_secs(),
        ran_secs: 0.0,
    }
}

fn exit_info(status: std::io::Result<ExitStatus>, ran: Duration) -> ExitInfo {
    let (code, signal, description) = match status {
        Ok(s) => match (s.code(), s.signal()) {
            (Some(c), _) => (Some(c), None, format!("exit code {c}")),
            (None, Some(sig)) => {
                let name = Signal::try_from(sig).map(|s| s.as_str().to_owned()).unwrap_or_else(|_| sig.to_string());
                (None, Some(sig), format!("killed by {name}"))
            }
            (None, None) => (None, None, "ended".to_owned()),
        },
        Err(e) => (None, None, format!("wait failed: {e}")),
    };
    ExitInfo { code, signal, description, at: ultracloud_runtime::clock::now_secs(), ran_secs: ran.as_secs_f64() }
}

fn humantime_now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}
