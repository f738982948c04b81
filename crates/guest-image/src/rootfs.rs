//! The root disk: a staged directory tree (busybox with its applet links, the guest agent as
//! `/sbin/init`, a few `/etc` files, the udhcpc script) turned into ext4 with `mke2fs -d` and into
//! qcow2 with `qemu-img convert`. Neither needs root or loop devices.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use crate::error::BuildError;
use crate::{io_err, run_tool};

/// Where the guest agent lives on the root disk; `/sbin/init` links to it.
pub const AGENT_PATH: &str = "usr/sbin/ultracloud-guest";
/// The udhcpc event script, installed at the path busybox `udhcpc` uses by default.
const UDHCPC_SCRIPT: &str = include_str!("../files/udhcpc.script");

/// Directories of the root disk with their permissions.
const DIRS: &[(&str, u32)] = &[
    ("bin", 0o755),
    ("sbin", 0o755),
    ("usr", 0o755),
    ("usr/bin", 0o755),
    ("usr/sbin", 0o755),
    ("etc", 0o755),
    ("etc/udhcpc", 0o755),
    ("dev", 0o755),
    ("proc", 0o555),
    ("sys", 0o555),
    ("run", 0o755),
    ("mnt", 0o755),
    ("root", 0o700),
    ("tmp", 0o1777),
    ("var", 0o755),
    ("var/log", 0o755),
    ("var/lib", 0o755),
    ("var/lib/ultracloud-guest", 0o755),
];

/// Small files of the root disk: path, mode, content.
const FILES: &[(&str, u32, &str)] = &[
    ("etc/passwd", 0o644, "root:x:0:0:root:/root:/bin/sh\n"),
    ("etc/group", 0o644, "root:x:0:\n"),
    ("etc/shadow", 0o600, "root:*:1::::::\n"),
    ("etc/hosts", 0o644, "127.0.0.1\tlocalhost\n::1\tlocalhost\n"),
    ("etc/resolv.conf", 0o644, ""),
    ("etc/profile", 0o644, "export PATH=/usr/sbin:/usr/bin:/sbin:/bin\n"),
    (
        "etc/os-release",
        0o644,
        "NAME=\"UltraCloud guest\"\nID=ultracloud-guest\nPRETTY_NAME=\"UltraCloud guest (busybox)\"\n",
    ),
    ("etc/udhcpc/default.script", 0o755, UDHCPC_SCRIPT),
];

/// Applet links not to create: the agent is `/sbin/init`, and `linuxrc` is for initrds.
const SKIPPED_APPLETS: &[&str] = &["sbin/init", "linuxrc"];

/// Applet paths (`bin/ls`, `sbin/ip`, …) from `busybox --list-full`.
pub fn busybox_applets(busybox: &Path) -> Result<Vec<String>, BuildError> {
    let out = run_tool(Command::new(busybox).arg("--list-full"))?;
    Ok(out
        .lines()
        .map(|l| l.trim().trim_start_matches('/'))
        .filter(|l| !l.is_empty() && !l.contains("..") && !SKIPPED_APPLETS.contains(l))
        .map(str::to_string)
        .collect())
}

fn set_mode(path: &Path, mode: u32) -> Result<(), BuildError> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(io_err("setting the mode of", path))
}

/// Lays out the root filesystem in the empty directory `stage`.
pub fn stage_root(stage: &Path, busybox: &Path, applets: &[String], agent: &Path) -> Result<(), BuildError> {
    for (dir, mode) in DIRS {
        let path = stage.join(dir);
        std::fs::create_dir_all(&path).map_err(io_err("creating", &path))?;
        set_mode(&path, *mode)?;
    }
    for (file, mode, content) in FILES {
        let path = stage.join(file);
        std::fs::write(&path, content).map_err(io_err("writing", &path))?;
        set_mode(&path, *mode)?;
    }
    let bb = stage.join("bin/busybox");
    std::fs::copy(busybox, &bb).map_err(io_err("copying busybox to", &bb))?;
    set_mode(&bb, 0o755)?;
    for applet in applets {
        let link = stage.join(applet);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        if let Some(parent) = link.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("creating", parent))?;
        }
        std::os::unix::fs::symlink("/bin/busybox", &link).map_err(io_err("linking", &link))?;
    }
    let agent_dst = stage.join(AGENT_PATH);
    copy_stripped(agent, &agent_dst)?;
    set_mode(&agent_dst, 0o755)?;
    let init = stage.join("sbin/init");
    // Relative, so that the initramfs can check it before switch_root.
    std::os::unix::fs::symlink(format!("../{AGENT_PATH}"), &init).map_err(io_err("linking", &init))?;
    Ok(())
}

/// Copies an executable without its debug information when `strip` is installed (a release build
/// of the agent carries line tables: 7 MB instead of 2), else as it is.
fn copy_stripped(src: &Path, dst: &Path) -> Result<(), BuildError> {
    if let Ok(strip) = crate::find_tool("strip", "binutils")
        && run_tool(Command::new(strip).arg("--strip-debug").arg("-o").arg(dst).arg(src)).is_ok()
    {
        return Ok(());
    }
    std::fs::copy(src, dst).map_err(io_err("copying the guest agent to", dst))?;
    Ok(())
}

/// Makes `qcow2` from the tree at `stage`: an ext4 filesystem of `size_mib` MiB in `raw` (removed
/// afterwards) converted to qcow2.
pub fn make_disk(stage: &Path, raw: &Path, qcow2: &Path, size_mib: u32) -> Result<(), BuildError> {
    let mke2fs = crate::find_tool("mke2fs", "e2fsprogs")?;
    let qemu_img = crate::find_tool("qemu-img", "qemu-utils")?;
    let _ = std::fs::remove_file(raw);
    run_tool(
        Command::new(mke2fs)
            .args(["-q", "-F", "-t", "ext4", "-L", "ultracloud-root", "-m", "0", "-E", "root_owner=0:0", "-d"])
            .arg(stage)
            .arg(raw)
            .arg(format!("{size_mib}M")),
    )?;
    let converted = run_tool(Command::new(qemu_img).args(["convert", "-f", "raw", "-O", "qcow2"]).arg(raw).arg(qcow2));
    let _ = std::fs::remove_file(raw);
    converted.map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_a_root_tree() {
        let dir = tempfile::tempdir().unwrap();
        let stage = dir.path().join("root");
        std::fs::create_dir(&stage).unwrap();
        let fake_busybox = dir.path().join("busybox");
        std::fs::write(&fake_busybox, b"bb").unwrap();
        let fake_agent = dir.path().join("agent");
        std::fs::write(&fake_agent, b"not an elf, so strip fails and it is copied").unwrap();
        let applets = vec!["bin/sh".to_string(), "sbin/ip".to_string(), "usr/bin/env".to_string()];
        stage_root(&stage, &fake_busybox, &applets, &fake_agent).unwrap();

        assert_eq!(std::fs::read_link(stage.join("bin/sh")).unwrap(), Path::new("/bin/busybox"));
        assert_eq!(std::fs::read_link(stage.join("sbin/init")).unwrap(), Path::new("../usr/sbin/ultracloud-guest"));
        assert_eq!(std::fs::read(stage.join(AGENT_PATH)).unwrap(), std::fs::read(&fake_agent).unwrap());
        let mode = |p: &str| std::fs::metadata(stage.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode("tmp"), 0o1777);
        assert_eq!(mode("etc/udhcpc/default.script"), 0o755);
        assert_eq!(mode(AGENT_PATH), 0o755);
        assert!(std::fs::read_to_string(stage.join("etc/udhcpc/default.script")).unwrap().contains("LEASE="));
    }

    #[test]
    fn lists_busybox_applets() {
        let Ok(busybox) = crate::find_tool("busybox", "busybox-static") else {
            ultracloud_runtime::prerequisite::missing("busybox not installed");
            return;
        };
        let applets = busybox_applets(&busybox).unwrap();
        assert!(applets.iter().any(|a| a.ends_with("/udhcpc")));
        assert!(applets.iter().any(|a| a == "bin/sh"));
        assert!(!applets.iter().any(|a| a == "sbin/init"));
    }
}
