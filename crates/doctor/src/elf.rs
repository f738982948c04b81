//! Telling a statically linked ELF executable from a dynamically linked one.
//!
//! UltraCloud copies busybox into guest initramfs images, where no dynamic loader or libc exists, so
//! the doctor must know whether the host's busybox is the static build. An executable is dynamic iff
//! it has a `PT_INTERP` program header naming its loader; reading the ELF header and program headers
//! is a few dozen lines, cheaper than depending on an ELF crate or parsing `file(1)` output.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Program header type naming the dynamic loader.
const PT_INTERP: u32 = 3;
/// Refuse program header tables reaching further into a file than this (a sane ELF never does).
const MAX_HEADER_BYTES: u64 = 16 << 20;

/// How an ELF executable is linked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Linkage {
    /// No `PT_INTERP`: runs without a dynamic loader (includes static-pie).
    Static,
    /// Has a `PT_INTERP`: needs a dynamic loader and shared libraries.
    Dynamic,
}

/// Why a file's linkage could not be decided.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    /// The file could not be read.
    #[error("reading {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with the ELF magic.
    #[error("not an ELF file")]
    NotElf,
    /// The header or program header table is cut short or implausible.
    #[error("truncated or malformed ELF header")]
    Malformed,
}

/// Decides how the ELF file at `path` (symlinks followed) is linked.
pub fn linkage(path: &Path) -> Result<Linkage, ElfError> {
    let read_err = |source| ElfError::Read { path: path.to_path_buf(), source };
    let mut file = File::open(path).map_err(read_err)?;
    let mut head = Vec::with_capacity(64);
    (&mut file).take(64).read_to_end(&mut head).map_err(read_err)?;
    let layout = Layout::parse(&head)?;
    let end = layout.table_end().ok_or(ElfError::Malformed)?;
    if end > MAX_HEADER_BYTES {
        return Err(ElfError::Malformed);
    }
    let mut bytes = head;
    (&mut file).take(end.saturating_sub(bytes.len() as u64)).read_to_end(&mut bytes).map_err(read_err)?;
    layout.linkage(&bytes)
}

/// Decides how an ELF image is linked from its leading bytes (header and program header table).
pub fn linkage_of(bytes: &[u8]) -> Result<Linkage, ElfError> {
    Layout::parse(bytes)?.linkage(bytes)
}

/// Where the program header table sits, read from the ELF header.
struct Layout {
    big_endian: bool,
    phoff: u64,
    phentsize: u64,
    phnum: u64,
}

impl Layout {
    fn parse(b: &[u8]) -> Result<Self, ElfError> {
        if b.len() < 16 || &b[..4] != b"\x7fELF" {
            return Err(ElfError::NotElf);
        }
        let big_endian = match b[5] {
            1 => false,
            2 => true,
            _ => return Err(ElfError::Malformed),
        };
        let rd = Reader { b, big_endian };
        let (phoff, phentsize, phnum) = match b[4] {
            // ELFCLASS32: e_phoff at 28, e_phentsize at 42, e_phnum at 44.
            1 => (rd.u32(28)? as u64, rd.u16(42)?, rd.u16(44)?),
            // ELFCLASS64: e_phoff at 32, e_phentsize at 54, e_phnum at 56.
            2 => (rd.u64(32)?, rd.u16(54)?, rd.u16(56)?),
            _ => return Err(ElfError::Malformed),
        };
        if phnum > 0 && phentsize < 4 {
            return Err(ElfError::Malformed);
        }
        Ok(Self { big_endian, phoff, phentsize: phentsize as u64, phnum: phnum as u64 })
    }

    /// Byte offset just past the program header table.
    fn table_end(&self) -> Option<u64> {
        self.phentsize.checked_mul(self.phnum)?.checked_add(self.phoff)
    }

    fn linkage(&self, b: &[u8]) -> Result<Linkage, ElfError> {
        let rd = Reader { b, big_endian: self.big_endian };
        for i in 0..self.phnum {
            let at = self.phoff + i * self.phentsize;
            let at = usize::try_from(at).map_err(|_| ElfError::Malformed)?;
            // p_type is the first 32-bit word of a program header in both classes.
            if rd.u32(at)? == PT_INTERP {
                return Ok(Linkage::Dynamic);
            }
        }
        Ok(Linkage::Static)
    }
}

/// Bounds-checked integer reads in the file's byte order.
struct Reader<'a> {
    b: &'a [u8],
    big_endian: bool,
}

impl Reader<'_> {
    fn bytes<const N: usize>(&self, at: usize) -> Result<[u8; N], ElfError> {
        let end = at.checked_add(N).ok_or(ElfError::Malformed)?;
        let slice = self.b.get(at..end).ok_or(ElfError::Malformed)?;
        let mut out = [0; N];
        out.copy_from_slice(slice);
        Ok(out)
    }

    fn u16(&self, at: usize) -> Result<u16, ElfError> {
        let b = self.bytes(at)?;
        Ok(if self.big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    }

    fn u32(&self, at: usize) -> Result<u32, ElfError> {
        let b = self.bytes(at)?;
        Ok(if self.big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    }

    fn u64(&self, at: usize) -> Result<u64, ElfError> {
        let b = self.bytes(at)?;
        Ok(if self.big_endian { u64::from_be_bytes(b) } else { u64::from_le_bytes(b) })
    }
}

/// A minimal little-endian ELF64 executable image with the given program header types, for tests.
#[cfg(test)]
pub(crate) fn crafted_elf64(p_types: &[u32]) -> Vec<u8> {
    let mut b = vec![0u8; 64];
    b[..4].copy_from_slice(b"\x7fELF");
    b[4] = 2; // ELFCLASS64
    b[5] = 1; // little endian
    b[6] = 1; // EV_CURRENT
    b[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    b[18..20].copy_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    b[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
    b[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
    b[54..56].copy_from_slice(&56u16.to_le_bytes()); // e_phentsize
    b[56..58].copy_from_slice(&(p_types.len() as u16).to_le_bytes()); // e_phnum
    for p_type in p_types {
        let mut ph = vec![0u8; 56];
        ph[..4].copy_from_slice(&p_type.to_le_bytes());
        b.extend(ph);
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;

    const PT_LOAD: u32 = 1;
    const PT_DYNAMIC: u32 = 2;

    #[test]
    fn bin_sh_is_dynamic() {
        assert_eq!(linkage(Path::new("/bin/sh")).unwrap(), Linkage::Dynamic);
    }

    #[test]
    fn crafted_headers() {
        assert_eq!(linkage_of(&crafted_elf64(&[PT_LOAD, PT_LOAD])).unwrap(), Linkage::Static);
        // static-pie has PT_DYNAMIC but no interpreter: still runs without a loader.
        assert_eq!(linkage_of(&crafted_elf64(&[PT_LOAD, PT_DYNAMIC])).unwrap(), Linkage::Static);
        assert_eq!(linkage_of(&crafted_elf64(&[PT_LOAD, PT_INTERP, PT_DYNAMIC])).unwrap(), Linkage::Dynamic);
    }

    #[test]
    fn crafted_file_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("busybox");
        std::fs::write(&path, crafted_elf64(&[PT_LOAD])).unwrap();
        assert_eq!(linkage(&path).unwrap(), Linkage::Static);
    }

    #[test]
    fn rejects_non_elf_and_truncated() {
        assert!(matches!(linkage_of(b"#!/bin/sh\n"), Err(ElfError::NotElf)));
        let mut cut = crafted_elf64(&[PT_LOAD, PT_INTERP]);
        cut.truncate(64 + 56 + 2);
        assert!(matches!(linkage_of(&cut), Err(ElfError::Malformed)));
        assert!(matches!(linkage(Path::new("/nonexistent/busybox")), Err(ElfError::Read { .. })));
    }
}
