//! Why building or reading a guest image failed.

use std::path::PathBuf;

/// The cargo command that builds the statically linked guest agent.
pub const STATIC_AGENT_BUILD: &str = "RUSTFLAGS=\"-C target-feature=+crt-static\" cargo build --release --locked \
     -p ultracloud-guest-agent --target x86_64-unknown-linux-gnu";

/// Why [`crate::build`] failed.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// A host tool the build runs is not installed.
    #[error("{tool} not found (install the Debian package {package})")]
    ToolMissing {
        /// Binary name.
        tool: &'static str,
        /// Package providing it.
        package: &'static str,
    },
    /// The guest agent binary does not exist.
    #[error("guest agent {path} not found; build it with `{STATIC_AGENT_BUILD}` or pass its path")]
    GuestAgentMissing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The guest agent is dynamically linked: the guest has no libc to load.
    #[error("guest agent {path} is dynamically linked; build the static one with `{STATIC_AGENT_BUILD}`")]
    GuestAgentNotStatic {
        /// The binary.
        path: PathBuf,
    },
    /// busybox is the dynamically linked build.
    #[error("{path} is dynamically linked; install the Debian package busybox-static")]
    BusyboxNotStatic {
        /// The binary.
        path: PathBuf,
    },
    /// An executable's ELF headers could not be read.
    #[error("inspecting {path}")]
    Elf {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: ultracloud_doctor::ElfError,
    },
    /// Fetching the guest kernel failed.
    #[error("fetching the guest kernel")]
    FetchKernel(#[source] ultracloud_doctor::GuestKernelError),
    /// No guest kernel even after fetching one.
    #[error("no guest kernel in {0} after fetching one")]
    NoKernel(PathBuf),
    /// The kernel's module directory has no `modules.dep` and `depmod` could not make one.
    #[error("{0}/modules.dep missing and depmod (Debian package kmod) not installed")]
    NoModulesDep(PathBuf),
    /// A kernel module the guest needs is not in `modules.dep`.
    #[error("kernel module {module} not found in {dir}/modules.dep")]
    ModuleMissing {
        /// Module name.
        module: String,
        /// The module directory.
        dir: PathBuf,
    },
    /// A kernel module is compressed; the initramfs loads plain `.ko` files.
    #[error("kernel module {0} is compressed; only uncompressed .ko files are supported")]
    CompressedModule(PathBuf),
    /// A filesystem operation failed.
    #[error("{action} {path}")]
    Io {
        /// What was being done, e.g. "copying".
        action: &'static str,
        /// The path it was done to.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A tool could not be started.
    #[error("starting `{command}`")]
    Spawn {
        /// The command line.
        command: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A tool ran and failed.
    #[error("`{command}` failed: {reason}")]
    Command {
        /// The command line.
        command: String,
        /// Its stderr or exit status.
        reason: String,
    },
    /// Writing the manifest failed.
    #[error("writing the manifest")]
    Manifest(#[source] ManifestError),
}

/// Why [`crate::read_manifest`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The manifest file could not be read or written.
    #[error("accessing {path}")]
    Io {
        /// The manifest path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not valid JSON of the expected shape.
    #[error("parsing {path}")]
    Parse {
        /// The manifest path.
        path: PathBuf,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// The manifest was written by a newer builder.
    #[error("{path} has format version {found}, this build reads version {supported}")]
    Version {
        /// The manifest path.
        path: PathBuf,
        /// Version in the file.
        found: u32,
        /// Version this code understands.
        supported: u32,
    },
    /// A file the manifest lists is missing or has another size.
    #[error("{path}: expected {expected} bytes, found {found:?}")]
    FileMismatch {
        /// The image file.
        path: PathBuf,
        /// Size in the manifest.
        expected: u64,
        /// Size on disk (None: missing).
        found: Option<u64>,
    },
    /// A file's content does not match the manifest's SHA-256.
    #[error("{path}: SHA-256 {found} does not match the manifest's {expected}")]
    Checksum {
        /// The image file.
        path: PathBuf,
        /// Digest in the manifest.
        expected: String,
        /// Digest of the file.
        found: String,
    },
}
