//! Finding and stopping helper processes (dnsmasq, QEMU) by what they were started with, for
//! when a PID file was lost or rewritten: a process that cannot be found cannot be stopped,
//! and it outlives its namespace and directory.

use std::path::Path;
use std::time::{Duration, Instant};

/// PIDs of running `program`s with an argument `flag=<path>` where `<path>` lies under `dir`.
pub fn find_with_path_arg(program: &str, flag: &str, dir: &Path) -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    let prefix = format!("{flag}=");
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else { return false };
            let mut args = cmdline.split(|b| *b == 0).map(String::from_utf8_lossy);
            let is_program = args.next().is_some_and(|a0| Path::new(a0.as_ref()).ends_with(program));
            is_program && args.any(|a| a.strip_prefix(&prefix).is_some_and(|p| Path::new(p).starts_with(dir)))
        })
        .collect()
}

fn alive(pid: i32) -> bool {
    // A zombie (exited, not yet reaped by its parent) counts as gone.
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.rsplit_once(')').is_some_and(|(_, rest)| !rest.trim_start().starts_with('Z')))
}

/// Sends SIGHUP to `pid` (never 0 or negative: a process group): daemons re-read their files.
pub fn hangup(pid: i32) -> std::io::Result<()> {
    if pid <= 0 {
        return Err(std::io::Error::other(format!("no process {pid}")));
    }
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGHUP)
        .map_err(std::io::Error::from)
}

/// SIGTERM to each of `pids` (never 0 or negative: a process group), SIGKILL to those still
/// running after `grace`.
pub fn stop(pids: &[i32], grace: Duration) {
    use nix::sys::signal::{Signal, kill};
    let pids: Vec<i32> = pids.iter().copied().filter(|p| *p > 0).collect();
    for pid in &pids {
        let _ = kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|p| alive(*p)) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    for pid in pids.iter().filter(|p| alive(**p)) {
        let _ = kill(nix::unistd::Pid::from_raw(*pid), Signal::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;
    use std::process::{Command, Stdio};

    /// A shell named `name` with `flag=path` among its arguments, waiting on stdin (a builtin:
    /// no child process to outlive it).
    fn fake(name: &str, arg: String) -> std::process::Child {
        Command::new("sh").arg0(name).args(["-c", "read x", "sh", &arg]).stdin(Stdio::piped()).spawn().unwrap()
    }

    #[test]
    fn finds_processes_by_a_path_argument_under_a_directory_and_stops_them() {
        let dir = tempfile::tempdir().unwrap();
        let other = tempfile::tempdir().unwrap();
        let mut ours = fake("dnsmasq", format!("--pid-file={}", dir.path().join("dhcp/3e8/pid").display()));
        let mut elsewhere = fake("dnsmasq", format!("--pid-file={}", other.path().join("pid").display()));
        let mut other_program = fake("qemu", format!("--pid-file={}", dir.path().join("pid").display()));
        let pid = |c: &std::process::Child| i32::try_from(c.id()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut found = Vec::new();
        while found.is_empty() && Instant::now() < deadline {
            found = find_with_path_arg("dnsmasq", "--pid-file", dir.path());
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(found, vec![pid(&ours)], "only the dnsmasq under the directory");
        stop(&found, Duration::from_secs(2));
        assert!(ours.wait().is_ok());
        assert!(find_with_path_arg("dnsmasq", "--pid-file", dir.path()).is_empty());
        for c in [&mut elsewhere, &mut other_program] {
            assert!(c.try_wait().unwrap().is_none(), "left alone");
            stop(&[pid(c)], Duration::from_secs(2));
            let _ = c.wait();
        }
    }
}
