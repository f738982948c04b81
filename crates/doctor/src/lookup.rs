//! Finding host binaries the way a shell would, on a PATH the doctor is given.
//!
//! The doctor does its own lookup instead of relying on `Command`'s, so that tests can simulate a
//! host by handing it a PATH of fake tools, and so that the real run can also look in the `sbin`
//! directories that an unprivileged user's PATH on Debian leaves out.

use std::ffi::{OsStr, OsString};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Where Debian puts system binaries; searched after PATH when the doctor uses the real environment.
pub(crate) const SYSTEM_DIRS: &[&str] =
    &["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"];

/// PATH to use when the environment has none.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An ordered list of directories to look for executables in.
#[derive(Debug, Clone)]
pub(crate) struct Finder {
    dirs: Vec<PathBuf>,
}

impl Finder {
    /// Looks only in the directories of `path` (a colon-separated PATH value).
    pub(crate) fn new(path: &OsStr) -> Self {
        let mut finder = Self { dirs: Vec::new() };
        for dir in std::env::split_paths(path) {
            // An empty PATH entry means "the current directory"; a host check must not depend on it.
            if dir.as_os_str().is_empty() || !dir.is_absolute() {
                continue;
            }
            finder.push(dir);
        }
        finder
    }

    /// Looks in `path`, then in Debian's system directories.
    pub(crate) fn with_system_dirs(path: &OsStr) -> Self {
        let mut finder = Self::new(path);
        for dir in SYSTEM_DIRS {
            finder.push(PathBuf::from(dir));
        }
        finder
    }

    /// The environment's PATH (or Debian's default) plus the system directories.
    pub(crate) fn system() -> Self {
        Self::with_system_dirs(&env_path())
    }

    fn push(&mut self, dir: PathBuf) {
        if !self.dirs.contains(&dir) {
            self.dirs.push(dir);
        }
    }

    /// The first executable called `name`, if any.
    pub(crate) fn find(&self, name: &str) -> Option<PathBuf> {
        self.find_all(name).into_iter().next()
    }

    /// Every executable called `name`, in search order.
    pub(crate) fn find_all(&self, name: &str) -> Vec<PathBuf> {
        self.dirs.iter().map(|dir| dir.join(name)).filter(|candidate| is_executable(candidate)).collect()
    }
}

/// The environment's PATH, or Debian's default when unset.
pub(crate) fn env_path() -> OsString {
    std::env::var_os("PATH").unwrap_or_else(|| OsString::from(DEFAULT_PATH))
}

/// A regular file (after following symlinks) with an execute bit set.
pub(crate) fn is_executable(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn finds_only_executables_on_the_given_path() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        symlink("/bin/true", a.path().join("tool")).unwrap();
        symlink("/bin/true", b.path().join("tool")).unwrap();
        std::fs::write(a.path().join("plain"), "not executable").unwrap();
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        let finder = Finder::new(&path);
        assert_eq!(finder.find("tool"), Some(a.path().join("tool")));
        assert_eq!(finder.find_all("tool").len(), 2);
        assert_eq!(finder.find("plain"), None);
        assert_eq!(finder.find("sh"), None, "must not fall back to the real PATH");
    }

    #[test]
    fn skips_relative_and_empty_entries() {
        let finder = Finder::new(OsStr::new(":relative::/nonexistent"));
        assert_eq!(finder.dirs, vec![PathBuf::from("/nonexistent")]);
    }
}
