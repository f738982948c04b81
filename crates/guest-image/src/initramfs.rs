//! The initramfs: static busybox, the kernel modules Debian's kernel needs to reach a virtio disk
//! (with their dependencies, in load order) and an `/init` script that mounts the root disk and
//! `switch_root`s to the guest agent.

use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::path::Path;
use std::process::Command;

use flate2::Compression;
use flate2::write::GzEncoder;
use ultracloud_doctor::GuestKernel;

use crate::cpio::CpioWriter;
use crate::error::BuildError;
use crate::{io_err, run_tool};

/// Modules the guest loads, by name. Their dependencies are added from `modules.dep`.
/// `crc32c_generic` is ext4's soft dependency (`modules.softdep`), which `modules.dep` omits;
/// `button` and `evdev` turn the ACPI power button into an input event the guest agent reads.
pub const GUEST_MODULES: &[&str] =
    &["virtio_pci", "virtio_blk", "virtio_net", "qemu_fw_cfg", "crc32c_generic", "ext4", "button", "evdev"];

/// The `/init` script; `@MODULES@` becomes the module paths in load order.
const INIT_TEMPLATE: &str = include_str!("../files/init.sh");

/// `modules.dep`: module path → paths of the modules it needs.
#[derive(Debug, Default)]
pub struct ModuleDeps {
    deps: HashMap<String, Vec<String>>,
    by_name: HashMap<String, String>,
}

impl ModuleDeps {
    /// Parses `modules.dep` (`kernel/a.ko: kernel/b.ko kernel/c.ko` lines).
    pub fn parse(text: &str) -> Self {
        let mut out = Self::default();
        for line in text.lines() {
            let Some((module, deps)) = line.split_once(':') else {
                continue;
            };
            let module = module.trim().to_string();
            out.by_name.insert(module_name(&module), module.clone());
            out.deps.insert(module, deps.split_whitespace().map(str::to_string).collect());
        }
        out
    }

    /// Paths of `wanted` and everything they need, each after its dependencies; `Err(name)` names
    /// a module that is not there.
    pub fn load_order(&self, wanted: &[&str]) -> Result<Vec<String>, String> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in wanted {
            let path = self.by_name.get(&name.replace('-', "_")).ok_or_else(|| name.to_string())?;
            self.visit(path, &mut seen, &mut order)?;
        }
        Ok(order)
    }

    fn visit(&self, path: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>) -> Result<(), String> {
        if !seen.insert(path.to_string()) {
            return Ok(());
        }
        let deps = self.deps.get(path).ok_or_else(|| module_name(path))?;
        for dep in deps {
            self.visit(dep, seen, order)?;
        }
        order.push(path.to_string());
        Ok(())
    }
}

/// `kernel/drivers/net/virtio_net.ko` → `virtio_net` (dashes normalised to underscores).
fn module_name(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    stem.replace('-', "_")
}

/// Makes sure the kernel's module directory has a `modules.dep`, running `depmod` if needed.
pub fn ensure_modules_dep(kernel: &GuestKernel) -> Result<(), BuildError> {
    let dir = &kernel.modules_dir;
    if dir.join("modules.dep").is_file() {
        return Ok(());
    }
    let depmod = crate::find_tool("depmod", "kmod").map_err(|_| BuildError::NoModulesDep(dir.clone()))?;
    // modules_dir is <base>/lib/modules/<version> (or <base>/usr/lib/modules/<version>, which
    // depmod -b does not know, so it cannot help there).
    let base = dir
        .ancestors()
        .nth(3)
        .filter(|base| base.join("lib/modules").join(&kernel.version) == *dir)
        .ok_or_else(|| BuildError::NoModulesDep(dir.clone()))?;
    run_tool(Command::new(depmod).arg("-b").arg(base).arg(&kernel.version))?;
    if dir.join("modules.dep").is_file() { Ok(()) } else { Err(BuildError::NoModulesDep(dir.clone())) }
}

/// The modules of [`GUEST_MODULES`] with dependencies, as paths relative to the module directory.
pub fn guest_module_paths(kernel: &GuestKernel) -> Result<Vec<String>, BuildError> {
    let dep_path = kernel.modules_dir.join("modules.dep");
    let text = std::fs::read_to_string(&dep_path).map_err(io_err("reading", &dep_path))?;
    let order = ModuleDeps::parse(&text)
        .load_order(GUEST_MODULES)
        .map_err(|module| BuildError::ModuleMissing { module, dir: kernel.modules_dir.clone() })?;
    if let Some(compressed) = order.iter().find(|p| !p.ends_with(".ko")) {
        return Err(BuildError::CompressedModule(kernel.modules_dir.join(compressed)));
    }
    Ok(order)
}

/// The `/init` script loading `modules` (paths under `/lib/modules`) in order.
pub fn init_script(modules: &[String]) -> String {
    INIT_TEMPLATE.replace("@MODULES@", &modules.join(" "))
}

/// Writes the gzip'd initramfs to `out`; returns its module list.
pub fn write_initramfs(kernel: &GuestKernel, busybox: &Path, out: &Path) -> Result<Vec<String>, BuildError> {
    let modules = guest_module_paths(kernel)?;
    let busybox_bytes = std::fs::read(busybox).map_err(io_err("reading", busybox))?;
    let file = std::fs::File::create(out).map_err(io_err("creating", out))?;
    let gz = GzEncoder::new(std::io::BufWriter::new(file), Compression::best());
    let mut cpio = CpioWriter::new(gz);
    let write_err = io_err("writing", out);
    let result = (|| -> std::io::Result<()> {
        let mut dirs = BTreeSet::from(["bin".to_string(), "dev".into(), "proc".into(), "sys".into(), "newroot".into()]);
        for m in &modules {
            let mut prefix = String::from("lib/modules");
            dirs.insert("lib".into());
            dirs.insert(prefix.clone());
            for part in m.split('/').collect::<Vec<_>>().split_last().map(|(_, dirs)| dirs).unwrap_or(&[]) {
                prefix = format!("{prefix}/{part}");
                dirs.insert(prefix.clone());
            }
        }
        // BTreeSet order puts every directory after its parent.
        for dir in &dirs {
            cpio.dir(dir, 0o755)?;
        }
        cpio.char_device("dev/console", 0o600, 5, 1)?;
        cpio.char_device("dev/null", 0o666, 1, 3)?;
        cpio.file("bin/busybox", 0o755, &busybox_bytes)?;
        cpio.symlink("bin/sh", "busybox")?;
        cpio.file("init", 0o755, init_script(&modules).as_bytes())?;
        for m in &modules {
            let bytes = std::fs::read(kernel.modules_dir.join(m))?;
            cpio.file(&format!("lib/modules/{m}"), 0o644, &bytes)?;
        }
        let gz = cpio.finish()?;
        let mut file = gz.finish()?;
        file.flush()?;
        file.get_ref().sync_all()
    })();
    result.map_err(write_err)?;
    Ok(modules)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio.ko:
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/net/virtio_net.ko: kernel/drivers/net/net_failover.ko kernel/net/core/failover.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/net/net_failover.ko: kernel/net/core/failover.ko
kernel/net/core/failover.ko:
kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/lib/crc16.ko:
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/drivers/input/some-thing.ko:
";

    #[test]
    fn orders_modules_after_their_dependencies() {
        let deps = ModuleDeps::parse(DEP);
        let order = deps.load_order(&["virtio_net", "virtio_pci", "ext4"]).unwrap();
        let pos = |name: &str| order.iter().position(|p| module_name(p) == name).unwrap();
        assert!(pos("failover") < pos("net_failover"));
        assert!(pos("net_failover") < pos("virtio_net"));
        assert!(pos("virtio_ring") < pos("virtio_net"));
        assert!(pos("virtio") < pos("virtio_pci"));
        assert!(pos("jbd2") < pos("ext4"));
        // Each module once.
        assert_eq!(order.len(), order.iter().collect::<BTreeSet<_>>().len());
        assert_eq!(order.len(), 12);
        assert_eq!(deps.load_order(&["some_thing"]).unwrap(), ["kernel/drivers/input/some-thing.ko"]);
        assert_eq!(deps.load_order(&["nope"]), Err("nope".to_string()));
    }

    #[test]
    fn names_modules() {
        assert_eq!(module_name("kernel/drivers/net/virtio_net.ko"), "virtio_net");
        assert_eq!(module_name("kernel/fs/x-y.ko.xz"), "x_y");
    }

    #[test]
    fn init_script_lists_modules() {
        let script = init_script(&["kernel/a.ko".into(), "kernel/b.ko".into()]);
        assert!(script.starts_with("#!/bin/busybox sh\n"));
        assert!(script.contains("for m in kernel/a.ko kernel/b.ko; do"));
        assert!(!script.contains('@'));
    }
}
