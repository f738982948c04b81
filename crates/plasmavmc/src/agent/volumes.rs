//! Volume backends: where a VM's extra disks come from. Today a local qcow2 file per volume on
//! the worker that holds it; coronafs exports over NBD slot in behind the same trait.

use std::path::{Path, PathBuf};

use super::qemu::DiskArg;
use crate::model::Volume;

/// A place volumes live.
pub trait VolumeBackend {
    /// The backend's name, as in [`Volume::backend`].
    fn kind(&self) -> &'static str;
    /// Makes sure the volume exists and returns how QEMU opens it.
    fn ensure(&self, vol: &Volume) -> impl Future<Output = Result<DiskArg, String>> + Send;
    /// The volumes held here (IDs).
    fn held(&self) -> Vec<String>;
    /// Removes a volume held here.
    fn remove(&self, id: &str) -> impl Future<Output = Result<(), String>> + Send;
}

/// Local qcow2 files under `<data>/volumes/`.
#[derive(Debug, Clone)]
pub struct LocalQcow2 {
    /// The directory.
    pub dir: PathBuf,
    /// `qemu-img`.
    pub qemu_img: PathBuf,
}

impl LocalQcow2 {
    /// The file of volume `id`.
    pub fn path(&self, id: &str) -> PathBuf {
        self.dir.join(format!("{id}.qcow2"))
    }
}

/// Runs `qemu-img` with `args`; the error carries its stderr.
pub async fn qemu_img(qemu_img: &Path, args: &[&str]) -> Result<(), String> {
    let out = tokio::process::Command::new(qemu_img)
        .args(args)
        .output()
        .await
        .map_err(|e| format!("starting {}: {e}", qemu_img.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("qemu-img {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

impl VolumeBackend for LocalQcow2 {
    fn kind(&self) -> &'static str {
        "local"
    }

    async fn ensure(&self, vol: &Volume) -> Result<DiskArg, String> {
        let path = self.path(&vol.id);
        if !path.exists() {
            std::fs::create_dir_all(&self.dir).map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
            let tmp = path.with_extension("partial");
            let size = format!("{}G", vol.size_gib);
            qemu_img(&self.qemu_img, &["create", "-q", "-f", "qcow2", &tmp.display().to_string(), &size]).await?;
            std::fs::rename(&tmp, &path).map_err(|e| format!("renaming {}: {e}", tmp.display()))?;
        }
        Ok(DiskArg { path, format: "qcow2", serial: vol.id.clone() })
    }

    fn held(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Vec::new() };
        entries.filter_map(|e| e.ok()?.file_name().to_str()?.strip_suffix(".qcow2").map(str::to_owned)).collect()
    }

    async fn remove(&self, id: &str) -> Result<(), String> {
        match tokio::fs::remove_file(self.path(id)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("removing volume {id}: {e}")),
        }
    }
}
