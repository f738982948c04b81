//! Live migration between workers with local disks, the way QEMU supports it:
//!
//! 1. The target starts the VM's QEMU with `-incoming defer` on a fresh root overlay (on its own
//!    copy of the image) and empty volumes, opening the NIC taps prismnet made there on standby.
//!    It listens for the migration stream and exports its disks over NBD, and reports where.
//! 2. The source mirrors every disk into those exports (`blockdev-mirror`, `write-blocking`: once
//!    a mirror is ready, each guest write lands on both sides before it completes; the root
//!    disk copies only its overlay, `sync=top`, since both sides hold the same image), then
//!    migrates RAM and devices with `pause-before-switchover`.
//! 3. At the switchover pause the guest is stopped and the mirrors are complete: they are
//!    finished (`block-job-cancel` on a ready mirror completes it without pivoting) and the
//!    migration continues. The target resumes the guest, stops its NBD server and reports; the
//!    controller then moves the ports (prismnet attaches the taps) and the VM's host.
//!
//! Both streams (memory, disks) run under mutual TLS with the workers' cluster certificates
//! when the cluster has them (see [`super::migration_tls`]).
//!
//! Every step is read back from QEMU, so an agent restart in the middle picks up where QEMU
//! is. A failure anywhere leaves the guest running on the source (QEMU resumes it) and the
//! controller calls the migration off.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::Worker;
use super::local::{Failed, LocalState, Pending, save, start};
use super::migration_tls::{Endpoint, MigrationTls, host_of};
use super::qemu::{self, VmPaths};
use super::qmp::{Qmp, QmpError};
use crate::model::{Incoming, Migration, MigrationStep, VmState, VmStatus, now_ms};
use crate::server::PlannedVm;

/// Ports the target listens on (migration stream, NBD), above Linux's ephemeral range.
pub const PORTS: std::ops::Range<u16> = 61000..62000;
/// How long the disks may take to mirror before the migration starts.
pub const MIRROR_TIMEOUT: Duration = Duration::from_secs(600);
/// How long RAM may take to converge before the migration is called off.
pub const CONVERGE_TIMEOUT: Duration = Duration::from_secs(300);
/// The migration stream's bandwidth cap (bytes/s): the underlay is a LAN.
pub const BANDWIDTH: u64 = 1 << 30;
/// The longest pause of the guest QEMU aims for at switchover (ms).
pub const DOWNTIME_LIMIT_MS: u64 = 300;
/// How long one pass watches an incoming QEMU for the guest to arrive (so the move is
/// reported the moment it happens, not at the next pass).
pub const ARRIVAL_WATCH: Duration = Duration::from_secs(10);
/// How long the new host waits for prismnet to attach a live-migrated VM's taps.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(20);

fn qmp_err(e: QmpError) -> String {
    e.to_string()
}

/// The VM's disks as QEMU names them (`disk0` the root, then volumes), with QEMU's node names.
async fn disks(q: &mut Qmp) -> Result<Vec<(String, String)>, String> {
    let blocks = q.execute("query-block", None).await.map_err(qmp_err)?;
    let mut out: Vec<(String, String)> = blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|b| {
            let device = b["device"].as_str()?;
            let node = b["inserted"]["node-name"].as_str()?;
            device.starts_with("disk").then(|| (device.to_owned(), node.to_owned()))
        })
        .collect();
    out.sort_by_key(|(d, _)| d.trim_start_matches("disk").parse::<u32>().unwrap_or(u32::MAX));
    Ok(out)
}

/// Runs `command` with `args(host, port)` on ports of [`PORTS`] (starting at a spot derived
/// from `seed`) until one is free; returns the `ip:port` it got.
async fn first_free_port(
    q: &mut Qmp,
    ip: Ipv4Addr,
    seed: &str,
    command: &str,
    args: impl Fn(String, u16) -> Value,
) -> Result<String, String> {
    let span = u32::from(PORTS.end - PORTS.start);
    let start = seed.bytes().fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b))) % span;
    for i in 0..64 {
        let port = PORTS.start + u16::try_from((start + i * 7) % span).unwrap_or(0);
        match q.execute(command, Some(args(ip.to_string(), port))).await {
            Ok(_) => return Ok(format!("{ip}:{port}")),
            Err(QmpError::Command { desc, .. }) if desc.contains("in use") => continue,
            Err(e) => return Err(e.to_string()),
        }
    }
    Err(format!("no free port for the incoming migration in {}..{}", PORTS.start, PORTS.end))
}

/// Target: listen for the migration stream and export the disks over NBD (both under TLS
/// when the worker has credentials: the source must present a cluster certificate).
pub async fn listen(paths: &VmPaths, ip: Ipv4Addr, id: &str, tls: Option<&MigrationTls>) -> Result<Incoming, String> {
    let mut q = Qmp::connect(&paths.qmp()).await.map_err(qmp_err)?;
    let creds = match tls {
        Some(tls) => {
            tls.ensure(&mut q, Endpoint::Server).await?;
            let params = json!({"tls-creds": Endpoint::Server.creds_id()});
            q.execute("migrate-set-parameters", Some(params)).await.map_err(qmp_err)?;
            Some(Endpoint::Server.creds_id())
        }
        None => None,
    };
    let migration =
        first_free_port(&mut q, ip, id, "migrate-incoming", |host, port| json!({"uri": format!("tcp:{host}:{port}")}))
            .await?;
    let nbd = first_free_port(&mut q, ip, &format!("{id}/nbd"), "nbd-server-start", |host, port| {
        let mut args = json!({"addr": {"type": "inet", "data": {"host": host, "port": port.to_string()}}});
        if let Some(creds) = creds {
            args["tls-creds"] = json!(creds);
        }
        args
    })
    .await?;
    for (device, node) in disks(&mut q).await? {
        let export = json!({"type": "nbd", "id": format!("export-{device}"), "node-name": node, "name": device, "writable": true});
        q.execute("block-export-add", Some(export)).await.map_err(qmp_err)?;
    }
    Ok(Incoming { migration, nbd })
}

/// The target side: start the incoming QEMU, then wait for the guest to arrive.
pub(super) async fn migrate_in(w: &Worker, p: &PlannedVm, paths: &VmPaths, local: &mut LocalState) -> VmStatus {
    let vm = &p.vm;
    let mut status = VmStatus { host: w.name.clone(), state: VmState::Migrating, ..Default::default() };
    if local.migrated_in {
        status.migration_step = Some(MigrationStep::TargetDone);
        return status;
    }
    let pid = qemu::pid_of(paths, &vm.id);
    match (pid, local.incoming.clone()) {
        (Some(pid), Some(incoming)) => match arrival(paths).await.as_deref() {
            Ok("running") => {
                // The guest runs here now; the source finished its mirrors before switching over.
                if let Err(e) = super::qmp::run(&paths.qmp(), "nbd-server-stop", None).await {
                    tracing::warn!(vm = %vm.id, error = %e, "stopping the migration's NBD server");
                }
                tracing::info!(vm = %vm.id, "live migration: the guest runs here");
                local.migrated_in = true;
                local.running = true;
                local.console_offset = 0;
                local.reboot_seq = vm.reboot_seq;
                local.carried_ready = p.source.as_ref().is_some_and(|s| s.guest_ready);
                local.announce = true;
                local.incoming = None;
                save(paths, local);
                status.pid = Some(pid);
                status.migration_step = Some(MigrationStep::TargetDone);
            }
            other => {
                status.pid = Some(pid);
                status.migration_step = Some(MigrationStep::TargetListening);
                status.incoming = Some(incoming);
                status.message = match other {
                    Ok(s) => format!("waiting for the source (QEMU {s})"),
                    Err(e) => e.to_string(),
                };
            }
        },
        (None, Some(_)) => {
            // QEMU ends an incoming migration that breaks off.
            fail_in(w, &vm.id, local, &mut status, "the incoming QEMU exited: the migration stream broke off".into())
                .await;
        }
        (pid, None) => {
            if pid.is_some() {
                // QEMU from an attempt whose notes were lost: start over.
                qemu::quit(paths, &vm.id).await;
            }
            // Mirroring copies only the source overlay's data: the target's must start empty.
            let _ = std::fs::remove_file(paths.root_disk());
            match start(w, p, paths, true).await {
                Ok(pid) => match listen(paths, w.address, &vm.id, w.migration_tls.as_ref()).await {
                    Ok(incoming) => {
                        tracing::info!(vm = %vm.id, migration = %incoming.migration, nbd = %incoming.nbd, "live migration: listening");
                        local.incoming = Some(incoming.clone());
                        save(paths, local);
                        status.pid = Some(pid);
                        status.migration_step = Some(MigrationStep::TargetListening);
                        status.incoming = Some(incoming);
                    }
                    Err(e) => fail_in(w, &vm.id, local, &mut status, format!("listening for the migration: {e}")).await,
                },
                Err(Pending(why)) => status.message = why,
                Err(Failed(why)) => fail_in(w, &vm.id, local, &mut status, why).await,
            }
        }
    }
    status.updated_ms = now_ms();
    status
}

/// The incoming QEMU's run state once it leaves `inmigrate`, or after [`ARRIVAL_WATCH`].
async fn arrival(paths: &VmPaths) -> Result<String, QmpError> {
    let deadline = Instant::now() + ARRIVAL_WATCH;
    loop {
        let state = qemu::qmp_status(paths).await?;
        if state != "inmigrate" || Instant::now() > deadline {
            return Ok(state);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Gives up on the incoming side: QEMU and files go, and the failure is reported.
async fn fail_in(w: &Worker, id: &str, local: &mut LocalState, status: &mut VmStatus, why: String) {
    tracing::warn!(vm = %id, error = %why, "live migration in failed");
    super::local::teardown(w, id).await;
    *local = LocalState::default();
    status.migration_step = Some(MigrationStep::Failed);
    status.message = why;
}

/// The source side: once the target listens, mirror the disks, migrate, switch over.
pub(super) async fn migrate_out(
    w: &Worker,
    p: &PlannedVm,
    m: &Migration,
    paths: &VmPaths,
    local: &mut LocalState,
) -> VmStatus {
    let vm = &p.vm;
    let mut status = VmStatus { host: w.name.clone(), state: VmState::Migrating, ..Default::default() };
    let Some(pid) = qemu::pid_of(paths, &vm.id) else {
        status.state = VmState::Stopped;
        status.migration_step = Some(MigrationStep::Failed);
        status.message = "the VM is not running here, so it cannot move live; use a cold migration".into();
        return status;
    };
    status.pid = Some(pid);
    status.accel = Some(w.accel.as_str().to_owned());
    status.guest_ready = super::local::guest_ready(paths, local);
    status.reboot_seq = local.reboot_seq;
    status.restarts = local.restarts;
    let Some(incoming) = &m.incoming else {
        status.message = format!("waiting for {} to start the incoming VM", m.target);
        return status;
    };
    let started = Instant::now();
    match hand_over(paths, incoming, m.started_ms, local, w.migration_tls.as_ref()).await {
        Ok(info) => {
            let (total, paused) = (info["total-time"].as_u64().unwrap_or(0), info["downtime"].as_u64().unwrap_or(0));
            let sent = info["ram"]["transferred"].as_u64().unwrap_or(0) >> 20;
            tracing::info!(vm = %vm.id, to = %m.target, secs = started.elapsed().as_secs_f64(), total_ms = total, downtime_ms = paused, "live migration: handed over");
            // QEMU stays (paused, `postmigrate`) until the move is recorded and it is torn down.
            local.running = false;
            save(paths, local);
            status.migration_step = Some(MigrationStep::HandedOver);
            status.message = format!(
                "handed over to {}: memory migrated in {total} ms ({sent} MiB sent), guest paused {paused} ms",
                m.target
            );
        }
        Err(e) => {
            tracing::warn!(vm = %vm.id, error = %e, "live migration out failed; the VM runs on here");
            status.state = VmState::Running;
            status.migration_step = Some(MigrationStep::Failed);
            status.message = format!("live migration to {}: {e}", m.target);
        }
    }
    status.updated_ms = now_ms();
    status
}

/// Drives QEMU through the migration `started_ms` to `incoming` until it completes or fails;
/// returns QEMU's account of it (`query-migrate`).
async fn hand_over(
    paths: &VmPaths,
    incoming: &Incoming,
    started_ms: u64,
    local: &mut LocalState,
    tls: Option<&MigrationTls>,
) -> Result<Value, String> {
    if local.live_out != Some(started_ms) {
        start_out(paths, incoming, tls).await?;
        local.live_out = Some(started_ms);
        save(paths, local);
    }
    finish_out(paths).await
}

/// Source: mirrors every disk of the QEMU behind `paths` into the target's exports (until the
/// mirrors are ready), then starts the memory migration to `incoming`, both under `tls` when
/// given (the target's certificate must name its address). On failure nothing is left running.
pub async fn start_out(paths: &VmPaths, incoming: &Incoming, tls: Option<&MigrationTls>) -> Result<(), String> {
    let mut q = Qmp::connect(&paths.qmp()).await.map_err(qmp_err)?;
    let wire = match tls {
        Some(tls) => {
            tls.ensure(&mut q, Endpoint::Client).await?;
            Some(Wire { creds: Endpoint::Client.creds_id(), hostname: host_of(&incoming.nbd).to_owned() })
        }
        None => None,
    };
    let devices = disks(&mut q).await?;
    if let Err(e) = mirror(&mut q, &devices, &incoming.nbd, wire.as_ref()).await {
        cancel_mirrors(&mut q).await;
        return Err(e);
    }
    let mut params = json!({"max-bandwidth": BANDWIDTH, "downtime-limit": DOWNTIME_LIMIT_MS});
    if let Some(w) = &wire {
        params["tls-creds"] = json!(w.creds);
        params["tls-hostname"] = json!(host_of(&incoming.migration));
    }
    let started = match q.execute("migrate-set-parameters", Some(params)).await {
        Ok(_) => q.execute("migrate", Some(json!({"uri": format!("tcp:{}", incoming.migration)}))).await,
        Err(e) => Err(e),
    };
    if let Err(e) = started {
        cancel_mirrors(&mut q).await;
        return Err(e.to_string());
    }
    Ok(())
}

/// Source: follows a started migration to its end (finishing the mirrors at the switchover
/// pause); returns QEMU's account of it. On failure the guest runs on here.
pub async fn finish_out(paths: &VmPaths) -> Result<Value, String> {
    let mut q = Qmp::connect(&paths.qmp()).await.map_err(qmp_err)?;
    let outcome = follow(&mut q).await;
    if outcome.is_err() {
        // Whatever went wrong, the guest must run on here: QEMU resumes it once the migration
        // is cancelled (a pause at switchover included).
        let _ = q.execute("migrate_cancel", None).await;
        cancel_mirrors(&mut q).await;
    }
    outcome
}

/// Follows QEMU's migration to its end, finishing the mirrors at the switchover pause.
async fn follow(q: &mut Qmp) -> Result<Value, String> {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    // QEMU's migration thread may still report the pause for a moment after it was told to
    // go on; a second migrate-continue then fails against a migration already completed.
    let mut continued = false;
    loop {
        let info = q.execute("query-migrate", None).await.map_err(qmp_err)?;
        match info["status"].as_str().unwrap_or("none") {
            "completed" => return Ok(info),
            "pre-switchover" if !continued => {
                finish_mirrors(q).await?;
                q.execute("migrate-continue", Some(json!({"state": "pre-switchover"}))).await.map_err(qmp_err)?;
                continued = true;
            }
            s @ ("failed" | "cancelled" | "none") => {
                let why = info["error-desc"].as_str().unwrap_or("no reason given");
                return Err(format!("QEMU's migration {s}: {why}"));
            }
            _ if Instant::now() > deadline => {
                return Err(format!("memory did not converge within {} s", CONVERGE_TIMEOUT.as_secs()));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// How the source reaches the target under TLS.
struct Wire {
    /// The QOM id of the client credentials.
    creds: &'static str,
    /// The name the target's certificate must carry (its address).
    hostname: String,
}

fn job_id(device: &str) -> String {
    format!("mirror-{device}")
}

/// The node name of the NBD client the mirror of `device` writes into.
fn target_node(device: &str) -> String {
    format!("mirror-target-{device}")
}

/// Our mirror jobs QEMU runs: ID → ready.
async fn mirror_jobs(q: &mut Qmp) -> Result<Vec<(String, bool)>, String> {
    let jobs = q.execute("query-block-jobs", None).await.map_err(qmp_err)?;
    Ok(jobs
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|j| {
            let id = j["device"].as_str()?;
            id.starts_with("mirror-").then(|| (id.to_owned(), j["ready"].as_bool().unwrap_or(false)))
        })
        .collect())
}

/// Starts a mirror of every disk into the target's NBD exports and waits until all are ready.
async fn mirror(q: &mut Qmp, devices: &[(String, String)], nbd: &str, wire: Option<&Wire>) -> Result<(), String> {
    let caps = json!({"capabilities": [{"capability": "pause-before-switchover", "state": true}]});
    q.execute("migrate-set-capabilities", Some(caps)).await.map_err(qmp_err)?;
    let running: Vec<String> = mirror_jobs(q).await?.into_iter().map(|(id, _)| id).collect();
    let (host, port) = nbd.rsplit_once(':').ok_or_else(|| format!("the target's NBD address {nbd:?} has no port"))?;
    for (device, node) in devices {
        if running.contains(&job_id(device)) {
            continue;
        }
        // An NBD client node per disk (a URL cannot carry TLS credentials); one left by an
        // earlier attempt goes first.
        let _ = q.execute("blockdev-del", Some(json!({"node-name": target_node(device)}))).await;
        let mut target = json!({
            "driver": "nbd", "node-name": target_node(device), "export": device,
            "server": {"type": "inet", "host": host, "port": port},
        });
        if let Some(w) = wire {
            target["tls-creds"] = json!(w.creds);
            target["tls-hostname"] = json!(w.hostname);
        }
        q.execute("blockdev-add", Some(target))
            .await
            .map_err(|e| format!("reaching {device}'s export on the target: {e}"))?;
        // The root disk's image is on the target already: copy only the overlay.
        let sync = if device == "disk0" { "top" } else { "full" };
        let args = json!({
            "device": node, "job-id": job_id(device), "target": target_node(device),
            "sync": sync, "copy-mode": "write-blocking",
        });
        q.execute("blockdev-mirror", Some(args)).await.map_err(|e| format!("mirroring {device}: {e}"))?;
    }
    let deadline = Instant::now() + MIRROR_TIMEOUT;
    loop {
        let jobs = mirror_jobs(q).await?;
        if let Some((device, _)) = devices.iter().find(|(d, _)| !jobs.iter().any(|(id, _)| *id == job_id(d))) {
            return Err(format!("mirroring {device} to the target failed"));
        }
        if jobs.iter().all(|(_, ready)| *ready) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("the disks did not mirror within {} s", MIRROR_TIMEOUT.as_secs()));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// At the switchover pause: complete every (ready) mirror and wait for the jobs to end.
async fn finish_mirrors(q: &mut Qmp) -> Result<(), String> {
    let jobs = mirror_jobs(q).await?;
    for (id, ready) in &jobs {
        if !ready {
            return Err(format!("{id} fell out of sync at switchover"));
        }
        q.execute("block-job-cancel", Some(json!({"device": id}))).await.map_err(qmp_err)?;
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while !mirror_jobs(q).await?.is_empty() {
        if Instant::now() > deadline {
            return Err("the mirrors did not finish within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The NBD connections to the target close with their nodes.
    for (id, _) in jobs {
        let device = id.trim_start_matches("mirror-");
        if let Err(e) = q.execute("blockdev-del", Some(json!({"node-name": target_node(device)}))).await {
            tracing::debug!(%device, error = %e, "closing a finished mirror's target");
        }
    }
    Ok(())
}

/// Abandons every mirror (the target's copies are dropped with its QEMU).
async fn cancel_mirrors(q: &mut Qmp) {
    if let Ok(jobs) = mirror_jobs(q).await {
        for (id, _) in jobs {
            let _ = q.execute("block-job-cancel", Some(json!({"device": id, "force": true}))).await;
        }
    }
}

/// After a live migration in: waits for prismnet to attach the VM's taps to their bridges here,
/// then has QEMU announce the guest's MACs (RARP), so bridges that learned them on the old host
/// forget that at once instead of when their entries age out. QEMU announced at switchover
/// already, but then the taps were still detached. True once announced (or nothing to do).
pub(super) async fn announce(w: &Worker, vm: &crate::model::Vm, paths: &VmPaths) -> bool {
    let deadline = Instant::now() + ATTACH_TIMEOUT;
    for n in &vm.nics {
        let tap = ultracloud_prismnet::agent::nft::port_dev(&n.port);
        while !super::local::link(w.netns.as_deref(), &tap).await.is_some_and(|l| l.contains(" master ")) {
            if Instant::now() > deadline {
                tracing::warn!(vm = %vm.id, %tap, "the tap is not attached yet; announcing later");
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let rounds = json!({"initial": 50, "max": 550, "rounds": 5, "step": 100});
    match super::qmp::run(&paths.qmp(), "announce-self", Some(rounds)).await {
        Ok(_) => true,
        Err(e) => {
            tracing::warn!(vm = %vm.id, error = %e, "announce-self");
            false
        }
    }
}
