//! `ultracloud doctor [--install] [--json]`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use ultracloud_doctor::{Doctor, Report};

/// Check the host: privileges, iproute2 and kernel networking (netns, bridge, veth, VXLAN, tap),
/// nftables/iptables, QEMU, dnsmasq, busybox-static, a guest kernel, KVM (TCG fallback). Exits 0
/// when the host is ready, 1 when something required is missing.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Install what is missing: Debian packages with apt-get, and a guest kernel unpacked into the
    /// cache (the host's own kernel and boot are left alone). Needs root.
    #[arg(long)]
    install: bool,

    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs the subcommand.
pub async fn run(args: DoctorArgs) -> anyhow::Result<ExitCode> {
    let report = check_and_install(args.install).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.render_table());
    }
    Ok(if report.ready() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// Checks the host (installing what is missing when `install`), prints the table when it is
/// not ready, and says whether it is ready and which accelerator guests get (`kvm` when a guest
/// booted under KVM, else `tcg`), so that agents need not probe again.
pub async fn ensure_ready(install: bool) -> anyhow::Result<(bool, &'static str)> {
    let report = check_and_install(install).await?;
    if !report.ready() {
        print!("{}", report.render_table());
    }
    let kvm = report.check("kvm").is_some_and(|c| c.status == ultracloud_doctor::Status::Ok);
    Ok((report.ready(), if kvm { "kvm" } else { "tcg" }))
}

async fn check_and_install(install: bool) -> anyhow::Result<Report> {
    let doctor = Doctor::from_env();
    let mut report = diagnose(&doctor).await?;
    // Installing one package can remove another (Debian's qemu-system-x86 replaces a newer
    // qemu-utils from backports, for instance), so check again after each round.
    let mut round = 0;
    while install && has_fixable_problems(&report) && round < MAX_INSTALL_ROUNDS {
        round += 1;
        let packages = report.missing_packages();
        if !packages.is_empty() {
            eprintln!("==> installing {} Debian package(s): {}", packages.len(), packages.join(" "));
            tokio::task::spawn_blocking(move || ultracloud_doctor::install(&packages, |line| eprintln!("    {line}")))
                .await
                .context("installer task failed")??;
        }
        if report.needs_guest_kernel() {
            eprintln!("==> fetching a guest kernel into {}", doctor.cache_dir().display());
            let cache = doctor.cache_dir().to_owned();
            let dir = tokio::task::spawn_blocking(move || ultracloud_doctor::fetch_guest_kernel(&cache))
                .await
                .context("guest kernel task failed")??;
            eprintln!("    guest kernel ready in {}", dir.display());
        }
        eprintln!("==> checking again");
        report = diagnose(&doctor).await?;
    }
    Ok(report)
}

/// Install rounds before giving up on packages that keep going missing.
const MAX_INSTALL_ROUNDS: usize = 3;

fn has_fixable_problems(report: &Report) -> bool {
    !report.missing_packages().is_empty() || report.needs_guest_kernel()
}

async fn diagnose(doctor: &Doctor) -> anyhow::Result<Report> {
    let doctor = doctor.clone();
    tokio::task::spawn_blocking(move || doctor.run()).await.context("doctor task failed")
}
