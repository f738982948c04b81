//! `ultracloud image build-guest [--out DIR] [--guest-agent PATH] [--disk-size-mib N]`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ultracloud_guest_image::{BuildOptions, DEFAULT_DISK_SIZE_MIB, Manifest, STATIC_AGENT_BUILD};

/// Build the guest VM image (Debian kernel, busybox initramfs, ext4 root disk with the guest
/// agent) that plasmavmc boots VMs from. Fetches the guest kernel into the cache first if needed.
#[derive(Debug, Args)]
pub struct BuildGuestArgs {
    /// Image directory to create or replace [default: <cache>/guest-image].
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,

    /// The statically linked guest agent [default: next to this binary, else
    /// target/x86_64-unknown-linux-gnu/release/ultracloud-guest].
    #[arg(long, value_name = "PATH", env = "ULTRACLOUD_GUEST_AGENT")]
    guest_agent: Option<PathBuf>,

    /// Size of the root filesystem in MiB (the qcow2 file grows only with what is written).
    #[arg(long, value_name = "N", default_value_t = DEFAULT_DISK_SIZE_MIB)]
    disk_size_mib: u32,
}

/// Runs the subcommand (blocking: call it outside the async runtime or in `spawn_blocking`).
pub fn run(args: BuildGuestArgs) -> anyhow::Result<ExitCode> {
    let guest_agent = args
        .guest_agent
        .or_else(ultracloud_guest_image::default_guest_agent_path)
        .with_context(|| format!("no guest agent found; build it with `{STATIC_AGENT_BUILD}` or pass --guest-agent"))?;
    let mut opts = BuildOptions::new(guest_agent);
    if let Some(out) = args.out {
        opts.out_dir = out;
    }
    opts.disk_size_mib = args.disk_size_mib;
    eprintln!("==> building the guest image in {}", opts.out_dir.display());
    let manifest = ultracloud_guest_image::build(&opts, |line| eprintln!("    {line}"))
        .with_context(|| format!("building the guest image in {}", opts.out_dir.display()))?;

    println!("guest image (kernel {}):", manifest.kernel_version);
    for (role, file) in manifest.image_files() {
        println!(
            "  {role:<7} {}  {} bytes  sha256 {}",
            Manifest::path_of(&opts.out_dir, file).display(),
            file.size,
            file.sha256
        );
    }
    println!("  cmdline {}", manifest.cmdline);
    println!("  manifest {}", opts.out_dir.join(ultracloud_guest_image::MANIFEST_FILE).display());
    let dir = std::fs::canonicalize(&opts.out_dir).unwrap_or_else(|_| opts.out_dir.clone());
    let url = |file: &ultracloud_guest_image::ImageFile| format!("file://{}", Manifest::path_of(&dir, file).display());
    let import = serde_json::to_string(&ultracloud_plasmavmc::api::NewImage {
        name: "ultracloud-guest".into(),
        url: url(&manifest.files.disk),
        sha256: Some(manifest.files.disk.sha256.clone()),
        kernel_url: Some(url(&manifest.files.kernel)),
        kernel_sha256: Some(manifest.files.kernel.sha256.clone()),
        initrd_url: Some(url(&manifest.files.initrd)),
        initrd_sha256: Some(manifest.files.initrd.sha256.clone()),
        cmdline: Some(manifest.cmdline.clone()),
        ..Default::default()
    })?;
    println!();
    println!("import it into plasmavmc (POST .../images) with:");
    println!("  {import}");
    println!("(rebuilding replaces these files: import again afterwards)");
    Ok(ExitCode::SUCCESS)
}
