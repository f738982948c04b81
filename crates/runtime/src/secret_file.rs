//! Files holding secrets (passwords, API keys, saved tokens): only their owner may read them.
//!
//! The mode is enforced on every open, not only at creation: a file copied in by hand, restored
//! from a backup or written by an older release may be group- or world-readable, and creating
//! with `mode(0o600)` leaves an existing file's mode as it was. Whoever opens such a file here
//! tightens it to 0600 (and logs that, never the content).

use std::fs::{File, OpenOptions, Permissions};
use std::io::{Read, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The only mode a secret file may have.
pub const SECRET_MODE: u32 = 0o600;

/// Makes the open file `f` (at `path`) 0600 if it is not.
fn enforce_mode(f: &File, path: &Path) -> std::io::Result<()> {
    let mode = f.metadata()?.permissions().mode() & 0o777;
    if mode != SECRET_MODE {
        f.set_permissions(Permissions::from_mode(SECRET_MODE))?;
        tracing::warn!(path = %path.display(), mode = format!("{mode:o}"), "a secret file was readable by others; made it 0600");
    }
    Ok(())
}

/// Writes `secret` (and a newline) to `path`, replacing it, as a 0600 file.
pub fn write(path: &Path, secret: &str) -> std::io::Result<()> {
    write_bytes(path, format!("{secret}\n").as_bytes())
}

/// Writes `bytes` to `path` as they are, replacing it, as a 0600 file (a VM's user data).
pub fn write_bytes(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = OpenOptions::new().write(true).create(true).truncate(true).mode(SECRET_MODE).open(path)?;
    // Before the secret goes in: an existing file keeps its old mode through `open`.
    enforce_mode(&f, path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Reads the secret in `path` (surrounding whitespace trimmed), making the file 0600 first.
pub fn read(path: &Path) -> std::io::Result<String> {
    let mut f = File::open(path)?;
    enforce_mode(&f, path)?;
    let mut text = String::new();
    f.read_to_string(&mut text)?;
    Ok(text.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn an_existing_open_file_is_made_0600_on_write_and_on_read() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, "old").unwrap();
        std::fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        write(&path, "s3cret").unwrap();
        assert_eq!(mode(&path), 0o600);
        std::fs::set_permissions(&path, Permissions::from_mode(0o666)).unwrap();
        assert_eq!(read(&path).unwrap(), "s3cret");
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_new_file_is_0600_and_reads_back_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("new");
        write(&path, "abc").unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read(&path).unwrap(), "abc");
        assert_eq!(read(&dir.path().join("absent")).unwrap_err().kind(), std::io::ErrorKind::NotFound);
    }
}
