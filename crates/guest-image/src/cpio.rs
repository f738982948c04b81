//! Writing the "newc" cpio archives Linux unpacks as an initramfs (the `070701` format of
//! `Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! The format is a 110-byte ASCII header per entry, the NUL-terminated name and the data, each
//! padded to four bytes, closed by a `TRAILER!!!` entry; writing it ourselves keeps the build free
//! of `cpio(1)` and lets it add device nodes without being root. Timestamps are zero and inode
//! numbers sequential, so the same inputs give the same bytes.

use std::io::{self, Write};

/// File type bits of `st_mode`.
const S_IFDIR: u32 = 0o040000;
const S_IFREG: u32 = 0o100000;
const S_IFLNK: u32 = 0o120000;
const S_IFCHR: u32 = 0o020000;

/// Writes a newc archive entry by entry.
#[derive(Debug)]
pub struct CpioWriter<W: Write> {
    out: W,
    next_ino: u32,
    written: u64,
}

impl<W: Write> CpioWriter<W> {
    /// An archive written to `out`.
    pub fn new(out: W) -> Self {
        Self { out, next_ino: 1, written: 0 }
    }

    /// Adds a directory (`name` without leading `/`, e.g. `lib/modules`).
    pub fn dir(&mut self, name: &str, perm: u32) -> io::Result<()> {
        self.entry(name, S_IFDIR | perm, 2, (0, 0), b"")
    }

    /// Adds a regular file.
    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) -> io::Result<()> {
        self.entry(name, S_IFREG | perm, 1, (0, 0), data)
    }

    /// Adds a symbolic link pointing at `target`.
    pub fn symlink(&mut self, name: &str, target: &str) -> io::Result<()> {
        self.entry(name, S_IFLNK | 0o777, 1, (0, 0), target.as_bytes())
    }

    /// Adds a character device node.
    pub fn char_device(&mut self, name: &str, perm: u32, major: u32, minor: u32) -> io::Result<()> {
        self.entry(name, S_IFCHR | perm, 1, (major, minor), b"")
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, 1, (0, 0), b"")?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn entry(&mut self, name: &str, mode: u32, nlink: u32, rdev: (u32, u32), data: &[u8]) -> io::Result<()> {
        let too_big = || io::Error::new(io::ErrorKind::InvalidInput, format!("cpio entry {name} is too large"));
        let size = u32::try_from(data.len()).map_err(|_| too_big())?;
        let namesize = u32::try_from(name.len() + 1).map_err(|_| too_big())?;
        let ino = self.next_ino;
        self.next_ino += 1;
        let fields = [ino, mode, 0, 0, nlink, 0, size, 0, 0, rdev.0, rdev.1, namesize, 0];
        let mut header = String::with_capacity(110);
        header.push_str("070701");
        for field in fields {
            header.push_str(&format!("{field:08x}"));
        }
        self.write_padded(header.as_bytes(), &[name.as_bytes(), b"\0"].concat())?;
        self.write_padded(b"", data)
    }

    /// Writes `a` then `b`, then zeros up to the next multiple of four of the archive offset.
    fn write_padded(&mut self, a: &[u8], b: &[u8]) -> io::Result<()> {
        self.out.write_all(a)?;
        self.out.write_all(b)?;
        self.written += (a.len() + b.len()) as u64;
        let pad = (4 - self.written % 4) % 4;
        self.out.write_all(&[0u8; 3][..pad as usize])?;
        self.written += pad;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_newc_entries() {
        let mut w = CpioWriter::new(Vec::new());
        w.dir("dev", 0o755).unwrap();
        w.char_device("dev/console", 0o600, 5, 1).unwrap();
        w.file("init", 0o755, b"#!/bin/sh\n").unwrap();
        w.symlink("bin/sh", "busybox").unwrap();
        let bytes = w.finish().unwrap();
        assert_eq!(bytes.len() % 4, 0);
        let text = String::from_utf8_lossy(&bytes);
        // First header: ino 1, directory mode, nlink 2, name "dev" (namesize 4).
        assert!(text.starts_with("07070100000001000041ed000000000000000000000002"));
        assert_eq!(&text[94..102], "00000004");
        assert_eq!(&text[110..114], "dev\0");
        assert!(text.contains("dev/console\0"));
        assert!(text.contains("#!/bin/sh\n"));
        assert!(text.contains("TRAILER!!!\0"));
    }

    /// Cross-checks against GNU cpio when it is installed.
    #[test]
    fn gnu_cpio_lists_it() {
        let Ok(out) = std::process::Command::new("cpio").arg("--version").output() else {
            ultracloud_runtime::prerequisite::missing("cpio not installed");
            return;
        };
        assert!(out.status.success());
        let mut w = CpioWriter::new(Vec::new());
        w.dir("a", 0o755).unwrap();
        w.file("a/b.txt", 0o644, b"hello").unwrap();
        w.symlink("a/c", "b.txt").unwrap();
        let archive = w.finish().unwrap();
        let mut child = std::process::Command::new("cpio")
            .args(["-t", "--quiet"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&archive).unwrap();
        let listed = child.wait_with_output().unwrap();
        assert!(listed.status.success());
        assert_eq!(String::from_utf8(listed.stdout).unwrap(), "a\na/b.txt\na/c\n");
    }
}
