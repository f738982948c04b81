//! The data directory of a service, held under an exclusive lock for the life of the process.
//!
//! Two processes writing one data directory is how stores get corrupted, so the second one must
//! fail at once with a message that says who holds it. The lock is an advisory `flock` on
//! `<data-dir>/LOCK`, released by the kernel when the process dies however it dies, so a crash
//! never leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Name of the lock file inside every data directory.
pub const LOCK_FILE: &str = "LOCK";

/// Why a data directory could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    /// The directory could not be created or opened.
    #[error("cannot create data dir {path}")]
    Create {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Another live process holds the lock.
    #[error(
        "data dir {path} is in use by another process{holder} (lock file {path}/{LOCK_FILE}); \
         stop it or choose another --data-dir"
    )]
    InUse {
        /// The directory.
        path: PathBuf,
        /// ` (pid N)` when the holder recorded its pid.
        holder: String,
    },
    /// Locking failed for another reason (e.g. a filesystem without flock support).
    #[error("cannot lock data dir {path}")]
    Lock {
        /// The directory.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
}

/// An exclusively locked data directory; the lock is held until this value is dropped.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    _lock: File,
}

impl DataDir {
    /// Creates `path` if needed (mode 0700: data dirs hold secrets) and takes its lock.
    pub fn lock(path: impl Into<PathBuf>) -> Result<Self, DataDirError> {
        let path = path.into();
        create_private_dir(&path).map_err(|source| DataDirError::Create { path: path.clone(), source })?;
        let lock_path = path.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|source| DataDirError::Lock { path: path.clone(), source })?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut pid = String::new();
                let _ = file.read_to_string(&mut pid);
                let pid = pid.trim();
                let holder = if pid.is_empty() { String::new() } else { format!(" (pid {pid})") };
                return Err(DataDirError::InUse { path, holder });
            }
            Err(TryLockError::Error(source)) => return Err(DataDirError::Lock { path, source }),
        }
        // Record who holds the lock so the next contender's error can say so.
        let record = file
            .set_len(0)
            .and_then(|()| file.seek(SeekFrom::Start(0)))
            .and_then(|_| writeln!(file, "{}", std::process::id()))
            .and_then(|()| file.sync_all());
        record.map_err(|source| DataDirError::Lock { path: path.clone(), source })?;
        Ok(Self { path, _lock: file })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A sub-directory, created (0700) when missing.
    pub fn subdir(&self, name: &str) -> std::io::Result<PathBuf> {
        let dir = self.path.join(name);
        create_private_dir(&dir)?;
        Ok(dir)
    }
}

/// Where state lives when no `--data-dir` is given: `/var/lib/ultracloud` for root (a node),
/// `$HOME/.local/share/ultracloud` for anyone else (a laptop), `./ultracloud-data` as a last resort.
pub fn default_root() -> PathBuf {
    if is_root() {
        return PathBuf::from("/var/lib/ultracloud");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/ultracloud"),
        None => PathBuf::from("ultracloud-data"),
    }
}

fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // /proc/self is owned by the effective uid of the process.
    std::fs::metadata("/proc/self").map(|m| m.uid() == 0).unwrap_or(false)
}

/// Creates `path` (and its parents) when missing and makes it private (0700) whether it was
/// there or not: a directory an earlier version or a user left open is closed again.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_existing_open_data_dir_is_made_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("d");
        std::fs::create_dir(&d).unwrap();
        std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o755)).unwrap();
        let _lock = DataDir::lock(&d).unwrap();
        assert_eq!(std::fs::metadata(&d).unwrap().permissions().mode() & 0o777, 0o700);
    }

    #[test]
    fn second_lock_in_process_fails_and_names_holder() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDir::lock(dir.path().join("d")).unwrap();
        let err = DataDir::lock(dir.path().join("d")).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, DataDirError::InUse { .. }), "{msg}");
        assert!(msg.contains(&format!("pid {}", std::process::id())), "{msg}");
        drop(first);
        DataDir::lock(dir.path().join("d")).unwrap();
    }

    #[test]
    fn creates_missing_directories_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let d = DataDir::lock(dir.path().join("a/b")).unwrap();
        let mode = std::fs::metadata(d.path()).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(d.subdir("logs").unwrap().is_dir());
    }

    #[test]
    fn unwritable_parent_is_a_create_error() {
        let err = DataDir::lock("/proc/ultracloud-cannot-exist").unwrap_err();
        assert!(matches!(err, DataDirError::Create { .. }), "{err}");
    }
}
