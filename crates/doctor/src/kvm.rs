//! Whether KVM really works here, decided by booting a kernel rather than by opening `/dev/kvm`.
//!
//! On some hosts `/dev/kvm` exists and `KVM_CREATE_VM` succeeds, yet a guest hangs right after
//! "Booting from ROM". UltraCloud therefore treats KVM as usable only when a short boot under
//! `-accel kvm` prints the kernel banner, and falls back to TCG otherwise. The VM agent reuses
//! [`probe_kvm`] to pick its accelerator.

use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cmd::{ChildGuard, collect, drained, last_line};

/// The KVM device node.
pub const DEV_KVM: &str = "/dev/kvm";
/// How long the doctor's boot probe waits for the kernel banner.
pub const DEFAULT_KVM_PROBE_TIMEOUT: Duration = Duration::from_secs(8);
/// What the kernel prints first on its console.
const BANNER: &[u8] = b"Linux version";
/// Serial output kept while looking for the banner.
const KEEP: usize = 64 * 1024;

/// The verdict on KVM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kvm", content = "reason", rename_all = "lowercase")]
pub enum KvmProbe {
    /// A guest kernel booted under `-accel kvm`.
    Usable,
    /// `/dev/kvm` exists but a guest did not boot; the reason says how it failed.
    Unusable(String),
    /// No `/dev/kvm`.
    Absent,
}

/// Boots `kernel` with `qemu` under `-accel kvm` and reports whether the kernel banner appears on
/// the serial console within `timeout`. The QEMU child is killed by PID and reaped in every case.
pub fn probe_kvm(qemu: &Path, kernel: &Path, timeout: Duration) -> KvmProbe {
    if !Path::new(DEV_KVM).exists() {
        return KvmProbe::Absent;
    }
    boot_probe(qemu, kernel, "kvm", timeout)
}

/// The boot probe under accelerator `accel`, without looking at `/dev/kvm`.
pub(crate) fn boot_probe(qemu: &Path, kernel: &Path, accel: &str, timeout: Duration) -> KvmProbe {
    let mut cmd = Command::new(qemu);
    cmd.args(["-accel", accel, "-cpu", "qemu64", "-m", "128"])
        .args(["-nographic", "-no-reboot", "-nodefaults", "-serial", "stdio"])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", "console=ttyS0 panic=-1"])
        // stdin closed: a stdio chardev on a terminal would switch it to raw mode.
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = match cmd.spawn() {
        Ok(child) => child,
        Err(e) => return KvmProbe::Unusable(format!("cannot start {}: {e}", qemu.display())),
    };
    let stderr = child.stderr.take().map(collect);
    let (tx, rx) = mpsc::channel::<Vec<u8>>();
    if let Some(mut stdout) = child.stdout.take() {
        std::thread::spawn(move || {
            use std::io::Read;
            let mut buf = [0u8; 4096];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
    }
    let mut guard = ChildGuard::new(child);
    let deadline = Instant::now() + timeout;
    let mut seen: Vec<u8> = Vec::new();
    let verdict = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break KvmProbe::Unusable(format!("no kernel output within {} s", timeout.as_secs()));
        }
        match rx.recv_timeout(left) {
            Ok(chunk) => {
                seen.extend_from_slice(&chunk);
                if seen.windows(BANNER.len()).any(|w| w == BANNER) {
                    break KvmProbe::Usable;
                }
                if seen.len() > KEEP {
                    seen.drain(..seen.len() - BANNER.len());
                }
            }
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => {
                // stdout closed: QEMU exited (or is about to) without printing the banner.
                let status = wait_briefly(&mut guard);
                drop(guard);
                let reason = last_line(&drained(stderr)).unwrap_or_else(|| match status {
                    Some(status) => format!("qemu exited ({status}) before the kernel banner"),
                    None => "qemu closed its output before the kernel banner".to_string(),
                });
                return KvmProbe::Unusable(reason);
            }
        }
    };
    drop(guard);
    verdict
}

/// The child's exit status if it exits within a second.
fn wait_briefly(guard: &mut ChildGuard) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + Duration::from_secs(1);
    loop {
        match guard.child().try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(10)),
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    fn script(dir: &Path, body: &str) -> PathBuf {
        let path = dir.join("qemu-system-x86_64");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path
    }

    #[test]
    fn banner_means_usable_and_the_child_is_killed() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("pid");
        let qemu = script(
            dir.path(),
            &format!(
                "echo $$ > '{}'\necho 'SeaBIOS'\necho '[    0.000000] Linux version 6.1.0'\nexec sleep 30",
                pidfile.display()
            ),
        );
        let start = Instant::now();
        let verdict = boot_probe(&qemu, Path::new("/vmlinuz"), "kvm", Duration::from_secs(10));
        assert_eq!(verdict, KvmProbe::Usable);
        assert!(start.elapsed() < Duration::from_secs(5));
        let pid = std::fs::read_to_string(pidfile).unwrap();
        // Reaped: no zombie, no process.
        assert!(!Path::new(&format!("/proc/{}", pid.trim())).exists());
    }

    #[test]
    fn silence_until_the_deadline_is_unusable() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = script(dir.path(), "echo 'Booting from ROM..'\nexec sleep 30");
        let verdict = boot_probe(&qemu, Path::new("/vmlinuz"), "kvm", Duration::from_millis(300));
        assert!(matches!(verdict, KvmProbe::Unusable(r) if r.contains("no kernel output")));
    }

    #[test]
    fn qemu_errors_become_the_reason() {
        let dir = tempfile::tempdir().unwrap();
        let qemu = script(
            dir.path(),
            "echo 'qemu-system-x86_64: -accel kvm: failed to initialize kvm: Permission denied' >&2\nexit 1",
        );
        let verdict = boot_probe(&qemu, Path::new("/vmlinuz"), "kvm", Duration::from_secs(5));
        assert!(matches!(&verdict, KvmProbe::Unusable(r) if r.contains("Permission denied")), "{verdict:?}");
        let verdict = boot_probe(Path::new("/nonexistent/qemu"), Path::new("/k"), "kvm", Duration::from_secs(1));
        assert!(matches!(verdict, KvmProbe::Unusable(r) if r.starts_with("cannot start")));
    }

    #[test]
    fn json_shape() {
        assert_eq!(
            serde_json::to_value(KvmProbe::Unusable("x".into())).unwrap(),
            serde_json::json!({"kvm": "unusable", "reason": "x"})
        );
        assert_eq!(serde_json::to_value(KvmProbe::Absent).unwrap(), serde_json::json!({"kvm": "absent"}));
    }
}
