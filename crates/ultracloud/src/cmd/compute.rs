//! `ultracloud vm|image|volume`: plasmavmc's resources on the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use base64::Engine;
use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{Value, json};

use super::project::Ctx;

/// Where compute resources live and how to print them.
#[derive(Debug, Args)]
pub struct Target {
    /// The plasmavmc controller (a bare host:port is https:// when a cluster CA is trusted).
    #[arg(long, global = true, env = "ULTRACLOUD_PLASMAVMC", default_value = "127.0.0.1:8680")]
    plasmavmc: String,
    /// Tenant (default: your home tenant).
    #[arg(long, short, global = true, env = "ULTRACLOUD_TENANT")]
    tenant: Option<String>,
    /// Project.
    #[arg(long, short, global = true, env = "ULTRACLOUD_PROJECT")]
    project: Option<String>,
    /// iam's URL (default: the one logged in to).
    #[arg(long, global = true, env = "ULTRACLOUD_IAM")]
    iam: Option<String>,
    /// Print JSON.
    #[arg(long, global = true)]
    json: bool,
}

impl Target {
    async fn open(&self) -> anyhow::Result<Ctx> {
        Ctx::open(&self.plasmavmc, self.tenant.as_deref(), self.project.as_deref(), self.iam.as_deref(), self.json)
            .await
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
        #[arg(long, default_value = "on-failure")]
        restart_policy: String,
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
    },
    /// List VMs with their state and addresses.
    List,
    /// Show a VM.
    Show {
        /// Name or ID.
        name: String,
    },
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

/// Polls a VM until `done` says so, printing its state as it changes; `None` from the
/// server (404) counts as "gone".
async fn wait_for(
    c: &Ctx,
    name: &str,
    what: &str,
    done: impl Fn(Option<&Value>) -> bool,
) -> anyhow::Result<Option<Value>> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let v = match c.call(Method::GET, &format!("/vms/{name}"), None).await {
            Ok(v) => Some(v),
            Err(e) if format!("{e:#}").contains("not found") => None,
            Err(e) => return Err(e),
        };
        if done(v.as_ref()) {
            eprintln!("  {what} after {:.1} s", started.elapsed().as_secs_f64());
            return Ok(v);
        }
        let state = v.as_ref().map_or("gone".to_owned(), |v| {
            format!("{} {}", v["state"].as_str().unwrap_or("?"), v["status"]["message"].as_str().unwrap_or(""))
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

fn ready(v: Option<&Value>) -> bool {
    v.is_some_and(|v| v["state"] == "running" && v["status"]["guest_ready"] == true)
}

fn stopped(v: Option<&Value>) -> bool {
    v.is_some_and(|v| v["state"] == "stopped" && v["power"] == "stopped")
}

/// Runs `vm`.
pub async fn vm(args: VmArgs) -> anyhow::Result<ExitCode> {
    let c = args.target.open().await?;
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
        } => {
            let mut nics: Vec<Value> = subnet.iter().map(|s| json!({"subnet": s})).collect();
            nics.extend(port.iter().map(|p| json!({"port": p})));
            let user_data = match user_data {
                Some(f) => Some(
                    base64::engine::general_purpose::STANDARD
                        .encode(std::fs::read(&f).with_context(|| format!("reading user data {}", f.display()))?),
                ),
                None => None,
            };
            let body = json!({
                "name": name, "image": image, "vcpus": vcpus, "memory_mib": memory, "nics": nics,
                "volumes": volume, "user_data": user_data, "restart_policy": restart_policy,
                "anti_affinity": anti_affinity, "host": host, "stop_timeout_s": stop_timeout, "start": !stopped,
            });
            let v = c.call(Method::POST, "/vms", Some(&body)).await?;
            if wait && !stopped {
                let v = wait_for(&c, &name, "ready", ready).await?.unwrap_or(v);
                c.show(&v);
            } else {
                c.show(&v);
            }
        }
        VmCommand::List => c.list("/vms", VM_FIELDS).await?,
        VmCommand::Show { name } => c.show(&c.call(Method::GET, &format!("/vms/{name}"), None).await?),
        VmCommand::Start { name, wait } => {
            c.call(Method::POST, &format!("/vms/{name}/start"), None).await?;
            println!("VM {name}: start requested");
            if wait {
                wait_for(&c, &name, "ready", ready).await?;
            }
        }
        VmCommand::Stop { name, wait } => {
            c.call(Method::POST, &format!("/vms/{name}/stop"), None).await?;
            println!("VM {name}: stop requested");
            if wait {
                wait_for(&c, &name, "stopped", stopped).await?;
            }
        }
        VmCommand::Reboot { name } => {
            c.call(Method::POST, &format!("/vms/{name}/reboot"), None).await?;
            println!("VM {name}: reboot requested");
        }
        VmCommand::Delete { name, wait } => {
            c.call(Method::DELETE, &format!("/vms/{name}"), None).await?;
            println!("VM {name}: delete requested");
            if wait {
                wait_for(&c, &name, "deleted", |v| v.is_none()).await?;
            }
        }
        VmCommand::Console { name } => {
            let v = c.call(Method::GET, &format!("/vms/{name}/console"), None).await?;
            print!("{}", v.as_str().unwrap_or_default());
        }
        VmCommand::Events { name } => c.list(&format!("/vms/{name}/events"), &["at_ms", "kind", "message"]).await?,
        VmCommand::Migrate { name, to, live, wait } => {
            let v = c
                .call(Method::POST, &format!("/vms/{name}/migrate"), Some(&json!({"target": to, "live": live})))
                .await?;
            let target = v["migration"]["target"].as_str().unwrap_or("?").to_owned();
            println!("VM {name}: migrating {} → {target}", v["host"].as_str().unwrap_or("?"));
            if wait {
                let running = v["power"] == "running";
                // Done when the migration record is gone: on the target (ready, if running),
                // or still on the source when it was called off.
                let end = wait_for(&c, &name, "migration over", |v| {
                    v.is_some_and(|v| {
                        v["migration"].is_null() && (v["host"] != target.as_str() || !running || ready(Some(v)))
                    })
                })
                .await?;
                let events = c.call(Method::GET, &format!("/vms/{name}/events"), None).await?;
                let last = |kind: &str| {
                    events["items"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .rev()
                        .find(|e| e["kind"] == kind)
                        .map(|e| e["message"].as_str().unwrap_or_default().to_owned())
                };
                if end.as_ref().is_some_and(|v| v["host"] != target.as_str()) {
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
        #[arg(long)]
        format: Option<String>,
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
    },
    /// List images.
    List,
    /// Show an image.
    Show {
        /// Name or ID.
        name: String,
    },
    /// Delete an image no VM uses.
    Delete {
        /// Name or ID.
        name: String,
    },
    /// Build the project's guest image (Debian kernel, busybox, the UltraCloud guest agent).
    BuildGuest(super::guest_image::BuildGuestArgs),
}

/// The import request for a guest image directory (its `manifest.json` names the files).
pub fn guest_import_body(name: &str, dir: &Path) -> anyhow::Result<Value> {
    let m = ultracloud_guest_image::read_manifest(dir).with_context(|| {
        format!("reading the guest image in {} (run `ultracloud image build-guest`)", dir.display())
    })?;
    let url = |f: &str| format!("file://{}", dir.join(f).display());
    Ok(json!({
        "name": name,
        "url": url(&m.files.disk.file), "sha256": m.files.disk.sha256, "format": "qcow2",
        "kernel_url": url(&m.files.kernel.file), "kernel_sha256": m.files.kernel.sha256,
        "initrd_url": url(&m.files.initrd.file), "initrd_sha256": m.files.initrd.sha256,
        "cmdline": m.cmdline,
    }))
}

/// Runs `image`.
pub async fn image(args: ImageArgs) -> anyhow::Result<ExitCode> {
    if let ImageCommand::BuildGuest(a) = args.command {
        return tokio::task::spawn_blocking(move || super::guest_image::run(a)).await?;
    }
    let c = args.target.open().await?;
    match args.command {
        ImageCommand::Import { name, url, sha256, format, kernel_url, initrd_url, cmdline, guest } => {
            let body = match guest {
                Some(dir) => {
                    let dir = if dir.as_os_str().is_empty() { ultracloud_guest_image::default_out_dir() } else { dir };
                    guest_import_body(&name, &dir)?
                }
                None => json!({
                    "name": name, "url": url, "sha256": sha256, "format": format,
                    "kernel_url": kernel_url, "initrd_url": initrd_url, "cmdline": cmdline,
                }),
            };
            eprintln!("importing (the controller reads the files once to check them)…");
            c.show(&c.call(Method::POST, "/images", Some(&body)).await?);
        }
        ImageCommand::List => c.list("/images", &["name", "format", "disk", "id"]).await?,
        ImageCommand::Show { name } => c.show(&c.call(Method::GET, &format!("/images/{name}"), None).await?),
        ImageCommand::Delete { name } => c.delete(&format!("/images/{name}"), &format!("image {name}")).await?,
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
    },
    /// List volumes.
    List,
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
    /// Delete a detached volume.
    Delete {
        /// Name or ID.
        name: String,
    },
}

/// Runs `volume`.
pub async fn volume(args: VolumeArgs) -> anyhow::Result<ExitCode> {
    let c = args.target.open().await?;
    match args.command {
        VolumeCommand::Create { name, size } => {
            c.show(&c.call(Method::POST, "/volumes", Some(&json!({"name": name, "size_gib": size}))).await?);
        }
        VolumeCommand::List => c.list("/volumes", &["name", "size_gib", "host", "attached_to", "id"]).await?,
        VolumeCommand::Attach { name, vm } => {
            c.show(&c.call(Method::POST, &format!("/volumes/{name}/attach"), Some(&json!({"vm": vm}))).await?);
        }
        VolumeCommand::Detach { name } => {
            c.show(&c.call(Method::POST, &format!("/volumes/{name}/detach"), None).await?);
        }
        VolumeCommand::Delete { name } => c.delete(&format!("/volumes/{name}"), &format!("volume {name}")).await?,
    }
    Ok(ExitCode::SUCCESS)
}
