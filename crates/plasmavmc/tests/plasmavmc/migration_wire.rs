//! Live migration's wire under TLS, with real QEMU processes and no guest (`-machine none`
//! with one raw disk each, so a run takes seconds): the agent's own target (`listen`) and
//! source (`start_out`, `finish_out`) code moves memory and disk between two "workers" holding
//! certificates of one cluster CA. Proves: the disk arrives byte for byte and the migrated QEMU
//! runs; a source without a certificate, with one from another CA, or one that reaches a
//! target whose certificate names another address is refused before any byte of disk or
//! memory moves, and the target keeps waiting for the real source.
//!
//! Needs `qemu-system-x86_64` (skipped with a message otherwise; failed under `CI=true`).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;

use ultracloud_plasmavmc::agent::live::{finish_out, listen, start_out};
use ultracloud_plasmavmc::agent::migration_tls::MigrationTls;
use ultracloud_plasmavmc::agent::qemu::VmPaths;
use ultracloud_plasmavmc::agent::qmp;
use ultracloud_tls::{CertAuthority, ClusterTls, IssueRequest, Role};

const DISK_BYTES: usize = 4 << 20;

fn qemu_missing() -> Option<String> {
    let found = Command::new("sh")
        .args(["-c", "command -v qemu-system-x86_64"])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    (!found).then(|| "qemu-system-x86_64 is not installed".to_owned())
}

/// One QEMU without a guest; killed on drop.
struct Qemu {
    paths: VmPaths,
    disk: PathBuf,
}

impl Qemu {
    /// Starts QEMU for VM `id` under `dir` with a raw disk of `content` (`-incoming defer`
    /// when `incoming`); `None` gives it no disk at all.
    fn start(dir: &Path, id: &str, content: Option<&[u8]>, incoming: bool) -> Self {
        let paths = VmPaths::new(dir, id);
        std::fs::create_dir_all(&paths.dir).unwrap();
        let disk = paths.dir.join("disk.raw");
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args(["-machine", "none", "-nodefaults", "-display", "none", "-daemonize"])
            .arg("-pidfile")
            .arg(paths.pidfile())
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", paths.qmp().display()));
        if let Some(content) = content {
            std::fs::write(&disk, content).unwrap();
            cmd.arg("-drive").arg(format!("if=none,id=disk0,format=raw,file={}", disk.display()));
        }
        if incoming {
            cmd.args(["-incoming", "defer"]);
        }
        assert!(cmd.status().unwrap().success(), "QEMU did not start");
        Self { paths, disk }
    }

    async fn status(&self) -> Option<String> {
        let v = qmp::run(&self.paths.qmp(), "query-status", None).await.ok()?;
        v["status"].as_str().map(str::to_owned)
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(pid) = std::fs::read_to_string(self.paths.pidfile()) {
            let _ = Command::new("kill").arg(pid.trim()).status();
        }
    }
}

/// A worker's credentials laid out for QEMU: a certificate from `ca` naming `ip`.
fn worker_tls(ca: &CertAuthority, dir: &Path, name: &str, ip: Ipv4Addr) -> MigrationTls {
    let mut req = IssueRequest::new(name, Role::Worker);
    req.ips = vec![ip.into()];
    let held = ca.issue(&req, &dir.join(name).join("tls")).unwrap();
    MigrationTls::write(&ClusterTls::load(&held).unwrap(), &dir.join(name).join("qemu-tls")).unwrap()
}

fn pattern() -> Vec<u8> {
    (0..DISK_BYTES).map(|i| u8::try_from((i * 31 + i / 4096) % 251).unwrap()).collect()
}

#[tokio::test]
async fn memory_and_disks_move_under_mutual_tls() {
    if let Some(why) = qemu_missing() {
        ultracloud_runtime::prerequisite::missing(&why);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = CertAuthority::create("migration test CA").unwrap();
    let target_ip = Ipv4Addr::new(127, 0, 0, 2);
    let (w1, w2) = (tmp.path().join("w1"), tmp.path().join("w2"));
    let source_tls = worker_tls(&ca, tmp.path(), "w1", Ipv4Addr::new(127, 0, 0, 1));
    let target_tls = worker_tls(&ca, tmp.path(), "w2", target_ip);
    let source = Qemu::start(&w1, "vm-a", Some(&pattern()), false);
    let target = Qemu::start(&w2, "vm-a", Some(&vec![0; DISK_BYTES]), true);

    let incoming = listen(&target.paths, target_ip, "vm-a", Some(&target_tls)).await.unwrap();
    start_out(&source.paths, &incoming, Some(&source_tls)).await.unwrap();
    let info = finish_out(&source.paths).await.unwrap();
    assert_eq!(info["status"], "completed", "{info}");

    assert_eq!(target.status().await.as_deref(), Some("running"), "the migrated QEMU runs on the target");
    assert!(std::fs::read(&target.disk).unwrap() == pattern(), "the disk arrived byte for byte");
    let params = qmp::run(&target.paths.qmp(), "query-migrate-parameters", None).await.unwrap();
    assert_eq!(params["tls-creds"], "uc-tls-server", "the stream ran under TLS: {params}");
}

#[tokio::test]
async fn sources_without_the_clusters_certificate_and_impostor_targets_are_refused() {
    if let Some(why) = qemu_missing() {
        ultracloud_runtime::prerequisite::missing(&why);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let ca = CertAuthority::create("migration test CA").unwrap();
    let other_ca = CertAuthority::create("someone else's CA").unwrap();
    let target_ip = Ipv4Addr::new(127, 0, 0, 3);
    let target_tls = worker_tls(&ca, tmp.path(), "w2", target_ip);
    let target = Qemu::start(&tmp.path().join("w2"), "vm-b", Some(&vec![0; DISK_BYTES]), true);
    let incoming = listen(&target.paths, target_ip, "vm-b", Some(&target_tls)).await.unwrap();

    let cases = [
        ("no certificate", None, "TLS negotiation required"),
        ("another CA's certificate", Some(worker_tls(&other_ca, tmp.path(), "w9", Ipv4Addr::LOCALHOST)), ""),
    ];
    for (what, tls, says) in cases {
        let id = what.replace(' ', "-").replace('\'', "");
        let source = Qemu::start(&tmp.path().join(&id), &id, Some(&pattern()), false);
        let err = start_out(&source.paths, &incoming, tls.as_ref()).await.unwrap_err();
        assert!(err.contains(says), "{what}: {err}");
        assert_eq!(source.status().await.as_deref(), Some("running"), "{what}: the source runs on");
        assert_eq!(target.status().await.as_deref(), Some("inmigrate"), "{what}: the target still waits");
    }
    assert!(std::fs::read(&target.disk).unwrap().iter().all(|b| *b == 0), "no byte of disk reached the target");

    // The source checks the target too: a listener whose certificate names another address
    // (an impostor holding a stolen or misissued certificate) gets nothing.
    let impostor_ip = Ipv4Addr::new(127, 0, 0, 4);
    let wrong_name = worker_tls(&ca, tmp.path(), "w3", Ipv4Addr::new(127, 0, 0, 5));
    let impostor = Qemu::start(&tmp.path().join("w3"), "vm-c", Some(&vec![0; DISK_BYTES]), true);
    let lure = listen(&impostor.paths, impostor_ip, "vm-c", Some(&wrong_name)).await.unwrap();
    let source_tls = worker_tls(&ca, tmp.path(), "w1", Ipv4Addr::LOCALHOST);
    let source = Qemu::start(&tmp.path().join("w1"), "vm-c", Some(&pattern()), false);
    let err = start_out(&source.paths, &lure, Some(&source_tls)).await.unwrap_err();
    assert!(err.contains("does not match the hostname"), "{err}");
    assert!(std::fs::read(&impostor.disk).unwrap().iter().all(|b| *b == 0), "no byte reached the impostor");

    // The memory stream alone (a QEMU without disks) is refused the same way.
    let diskless_target = Qemu::start(&tmp.path().join("w2b"), "vm-d", None, true);
    let incoming = listen(&diskless_target.paths, target_ip, "vm-d", Some(&target_tls)).await.unwrap();
    let plain = Qemu::start(&tmp.path().join("plain"), "vm-d", None, false);
    let failed = match start_out(&plain.paths, &incoming, None).await {
        Ok(()) => finish_out(&plain.paths).await.unwrap_err(),
        Err(e) => e,
    };
    assert!(!failed.is_empty());
    assert_eq!(plain.status().await.as_deref(), Some("running"), "the plain source runs on: {failed}");
    assert_ne!(diskless_target.status().await.as_deref(), Some("running"), "nothing arrived");
}
