//! `manifest.json`: what a built guest image consists of, written last so that its presence means
//! the image is complete.
//!
//! ```json
//! {"version": 1, "kernel_version": "6.1.0-26-amd64", "cmdline": "console=ttyS0 …",
//!  "files": {"kernel": {"file": "vmlinuz", "sha256": "…", "size": 8000000},
//!            "initrd": {"file": "initrd.img", "sha256": "…", "size": 1500000},
//!            "disk": {"file": "root.qcow2", "sha256": "…", "size": 9000000, "format": "qcow2"}}}
//! ```

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::ManifestError;

/// File name of the manifest inside an image directory.
pub const MANIFEST_FILE: &str = "manifest.json";
/// The manifest format version this code writes and reads.
pub const MANIFEST_VERSION: u32 = 1;

/// A built guest image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version ([`MANIFEST_VERSION`]).
    pub version: u32,
    /// Release of the kernel, e.g. `6.1.0-26-amd64`.
    pub kernel_version: String,
    /// Kernel command line to boot with (`qemu -append`).
    pub cmdline: String,
    /// The image's files.
    pub files: ManifestFiles,
}

/// The files of a guest image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ManifestFiles {
    /// The kernel (`qemu -kernel`).
    pub kernel: ImageFile,
    /// The initramfs (`qemu -initrd`).
    pub initrd: ImageFile,
    /// The root disk, to be used as the backing file of a per-VM overlay.
    pub disk: ImageFile,
}

/// One file of a guest image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageFile {
    /// File name relative to the image directory.
    pub file: String,
    /// SHA-256 of the content, lower-case hex.
    pub sha256: String,
    /// Size in bytes.
    pub size: u64,
    /// Disk format (`qcow2`), for disks only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
}

impl ImageFile {
    /// Describes `dir/file` by hashing it.
    pub(crate) fn describe(dir: &Path, file: &str, format: Option<&str>) -> Result<Self, ManifestError> {
        let path = dir.join(file);
        let (sha256, size) = sha256_file(&path)?;
        Ok(Self { file: file.to_string(), sha256, size, format: format.map(str::to_string) })
    }
}

impl Manifest {
    /// The three files with their roles, in a fixed order.
    pub fn image_files(&self) -> [(&'static str, &ImageFile); 3] {
        [("kernel", &self.files.kernel), ("initrd", &self.files.initrd), ("disk", &self.files.disk)]
    }

    /// Path of `file` inside the image directory `dir`.
    pub fn path_of(dir: &Path, file: &ImageFile) -> PathBuf {
        dir.join(&file.file)
    }

    /// Writes the manifest to `dir/manifest.json`.
    pub(crate) fn write(&self, dir: &Path) -> Result<(), ManifestError> {
        let path = dir.join(MANIFEST_FILE);
        let mut json =
            serde_json::to_vec_pretty(self).map_err(|source| ManifestError::Parse { path: path.clone(), source })?;
        json.push(b'\n');
        std::fs::write(&path, json).map_err(|source| ManifestError::Io { path, source })
    }
}

/// Reads `dir/manifest.json` and checks that every file it lists exists with its size.
pub fn read_manifest(dir: &Path) -> Result<Manifest, ManifestError> {
    let path = dir.join(MANIFEST_FILE);
    let bytes = std::fs::read(&path).map_err(|source| ManifestError::Io { path: path.clone(), source })?;
    // Look at the version first, so a newer format is reported as such and not as a parse error.
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let versioned: Versioned =
        serde_json::from_slice(&bytes).map_err(|source| ManifestError::Parse { path: path.clone(), source })?;
    if versioned.version != MANIFEST_VERSION {
        return Err(ManifestError::Version { path, found: versioned.version, supported: MANIFEST_VERSION });
    }
    let manifest: Manifest =
        serde_json::from_slice(&bytes).map_err(|source| ManifestError::Parse { path: path.clone(), source })?;
    for (_, file) in manifest.image_files() {
        let file_path = Manifest::path_of(dir, file);
        let found = std::fs::metadata(&file_path).ok().map(|m| m.len());
        if found != Some(file.size) || file.file.contains('/') {
            return Err(ManifestError::FileMismatch { path: file_path, expected: file.size, found });
        }
    }
    Ok(manifest)
}

/// [`read_manifest`], and also checks every file's SHA-256 (reads the whole image).
pub fn verify_image(dir: &Path) -> Result<Manifest, ManifestError> {
    let manifest = read_manifest(dir)?;
    for (_, file) in manifest.image_files() {
        let path = Manifest::path_of(dir, file);
        let (found, _) = sha256_file(&path)?;
        if found != file.sha256 {
            return Err(ManifestError::Checksum { path, expected: file.sha256.clone(), found });
        }
    }
    Ok(manifest)
}

/// SHA-256 (hex) and size of a file.
pub(crate) fn sha256_file(path: &Path) -> Result<(String, u64), ManifestError> {
    let io = |source| ManifestError::Io { path: path.to_path_buf(), source };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 16];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    let hex = hex::encode(hasher.finalize());
    Ok((hex, size))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(dir: &Path) -> Manifest {
        for (name, content) in [("vmlinuz", "k"), ("initrd.img", "i"), ("root.qcow2", "d")] {
            std::fs::write(dir.join(name), content).unwrap();
        }
        Manifest {
            version: MANIFEST_VERSION,
            kernel_version: "6.1.0-26-amd64".into(),
            cmdline: "console=ttyS0".into(),
            files: ManifestFiles {
                kernel: ImageFile::describe(dir, "vmlinuz", None).unwrap(),
                initrd: ImageFile::describe(dir, "initrd.img", None).unwrap(),
                disk: ImageFile::describe(dir, "root.qcow2", Some("qcow2")).unwrap(),
            },
        }
    }

    #[test]
    fn round_trips_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let m = sample(dir.path());
        // SHA-256 of "k".
        assert_eq!(m.files.kernel.sha256, "8254c329a92850f6d539dd376f4816ee2764517da5e0235514af433164480d7a");
        m.write(dir.path()).unwrap();
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap()).unwrap();
        assert_eq!(json["files"]["disk"]["format"], "qcow2");
        assert!(json["files"]["kernel"].get("format").is_none());
        assert_eq!(read_manifest(dir.path()).unwrap(), m);
        assert_eq!(verify_image(dir.path()).unwrap(), m);

        std::fs::write(dir.path().join("initrd.img"), "x").unwrap(); // same size, other content
        assert!(matches!(verify_image(dir.path()), Err(ManifestError::Checksum { .. })));
        std::fs::write(dir.path().join("initrd.img"), "longer").unwrap();
        assert!(matches!(read_manifest(dir.path()), Err(ManifestError::FileMismatch { .. })));
    }

    #[test]
    fn refuses_other_versions_and_garbage() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(read_manifest(dir.path()), Err(ManifestError::Io { .. })));
        std::fs::write(dir.path().join(MANIFEST_FILE), r#"{"version": 2, "future": true}"#).unwrap();
        assert!(matches!(read_manifest(dir.path()), Err(ManifestError::Version { found: 2, .. })));
        std::fs::write(dir.path().join(MANIFEST_FILE), "{").unwrap();
        assert!(matches!(read_manifest(dir.path()), Err(ManifestError::Parse { .. })));
    }
}
