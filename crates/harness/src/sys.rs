//! Running system tools (`ip`, `nft`) with errors that name the command and its output.

use std::process::{Command, Stdio};

use anyhow::{Context, bail};

/// Runs `program args…`; fails with the command line and its stderr.
pub fn run(program: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("cannot run {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs `ip args…`.
pub fn ip(args: &[&str]) -> anyhow::Result<String> {
    run("ip", args)
}

/// Runs `program args…` inside namespace `ns`.
pub fn in_ns(ns: &str, program: &str, args: &[&str]) -> anyhow::Result<String> {
    let mut full = vec!["netns", "exec", ns, program];
    full.extend_from_slice(args);
    ip(&full)
}

/// The network namespaces that exist.
pub fn namespaces() -> anyhow::Result<Vec<String>> {
    // `ip netns list` prints "name" or "name (id: N)".
    Ok(ip(&["netns", "list"])?.lines().filter_map(|l| l.split_whitespace().next()).map(str::to_owned).collect())
}

/// PIDs of the processes inside namespace `ns` (never the caller's own).
pub fn pids_in(ns: &str) -> Vec<i32> {
    let me = i32::try_from(std::process::id()).unwrap_or_default();
    ip(&["netns", "pids", ns])
        .map(|s| s.lines().filter_map(|l| l.trim().parse().ok()).filter(|p| *p > 0 && *p != me).collect())
        .unwrap_or_default()
}

/// Whether a link named `name` exists in the host namespace.
pub fn host_link_exists(name: &str) -> bool {
    ip(&["link", "show", "dev", name]).is_ok()
}

/// Whether the caller is root.
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Sends SIGKILL to `pid` if it is alive. Never to 0 or a negative number (a process group).
pub fn kill(pid: i32) {
    if pid <= 0 {
        return;
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
}

/// Sends SIGTERM to `pid`. Never to 0 or a negative number (a process group).
pub fn terminate(pid: i32) {
    if pid <= 0 {
        return;
    }
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGTERM);
}

/// Freezes `pid` (SIGSTOP) or lets it go on (SIGCONT).
pub fn freeze(pid: i32, frozen: bool) {
    if pid <= 0 {
        return;
    }
    let sig = if frozen { nix::sys::signal::Signal::SIGSTOP } else { nix::sys::signal::Signal::SIGCONT };
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
}

/// Whether `pid` is alive (and not a zombie).
pub fn alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state is the field after the parenthesised command name.
        Ok(stat) => stat.rsplit(')').next().and_then(|rest| rest.split_whitespace().next()) != Some("Z"),
        Err(_) => false,
    }
}
