//! `ultracloud vm|image|volume`: plasmavmc's resources on the command line, through its typed
//! client.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use ultracloud_plasmavmc::api::*;
use ultracloud_plasmavmc::client::{Plasmavmc, VmAction};

use super::project::{Ctx, LabelArgs, ListArgs, MetaArgs, ProjectArgs};

/// Where compute resources live and how to print them.
#[derive(Debug, Args)]
pub struct Target {
    /// The plasmavmc controller's replicas, comma-separated (a bare host:port is https://
    /// when a cluster CA is trusted).
    #[arg(long, global = true, env = "ULTRACLOUD_PLASMAVMC", default_value = "127.0.0.1:8680")]
    plasmavmc: String,
    #[command(flatten)]
    project: ProjectArgs,
}

impl Target {
    async fn open(&self) -> anyhow::Result<(Ctx, Plasmavmc)> {
        let c = Ctx::open(Plasmavmc::SERVICE, &self.plasmavmc, &self.project).await?;
        let vmc = Plasmavmc::new(c.client.clone());
        Ok((c, vmc))
    }
}

/// Virtual machines.
#[derive(Debug, Args)]
pub struct VmArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: VmCommand,
}

// Parsed once per process: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
enum VmCommand {
    /// Create (and start) a VM.
    Create {
        /// Name.
        name: String,
        /// Image (name or ID).
        #[arg(long)]
        image: String,
        /// vCPUs.
        #[arg(long, default_value_t = 1)]
        vcpus: u32,
        /// Memory in MiB.
        #[arg(long, default_value_t = 256)]
        memory: u32,
        /// A NIC in this subnet (repeat for more NICs).
        #[arg(long)]
        subnet: Vec<String>,
        /// A NIC on this existing port (repeat for more).
        #[arg(long)]
        port: Vec<String>,
        /// Attach this volume (repeat for more).
        #[arg(long)]
        volume: Vec<String>,
        /// User data from this file (the guest agent reads JSON, see docs/plasmavmc.md).
        #[arg(long, value_name = "FILE")]
        user_data: Option<PathBuf>,
        /// always, on-failure or never.
        #[arg(long, default_value = "on-failure", value_parser = parse_restart_policy)]
        restart_policy: RestartPolicy,
        /// Spread VMs with the same label over different workers.
        #[arg(long)]
        anti_affinity: Option<String>,
        /// Run on this worker.
        #[arg(long)]
        host: Option<String>,
        /// Seconds a stop waits for the guest before forcing it off.
        #[arg(long)]
        stop_timeout: Option<u32>,
        /// Create it stopped.
        #[arg(long)]
        stopped: bool,
        /// Wait until the guest reports ready.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// List VMs with their state and addresses.
    List(ListArgs),
    /// Show a VM.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Set or remove labels (`KEY=VALUE`, `KEY-`) and annotations of a VM.
    Label(LabelArgs),
    /// Start a VM.
    Start {
        /// Name or ID.
        name: String,
        /// Wait until the guest reports ready.
        #[arg(long)]
        wait: bool,
    },
    /// Stop a VM (ACPI power-off; forced after its stop timeout).
    Stop {
        /// Name or ID.
        name: String,
        /// Wait until it is stopped.
        #[arg(long)]
        wait: bool,
    },
    /// Reboot a running VM.
    Reboot {
        /// Name or ID.
        name: String,
    },
    /// Delete a VM (its disks and its plasmavmc-made ports go too).
    Delete {
        /// Name or ID.
        name: String,
        /// Wait until it is gone.
        #[arg(long)]
        wait: bool,
    },
    /// Print the tail of the VM's serial console.
    Console {
        /// Name or ID.
        name: String,
    },
    /// What happened to the VM.
    Events {
        /// Name or ID.
        name: String,
    },
    /// Move a VM to another worker (cold: stop, copy disks, start there).
    Migrate {
        /// Name or ID.
        name: String,
        /// Target worker (default: the scheduler picks).
        #[arg(long)]
        to: Option<String>,
        /// Live migration.
        #[arg(long)]
        live: bool,
        /// Wait until it finished.
        #[arg(long)]
        wait: bool,
    },
}

const VM_FIELDS: &[&str] = &["name", "state", "host", "addresses", "vcpus", "memory_mib", "image", "id"];

fn parse_restart_policy(s: &str) -> Result<RestartPolicy, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned()))
        .map_err(|_| format!("{s:?}: always, on-failure or never"))
}

/// Polls a VM until `done` says so, printing its state as it changes; `None` from the
/// server (404) counts as "gone".
async fn wait_for(
    c: &Ctx,
    vmc: &Plasmavmc,
    name: &str,
    what: &str,
    done: impl Fn(Option<&VmView>) -> bool,
) -> anyhow::Result<Option<VmView>> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let v = match vmc.vms(&c.owner).get(name).await {
            Ok(v) => Some(v),
            Err(e) if e.is_not_found() => None,
            Err(e) => return Err(e.into()),
        };
        if done(v.as_ref()) {
            eprintln!("  {what} after {:.1} s", started.elapsed().as_secs_f64());
            return Ok(v);
        }
        let state = v.as_ref().map_or("gone".to_owned(), |v| {
            let message = v.status.as_ref().map_or("", |s| s.message.as_str());
            format!("{} {message}", state_name(v.state))
        });
        if state != last {
            eprintln!("  … {}", state.trim());
            last = state;
        }
        if started.elapsed() > Duration::from_secs(600) {
            bail!("gave up waiting for VM {name} to be {what} after 10 minutes (last: {last})");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn state_name(s: VmState) -> String {
    serde_json::to_value(s).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_else(|| format!("{s:?}"))
}

fn ready(v: Option<&VmView>) -> bool {
    v.is_some_and(|v| v.state == VmState::Running && v.status.as_ref().is_some_and(|s| s.guest_ready))
}

fn stopped(v: Option<&VmView>) -> bool {
    v.is_some_and(|v| v.state == VmState::Stopped && v.vm.power == Power::Stopped)
}

/// Runs `vm`.
pub async fn vm(args: VmArgs) -> anyhow::Result<ExitCode> {
    let (c, vmc) = args.target.open().await?;
    let vms = vmc.vms(&c.owner);
    match args.command {
        VmCommand::Create {
            name,
            image,
            vcpus,
            memory,
            subnet,
            port,
            volume,
            user_data,
            restart_policy,
            anti_affinity,
            host,
            stop_timeout,
            stopped,
            wait,
            meta,
        } => {
            let mut nics: Vec<NicRequest> =
                subnet.into_iter().map(|s| NicRequest { subnet: Some(s), port: None }).collect();
            nics.extend(port.into_iter().map(|p| NicRequest { subnet: None, port: Some(p) }));
            let user_data = match user_data {
                Some(f) => Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(std::fs::read(&f).with_context(|| format!("reading user data {}", f.display()))?),
                ),
                None => None,
            };
            let (labels, annotations) = meta.split();
            let new = NewVm {
                name: name.clone(),
                image,
                vcpus: Some(vcpus),
                memory_mib: Some(memory),
                nics,
                volumes: volume,
                user_data,
                restart_policy: Some(restart_policy),
                anti_affinity,
                stop_timeout_s: stop_timeout,
                host,
                start: Some(!stopped),
                labels,
                annotations,
            };
            let v = vms.create(&new).await?;
            if wait && !stopped {
                let v = wait_for(&c, &vmc, &name, "ready", ready).await?.unwrap_or(v);
                c.show(&v);
            } else {
                c.show(&v);
            }
        }
        VmCommand::List(l) => c.list(vms, &l, VM_FIELDS).await?,
        VmCommand::Show { name } => c.show(&vms.get(&name).await?),
        VmCommand::Label(l) => c.label(vms, &l).await?,
        VmCommand::Start { name, wait } => {
            vmc.act(&c.owner, &name, VmAction::Start).await?;
            println!("VM {name}: start requested");
            if wait {
                wait_for(&c, &vmc, &name, "ready", ready).await?;
            }
        }
        VmCommand::Stop { name, wait } => {
            vmc.act(&c.owner, &name, VmAction::Stop).await?;
            println!("VM {name}: stop requested");
            if wait {
                wait_for(&c, &vmc, &name, "stopped", stopped).await?;
            }
        }
        VmCommand::Reboot { name } => {
            vmc.act(&c.owner, &name, VmAction::Reboot).await?;
            println!("VM {name}: reboot requested");
        }
        VmCommand::Delete { name, wait } => {
            vms.delete(&name).await?;
            println!("VM {name}: delete requested");
            if wait {
                wait_for(&c, &vmc, &name, "deleted", |v| v.is_none()).await?;
            }
        }
        VmCommand::Console { name } => print!("{}", vmc.console(&c.owner, &name).await?),
        VmCommand::Events { name } => c.out.list(&vmc.vm_events(&c.owner, &name).await?, &["at_ms", "kind", "message"]),
        VmCommand::Migrate { name, to, live, wait } => {
            let v = vmc.migrate(&c.owner, &name, &MigrateRequest { target: to, live }).await?;
            let target = v.vm.migration.as_ref().map_or("?".to_owned(), |m| m.target.clone());
            println!("VM {name}: migrating {} → {target}", v.vm.host);
            if wait {
                let running = v.vm.power == Power::Running;
                // Done when the migration record is gone: on the target (ready, if running),
                // or still on the source when it was called off.
                let end = wait_for(&c, &vmc, &name, "migration over", |v| {
                    v.is_some_and(|v| v.vm.migration.is_none() && (v.vm.host != target || !running || ready(Some(v))))
                })
                .await?;
                let events = vmc.vm_events(&c.owner, &name).await?;
                let last = |kind: &str| events.iter().rev().find(|e| e.kind == kind).map(|e| e.message.clone());
                if end.as_ref().is_some_and(|v| v.vm.host != target) {
                    let why = last("migration-failed").unwrap_or_else(|| "see `ultracloud vm events`".into());
                    bail!("VM {name} did not move to {target}; it stays where it was: {why}");
                }
                if live && let Some(account) = last("handed-over") {
                    println!("VM {name}: {account}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Images.
#[derive(Debug, Args)]
pub struct ImageArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: ImageCommand,
}

#[derive(Debug, Subcommand)]
enum ImageCommand {
    /// Import an image from a URL (file:///… or http://…), or the project's guest image.
    Import {
        /// Name.
        name: String,
        /// The disk's URL.
        #[arg(long, required_unless_present = "guest")]
        url: Option<String>,
        /// Expected SHA-256 of the disk.
        #[arg(long)]
        sha256: Option<String>,
        /// qcow2 or raw (default: detected).
        #[arg(long, value_parser = parse_format)]
        format: Option<DiskFormat>,
        /// Kernel URL for direct boot.
        #[arg(long)]
        kernel_url: Option<String>,
        /// Initrd URL for direct boot.
        #[arg(long)]
        initrd_url: Option<String>,
        /// Kernel command line for direct boot.
        #[arg(long)]
        cmdline: Option<String>,
        /// Import the guest image `ultracloud image build-guest` made (from its directory).
        #[arg(long, value_name = "DIR", num_args = 0..=1, default_missing_value = "")]
        guest: Option<PathBuf>,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// List images.
    List(ListArgs),
    /// Show an image.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Set or remove labels (`KEY=VALUE`, `KEY-`) and annotations of an image.
    Label(LabelArgs),
    /// Delete an image no VM uses.
    Delete {
        /// Name or ID.
        name: String,
    },
    /// Build the project's guest image (Debian kernel, busybox, the UltraCloud guest agent).
    BuildGuest(super::guest_image::BuildGuestArgs),
}

fn parse_format(s: &str) -> Result<DiskFormat, String> {
    serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| format!("{s:?}: qcow2 or raw"))
}

/// The import request for a guest image directory (its `manifest.json` names the files).
pub fn guest_import(name: &str, dir: &Path) -> anyhow::Result<NewImage> {
    let m = ultracloud_guest_image::read_manifest(dir).with_context(|| {
        format!("reading the guest image in {} (run `ultracloud image build-guest`)", dir.display())
    })?;
    let url = |f: &str| format!("file://{}", dir.join(f).display());
    Ok(NewImage {
        name: name.to_owned(),
        url: url(&m.files.disk.file),
        sha256: Some(m.files.disk.sha256.clone()),
        format: Some(DiskFormat::Qcow2),
        kernel_url: Some(url(&m.files.kernel.file)),
        kernel_sha256: Some(m.files.kernel.sha256.clone()),
        initrd_url: Some(url(&m.files.initrd.file)),
        initrd_sha256: Some(m.files.initrd.sha256.clone()),
        cmdline: Some(m.cmdline.clone()),
        labels: Default::default(),
        annotations: Default::default(),
    })
}

/// Runs `image`.
pub async fn image(args: ImageArgs) -> anyhow::Result<ExitCode> {
    if let ImageCommand::BuildGuest(a) = args.command {
        return tokio::task::spawn_blocking(move || super::guest_image::run(a)).await?;
    }
    let (c, vmc) = args.target.open().await?;
    let images = vmc.images(&c.owner);
    match args.command {
        ImageCommand::Import { name, url, sha256, format, kernel_url, initrd_url, cmdline, guest, meta } => {
            let (labels, annotations) = meta.split();
            let mut new = match guest {
                Some(dir) => {
                    let dir = if dir.as_os_str().is_empty() { ultracloud_guest_image::default_out_dir() } else { dir };
                    guest_import(&name, &dir)?
                }
                None => NewImage {
                    name,
                    url: url.context("--url or --guest is needed")?,
                    sha256,
                    format,
                    kernel_url,
                    kernel_sha256: None,
                    initrd_url,
                    initrd_sha256: None,
                    cmdline,
                    labels: Default::default(),
                    annotations: Default::default(),
                },
            };
            (new.labels, new.annotations) = (labels, annotations);
            eprintln!("importing (the controller reads the files once to check them)…");
            c.show(&images.create(&new).await?);
        }
        ImageCommand::List(l) => c.list(images, &l, &["name", "format", "disk.size", "id"]).await?,
        ImageCommand::Show { name } => c.show(&images.get(&name).await?),
        ImageCommand::Label(l) => c.label(images, &l).await?,
        ImageCommand::Delete { name } => c.delete(images, &name, "image").await?,
        ImageCommand::BuildGuest(_) => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

/// Volumes.
#[derive(Debug, Args)]
pub struct VolumeArgs {
    #[command(flatten)]
    target: Target,
    #[command(subcommand)]
    command: VolumeCommand,
}

#[derive(Debug, Subcommand)]
enum VolumeCommand {
    /// Create a volume.
    Create {
        /// Name.
        name: String,
        /// Size in GiB.
        #[arg(long)]
        size: u32,
        #[command(flatten)]
        meta: MetaArgs,
    },
    /// List volumes.
    List(ListArgs),
    /// Attach a volume to a stopped VM.
    Attach {
        /// Volume name or ID.
        name: String,
        /// VM name or ID.
        #[arg(long)]
        vm: String,
    },
    /// Detach a volume from its stopped VM.
    Detach {
        /// Volume name or ID.
        name: String,
    },
    /// Set or remove labels (`KEY=VALUE`, `KEY-`) and annotations of a volume.
    Label(LabelArgs),
    /// Delete a detached volume.
    Delete {
        /// Name or ID.
        name: String,
    },
}

/// Runs `volume`.
pub async fn volume(args: VolumeArgs) -> anyhow::Result<ExitCode> {
    let (c, vmc) = args.target.open().await?;
    let volumes = vmc.volumes(&c.owner);
    match args.command {
        VolumeCommand::Create { name, size, meta } => {
            let (labels, annotations) = meta.split();
            c.show(&volumes.create(&NewVolume { name, size_gib: size, labels, annotations }).await?);
        }
        VolumeCommand::List(l) => c.list(volumes, &l, &["name", "size_gib", "host", "attached_to", "id"]).await?,
        VolumeCommand::Attach { name, vm } => c.show(&vmc.attach(&c.owner, &name, &vm).await?),
        VolumeCommand::Detach { name } => c.show(&vmc.detach(&c.owner, &name).await?),
        VolumeCommand::Label(l) => c.label(volumes, &l).await?,
        VolumeCommand::Delete { name } => c.delete(volumes, &name, "volume").await?,
    }
    Ok(ExitCode::SUCCESS)
}
