//! One VM on one worker: from its planned state to QEMU and back to a status report.

use std::time::{Duration, Instant};

use super::local::{
    Failed, LocalState, Pending, console_len, fetch_image_file, guest_ready, load, note_image, save, start, teardown,
};
use super::qemu::{self, VmPaths};
use super::volumes::qemu_img;
use super::{Controller, Worker, transfer};
use crate::model::{MigrationKind, MigrationStep, Power, RestartPolicy, VmState, VmStatus, now_ms};
use crate::server::PlannedVm;

/// Reconciles one planned VM and says where it stands.
pub async fn reconcile(w: &Worker, ctl: &Controller, p: &PlannedVm) -> VmStatus {
    let vm = &p.vm;
    let paths = VmPaths::new(&w.data_dir, &vm.id);
    let mut local = load(&paths);
    let mut status = VmStatus { host: w.name.clone(), reboot_seq: local.reboot_seq, ..Default::default() };
    if vm.deleting {
        teardown(w, &vm.id).await;
        status.state = VmState::Deleted;
        return status;
    }
    if let Some(m) = vm.migration.as_ref().filter(|m| m.target == w.name && vm.host != w.name) {
        return match m.kind {
            MigrationKind::Cold => migrate_in(w, ctl, p, &paths, &mut local).await,
            MigrationKind::Live => super::live::migrate_in(w, p, &paths, &mut local).await,
        };
    }
    local.migrated_in = false;
    if let Some(m) = &vm.migration {
        if m.kind == MigrationKind::Live {
            return super::live::migrate_out(w, p, m, &paths, &mut local).await;
        }
        let mut s = stop(w, p, &paths, &mut local).await;
        if s.state == VmState::Stopped {
            s.state = VmState::Migrating;
            s.migration_step = Some(MigrationStep::SourceReady);
        }
        return s;
    }
    match vm.power {
        Power::Running => run(w, p, &paths, &mut local).await,
        Power::Stopped => stop(w, p, &paths, &mut local).await,
    }
}

fn finish(status: &mut VmStatus, local: &LocalState, paths: &VmPaths) {
    status.reboot_seq = local.reboot_seq;
    status.restarts = local.restarts;
    save(paths, local);
}

async fn run(w: &Worker, p: &PlannedVm, paths: &VmPaths, local: &mut LocalState) -> VmStatus {
    let vm = &p.vm;
    let mut status = VmStatus { host: w.name.clone(), ..Default::default() };
    if let Some(pid) = qemu::pid_of(paths, &vm.id) {
        let run_state = match qemu::qmp_status(paths).await {
            Ok(s) => s,
            Err(e) => {
                status.state = VmState::Starting;
                status.pid = Some(pid);
                status.message = e.to_string();
                finish(&mut status, local, paths);
                return status;
            }
        };
        match run_state.as_str() {
            "shutdown" | "guest-panicked" | "internal-error" => {
                let crashed = run_state != "shutdown";
                qemu::quit(paths, &vm.id).await;
                local.running = false;
                let restart = match vm.restart_policy {
                    RestartPolicy::Always => true,
                    RestartPolicy::OnFailure => crashed,
                    RestartPolicy::Never => false,
                };
                if !restart {
                    status.state = if crashed { VmState::Crashed } else { VmState::Stopped };
                    status.halted = true;
                    status.message =
                        if crashed { format!("the guest {run_state}") } else { "the guest powered off".into() };
                    finish(&mut status, local, paths);
                    return status;
                }
                local.restarts += 1;
                tracing::info!(vm = %vm.id, state = %run_state, "restarting by policy");
            }
            _ => {
                if run_state == "postmigrate" {
                    // A live migration out completed in QEMU but was called off (its target
                    // failed before taking over): the guest carries on here.
                    match super::qmp::run(&paths.qmp(), "cont", None).await {
                        Ok(_) => status.message = "resumed here: the live migration did not finish".into(),
                        Err(e) => status.message = format!("resuming after a called-off migration: {e}"),
                    }
                }
                if vm.reboot_seq > local.reboot_seq {
                    local.console_offset = console_len(paths);
                    match super::qmp::run(&paths.qmp(), "system_reset", None).await {
                        Ok(_) => {
                            local.reboot_seq = vm.reboot_seq;
                            local.carried_ready = false;
                        }
                        Err(e) => status.message = format!("reboot: {e}"),
                    }
                }
                status.state = VmState::Running;
                status.pid = Some(pid);
                status.accel = Some(w.accel.as_str().to_owned());
                status.guest_ready = guest_ready(paths, local);
                if local.announce {
                    local.announce = !super::live::announce(w, vm, paths).await;
                }
                finish(&mut status, local, paths);
                return status;
            }
        }
    } else if local.running {
        // QEMU is gone without being asked: a crash.
        local.running = false;
        if vm.restart_policy == RestartPolicy::Never {
            status.state = VmState::Crashed;
            status.halted = true;
            status.message = "QEMU exited unexpectedly".into();
            finish(&mut status, local, paths);
            return status;
        }
        local.restarts += 1;
        tracing::info!(vm = %vm.id, "QEMU is gone; restarting by policy");
    }
    match start(w, p, paths, false).await {
        Ok(pid) => {
            local.running = true;
            local.console_offset = 0;
            local.carried_ready = false;
            local.reboot_seq = vm.reboot_seq;
            status.state = VmState::Running;
            status.pid = Some(pid);
            status.accel = Some(w.accel.as_str().to_owned());
        }
        Err(Pending(why)) => {
            status.state = VmState::Starting;
            status.message = why;
        }
        Err(Failed(why)) => {
            tracing::warn!(vm = %vm.id, error = %why, "cannot start the VM");
            status.state = VmState::Failed;
            status.message = why;
        }
    }
    finish(&mut status, local, paths);
    status
}

async fn stop(w: &Worker, p: &PlannedVm, paths: &VmPaths, local: &mut LocalState) -> VmStatus {
    let vm = &p.vm;
    let mut status = VmStatus { host: w.name.clone(), state: VmState::Stopped, ..Default::default() };
    if qemu::pid_of(paths, &vm.id).is_some() {
        let timeout = Duration::from_secs(u64::from(vm.stop_timeout_s));
        let graceful = qemu::shutdown(paths, &vm.id, timeout).await;
        status.message = if graceful { "stopped".into() } else { "forced off after the stop timeout".into() };
    }
    local.running = false;
    finish(&mut status, local, paths);
    status
}

/// The target side of a cold migration: once the source has stopped the VM, copy its root
/// overlay and volumes here and point the overlay at this worker's copy of the image.
async fn migrate_in(w: &Worker, ctl: &Controller, p: &PlannedVm, paths: &VmPaths, local: &mut LocalState) -> VmStatus {
    let mut status = VmStatus { host: w.name.clone(), state: VmState::Migrating, ..Default::default() };
    if local.migrated_in {
        status.migration_step = Some(MigrationStep::TargetDone);
        return status;
    }
    let Some(source) = p.source.as_ref().filter(|s| s.ready) else {
        status.message = "waiting for the source to stop the VM".into();
        return status;
    };
    let started = Instant::now();
    let copied = async {
        let token = ctl.tokens.token().await?;
        let base = fetch_image_file(w, &p.image.disk).await.map_err(|e| match e {
            Pending(m) | Failed(m) => m,
        })?;
        std::fs::create_dir_all(&paths.dir).map_err(|e| format!("creating {}: {e}", paths.dir.display()))?;
        note_image(paths, &p.image);
        let root = paths.root_disk();
        let mut bytes = transfer::pull(&ctl.http, &token, &source.agent_url, &p.vm.id, "root", &root).await?;
        let (b, r) = (base.display().to_string(), root.display().to_string());
        qemu_img(&w.qemu_img, &["rebase", "-u", "-F", p.image.format.as_str(), "-b", &b, &r]).await?;
        for v in &p.volumes {
            bytes +=
                transfer::pull(&ctl.http, &token, &source.agent_url, &p.vm.id, &v.id, &w.volumes.path(&v.id)).await?;
        }
        Ok::<u64, String>(bytes)
    }
    .await;
    match copied {
        Ok(bytes) => {
            tracing::info!(vm = %p.vm.id, bytes, secs = started.elapsed().as_secs_f64(), "migration: disks copied in");
            local.migrated_in = true;
            local.running = false;
            save(paths, local);
            status.migration_step = Some(MigrationStep::TargetDone);
            status.message = format!("copied {bytes} bytes in {:.1} s", started.elapsed().as_secs_f64());
        }
        Err(e) => {
            tracing::warn!(vm = %p.vm.id, error = %e, "migration: copying the disks failed");
            let _ = std::fs::remove_dir_all(&paths.dir);
            status.migration_step = Some(MigrationStep::Failed);
            status.message = format!("copying the disks from {}: {e}", source.host);
        }
    }
    status.updated_ms = now_ms();
    status
}
