//! Running host tools with a deadline.
//!
//! Every probe in the doctor shells out to a host tool (`ip`, `apt-cache`, `dpkg`…). A wedged tool
//! must not wedge the doctor, so each run here has a deadline after which the child is killed by
//! PID and reaped, and its captured output feeds the report's DETAIL column.

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

/// How often a bounded run looks whether its child has exited.
const POLL: Duration = Duration::from_millis(10);
/// How long to wait for a dead child's output pipes to drain.
const DRAIN: Duration = Duration::from_secs(1);

/// How a bounded command ended.
#[derive(Debug)]
pub(crate) struct Ran {
    /// Exit status, or `None` when the deadline passed and the child was killed.
    pub(crate) status: Option<ExitStatus>,
    /// Captured standard output (lossy UTF-8).
    pub(crate) stdout: String,
    /// Captured standard error (lossy UTF-8).
    pub(crate) stderr: String,
    /// The deadline the command ran under, for messages.
    pub(crate) timeout: Duration,
}

impl Ran {
    /// True when the command exited with status 0 before its deadline.
    pub(crate) fn success(&self) -> bool {
        self.status.is_some_and(|s| s.success())
    }

    /// One line saying why the command failed: its last stderr line, or its exit status.
    pub(crate) fn failure(&self) -> String {
        match self.status {
            None => format!("timed out after {} s", self.timeout.as_secs()),
            Some(status) => last_line(&self.stderr)
                .or_else(|| last_line(&self.stdout))
                .map(|line| format!("{line} ({status})"))
                .unwrap_or_else(|| status.to_string()),
        }
    }
}

/// The last non-blank line of `text`, trimmed and cut to a table-friendly length.
pub(crate) fn last_line(text: &str) -> Option<String> {
    let line = text.lines().rev().map(str::trim).find(|l| !l.is_empty())?;
    Some(shorten(line, 160))
}

/// `text` cut to at most `max` characters, with an ellipsis when cut.
pub(crate) fn shorten(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_string()
    } else {
        let cut: String = text.chars().take(max.saturating_sub(1)).collect();
        format!("{cut}…")
    }
}

/// Owns a child process and kills and reaps it when dropped, so no exit path leaks one.
pub(crate) struct ChildGuard(Child);

impl ChildGuard {
    /// Takes ownership of a freshly spawned child.
    pub(crate) fn new(child: Child) -> Self {
        Self(child)
    }

    /// The child, to poll it.
    pub(crate) fn child(&mut self) -> &mut Child {
        &mut self.0
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        // `Child::kill` signals by PID; after a successful `try_wait` the PID is already reaped and
        // `wait` just returns the cached status, so this is safe to run in every state.
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
        }
        let _ = self.0.wait();
    }
}

/// Reads `pipe` to its end on a thread of its own and hands the bytes over a channel.
pub(crate) fn collect(mut pipe: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        let _ = tx.send(buf);
    });
    rx
}

/// Receives what [`collect`] gathered, giving up after [`DRAIN`] (a grandchild may hold the pipe).
pub(crate) fn drained(rx: Option<Receiver<Vec<u8>>>) -> String {
    rx.and_then(|rx| rx.recv_timeout(DRAIN).ok())
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default()
}

/// Runs `cmd` with stdin closed and stdout/stderr captured, killing it once `timeout` passes.
pub(crate) fn run_bounded(cmd: &mut Command, timeout: Duration) -> std::io::Result<Ran> {
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().map(collect);
    let stderr = child.stderr.take().map(collect);
    let mut guard = ChildGuard::new(child);
    let deadline = Instant::now() + timeout;
    let status = loop {
        match guard.child().try_wait()? {
            Some(status) => break Some(status),
            None if Instant::now() >= deadline => break None,
            None => thread::sleep(POLL),
        }
    };
    drop(guard);
    Ok(Ran { status, stdout: drained(stdout), stderr: drained(stderr), timeout })
}

/// A command line as a user would type it, for error messages.
pub(crate) fn display(cmd: &Command) -> String {
    let mut parts = vec![cmd.get_program().to_string_lossy().into_owned()];
    parts.extend(cmd.get_args().map(|a| a.to_string_lossy().into_owned()));
    parts.join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captures_output_and_status() {
        let ran = run_bounded(
            Command::new("/bin/sh").args(["-c", "echo out; echo oops >&2; exit 3"]),
            Duration::from_secs(5),
        )
        .unwrap();
        assert!(!ran.success());
        assert_eq!(ran.stdout.trim(), "out");
        assert!(ran.failure().starts_with("oops ("), "{}", ran.failure());
    }

    #[test]
    fn kills_at_the_deadline() {
        let start = Instant::now();
        let ran =
            run_bounded(Command::new("/bin/sh").args(["-c", "exec sleep 30"]), Duration::from_millis(200)).unwrap();
        assert!(ran.status.is_none());
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(ran.failure().contains("timed out"));
    }

    #[test]
    fn shorten_cuts_long_lines() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
