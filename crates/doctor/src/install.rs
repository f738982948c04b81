//! Installing the Debian packages the report says are missing.
//!
//! Deliberately plain: `apt-get update`, then one non-interactive `apt-get install` with
//! `--no-install-recommends` (recommends would pull in daemons such as a system dnsmasq). apt's
//! own output streams through the inherited terminal so the operator sees its progress.

use std::process::{Command, ExitStatus};

use crate::cmd::display;
use crate::lookup::Finder;
use crate::privileges::{Privileges, PrivilegesError};

/// Why installing packages failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The process's privileges could not be read.
    #[error("checking privileges")]
    Privileges(#[source] PrivilegesError),
    /// apt needs root.
    #[error("installing packages needs root (euid is {euid}): run as root (sudo)")]
    NotRoot {
        /// The effective uid we run as.
        euid: u32,
    },
    /// A name that is not a Debian package name (it would reach apt-get's command line).
    #[error("{0:?} is not a Debian package name")]
    BadPackageName(String),
    /// `apt-get` is not installed (not a Debian-family host?).
    #[error("apt-get not found: UltraCloud's installer supports Debian 12")]
    AptGetMissing,
    /// `apt-get` could not be started.
    #[error("starting `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// `apt-get` ran and failed; its own output already explained why.
    #[error("`{command}` failed ({status}); see apt-get's output above")]
    Failed {
        /// The command line.
        command: String,
        /// Its exit status.
        status: ExitStatus,
    },
}

/// A Debian package name: lowercase alphanumerics and `+-.`, starting alphanumeric, at least 2 long.
pub fn is_package_name(name: &str) -> bool {
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// Runs `apt-get update`, then `DEBIAN_FRONTEND=noninteractive apt-get install -y
/// --no-install-recommends <packages>`, with apt's output on the inherited stdout/stderr.
/// `progress` is told each step before it starts. Does nothing when `packages` is empty.
pub fn install<S: AsRef<str>>(packages: &[S], mut progress: impl FnMut(&str)) -> Result<(), InstallError> {
    let packages: Vec<&str> = packages.iter().map(AsRef::as_ref).collect();
    if let Some(bad) = packages.iter().find(|p| !is_package_name(p)) {
        return Err(InstallError::BadPackageName(bad.to_string()));
    }
    if packages.is_empty() {
        progress("nothing to install");
        return Ok(());
    }
    let privileges = Privileges::current().map_err(InstallError::Privileges)?;
    if !privileges.is_root() {
        return Err(InstallError::NotRoot { euid: privileges.euid });
    }
    let apt_get = Finder::system().find("apt-get").ok_or(InstallError::AptGetMissing)?;

    let run = |cmd: &mut Command, progress: &mut dyn FnMut(&str)| {
        cmd.env("DEBIAN_FRONTEND", "noninteractive");
        let command = display(cmd);
        progress(&format!("running: {command}"));
        let status = cmd.status().map_err(|source| InstallError::Spawn { command: command.clone(), source })?;
        if status.success() { Ok(()) } else { Err(InstallError::Failed { command, status }) }
    };
    run(Command::new(&apt_get).arg("update"), &mut progress)?;
    let mut install = Command::new(&apt_get);
    install.args(["install", "-y", "--no-install-recommends"]).args(&packages);
    if packages.contains(&"qemu-system-x86") {
        let installed = query(Command::new("dpkg-query").args(["-W", "-f=${Version}", "qemu-utils"]));
        let candidate = query(Command::new("apt-cache").args(["policy", "qemu-system-x86"]))
            .and_then(|out| candidate_version(&out));
        if let Some(pin) = paired_qemu_utils(installed.as_deref(), candidate.as_deref()) {
            progress(&format!(
                "qemu-utils {} is from another QEMU release; installing {pin} with it",
                installed.unwrap_or_default()
            ));
            install.args(["--allow-downgrades", &pin]);
        }
    }
    run(&mut install, &mut progress)?;
    progress(&format!("installed: {}", packages.join(" ")));
    Ok(())
}

/// A command's standard output when it succeeds.
fn query(cmd: &mut Command) -> Option<String> {
    let out = cmd.env("LC_ALL", "C").stderr(std::process::Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned()).filter(|s| !s.is_empty())
}

/// The `Candidate:` line of `apt-cache policy` output.
fn candidate_version(policy: &str) -> Option<String> {
    let v = policy.lines().find_map(|l| l.trim().strip_prefix("Candidate:"))?.trim();
    (v != "(none)" && !v.is_empty()).then(|| v.to_owned())
}

/// QEMU's Debian packages must all come from one release: qemu-utils `Breaks` a
/// qemu-system-common of another version. A machine that already has a different qemu-utils
/// (a backport, say) cannot take Debian's qemu-system-x86 unless qemu-utils moves to the same
/// version, so it is named with it (`qemu-utils=<version>`). `None` when nothing needs pairing.
fn paired_qemu_utils(installed_utils: Option<&str>, system_candidate: Option<&str>) -> Option<String> {
    let (installed, candidate) = (installed_utils?, system_candidate?);
    (installed != candidate).then(|| format!("qemu-utils={candidate}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_names() {
        for ok in ["qemu-system-x86", "dnsmasq-base", "g++", "libc6.1", "9base"] {
            assert!(is_package_name(ok), "{ok}");
        }
        for bad in ["", "a", "-o", "Foo", "a b", "a;b", "--yes"] {
            assert!(!is_package_name(bad), "{bad}");
        }
    }

    #[test]
    fn rejects_bad_names_before_running_anything() {
        let mut steps = Vec::new();
        let err = install(&["qemu-utils", "-oAPT::Foo=1"], |s| steps.push(s.to_string())).unwrap_err();
        assert!(matches!(err, InstallError::BadPackageName(n) if n == "-oAPT::Foo=1"));
        assert!(steps.is_empty());
    }

    #[test]
    fn qemu_utils_follows_qemu_system_when_their_versions_differ() {
        let policy = "qemu-system-x86:\n  Installed: (none)\n  Candidate: 1:7.2+dfsg-7+deb12u18+b2\n  Version table:\n";
        let candidate = candidate_version(policy);
        assert_eq!(candidate.as_deref(), Some("1:7.2+dfsg-7+deb12u18+b2"));
        assert_eq!(
            paired_qemu_utils(Some("1:10.0.2+ds-2+deb13u1~bpo12+1"), candidate.as_deref()).as_deref(),
            Some("qemu-utils=1:7.2+dfsg-7+deb12u18+b2")
        );
        assert_eq!(paired_qemu_utils(Some("1:7.2+dfsg-7+deb12u18+b2"), candidate.as_deref()), None, "same release");
        assert_eq!(paired_qemu_utils(None, candidate.as_deref()), None, "qemu-utils not installed");
        assert_eq!(candidate_version("x:\n  Candidate: (none)\n"), None);
    }

    #[test]
    fn empty_list_is_a_no_op() {
        let mut steps = Vec::new();
        install::<&str>(&[], |s| steps.push(s.to_string())).unwrap();
        assert_eq!(steps, vec!["nothing to install"]);
    }
}
