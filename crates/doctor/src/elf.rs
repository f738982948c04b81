//! Telling a statically linked ELF executable from a dynamically linked one.
//!
//! UltraCloud copies busybox into guest initramfs images, where no dynamic loader or libc exists, so
//! the doctor must know whether the host's busybox is the static build. An executable is dynamic iff
//! it has a `PT_INTERP` program header naming its loader. The `object` crate reads the ELF header
//! and program headers (both classes, both byte orders, bounds-checked); only those leading bytes
//! are read from disk, never the whole binary.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use object::Endianness;
use object::elf::{FileHeader32, FileHeader64, PT_INTERP};
use object::read::elf::{FileHeader, ProgramHeader};

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
    let mut bytes = Vec::with_capacity(64);
    (&mut file).take(64).read_to_end(&mut bytes).map_err(read_err)?;
    let end = match class(&bytes)? {
        Class::Elf32 => table_end::<FileHeader32<Endianness>>(&bytes)?,
        Class::Elf64 => table_end::<FileHeader64<Endianness>>(&bytes)?,
    };
    if end > MAX_HEADER_BYTES {
        return Err(ElfError::Malformed);
    }
    (&mut file).take(end.saturating_sub(bytes.len() as u64)).read_to_end(&mut bytes).map_err(read_err)?;
    linkage_of(&bytes)
}

/// Decides how an ELF image is linked from its leading bytes (header and program header table).
pub fn linkage_of(bytes: &[u8]) -> Result<Linkage, ElfError> {
    match class(bytes)? {
        Class::Elf32 => linkage_with::<FileHeader32<Endianness>>(bytes),
        Class::Elf64 => linkage_with::<FileHeader64<Endianness>>(bytes),
    }
}

enum Class {
    Elf32,
    Elf64,
}

fn class(bytes: &[u8]) -> Result<Class, ElfError> {
    if bytes.len() < 16 || &bytes[..4] != b"\x7fELF" {
        return Err(ElfError::NotElf);
    }
    match bytes[4] {
        1 => Ok(Class::Elf32),
        2 => Ok(Class::Elf64),
        _ => Err(ElfError::Malformed),
    }
}

/// Byte offset just past the program header table, from the ELF header alone.
fn table_end<H: FileHeader<Endian = Endianness>>(bytes: &[u8]) -> Result<u64, ElfError> {
    let header = H::parse(bytes).map_err(|_| ElfError::Malformed)?;
    let endian = header.endian().map_err(|_| ElfError::Malformed)?;
    let (phoff, size, count) =
        (header.e_phoff(endian).into(), u64::from(header.e_phentsize(endian)), u64::from(header.e_phnum(endian)));
    size.checked_mul(count).and_then(|t| t.checked_add(phoff)).ok_or(ElfError::Malformed)
}

fn linkage_with<H: FileHeader<Endian = Endianness>>(bytes: &[u8]) -> Result<Linkage, ElfError> {
    let header = H::parse(bytes).map_err(|_| ElfError::Malformed)?;
    let endian = header.endian().map_err(|_| ElfError::Malformed)?;
    let headers = header.program_headers(endian, bytes).map_err(|_| ElfError::Malformed)?;
    let dynamic = headers.iter().any(|p| p.p_type(endian) == PT_INTERP);
    Ok(if dynamic { Linkage::Dynamic } else { Linkage::Static })
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
    const PT_INTERP: u32 = 3;

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
