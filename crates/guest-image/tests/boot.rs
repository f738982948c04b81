//! Builds the guest image, boots it under QEMU (TCG, user-mode networking) and checks the guest
//! agent end to end: the READY line, its HTTP API through a host port forward, a clean power-off
//! from QMP `system_powerdown` (ACPI power button), and a file surviving into the next boot.
//!
//! Skips, saying why, unless run as root with qemu-system-x86_64, qemu-img, mke2fs, static busybox
//! and the static guest agent (`ULTRACLOUD_GUEST_AGENT`, else where cargo builds it:
//! `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --locked -p ultracloud-guest-agent
//! --target x86_64-unknown-linux-gnu`). Needs a guest kernel in the cache (fetched if missing).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ultracloud_guest_image::{BuildOptions, Manifest, read_manifest, verify_image};
use ultracloud_runtime::test_port::free_port;

/// Generous: TCG on a loaded 2-core machine. Typical boots take seconds.
const BOOT_TIMEOUT: Duration = Duration::from_secs(240);
const POWEROFF_TIMEOUT: Duration = Duration::from_secs(120);

fn which(tool: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/sbin"].map(PathBuf::from))
        .map(|d| d.join(tool))
        .find(|p| p.is_file())
}

/// Why the test cannot run here, if it cannot.
fn skip_reason() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root".into());
    }
    for (tool, package) in [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("qemu-img", "qemu-utils"),
        ("mke2fs", "e2fsprogs"),
        ("busybox", "busybox-static"),
    ] {
        if which(tool).is_none() {
            return Some(format!("{tool} not installed (Debian package {package})"));
        }
    }
    match guest_agent() {
        None => Some(format!("no static guest agent; build it with `{}`", ultracloud_guest_image::STATIC_AGENT_BUILD)),
        Some(p) if ultracloud_doctor::linkage(&p).ok() != Some(ultracloud_doctor::Linkage::Static) => Some(format!(
            "{} is not statically linked; build it with `{}`",
            p.display(),
            ultracloud_guest_image::STATIC_AGENT_BUILD
        )),
        Some(_) => None,
    }
}

fn guest_agent() -> Option<PathBuf> {
    std::env::var_os("ULTRACLOUD_GUEST_AGENT")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(ultracloud_guest_image::default_guest_agent_path)
}

/// A running QEMU, killed and reaped however the test ends.
struct Qemu {
    child: Child,
    serial: PathBuf,
    qmp: PathBuf,
    stderr: PathBuf,
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Qemu {
    fn boot(
        dir: &Path,
        image: &Path,
        manifest: &Manifest,
        overlay: &Path,
        userdata: Option<&str>,
        port: u16,
        n: u32,
    ) -> Self {
        let serial = dir.join(format!("serial-{n}.log"));
        let qmp = dir.join(format!("qmp-{n}.sock"));
        let stderr = dir.join(format!("qemu-{n}.log"));
        let mut cmd = Command::new("qemu-system-x86_64");
        if let Some(userdata) = userdata {
            let file = dir.join(format!("userdata-{n}.json"));
            std::fs::write(&file, userdata).unwrap();
            cmd.arg("-fw_cfg").arg(format!("name=opt/ultracloud/userdata,file={}", file.display()));
        }
        let child = cmd
            .args(["-accel", "tcg", "-m", "256", "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot"])
            .arg("-serial")
            .arg(format!("file:{}", serial.display()))
            .arg("-kernel")
            .arg(Manifest::path_of(image, &manifest.files.kernel))
            .arg("-initrd")
            .arg(Manifest::path_of(image, &manifest.files.initrd))
            .arg("-append")
            .arg(&manifest.cmdline)
            .arg("-drive")
            .arg(format!("file={},format=qcow2,if=virtio", overlay.display()))
            .arg("-netdev")
            .arg(format!("user,id=n0,hostfwd=tcp:127.0.0.1:{port}-:80"))
            .args(["-device", "virtio-net-pci,netdev=n0"])
            .arg("-qmp")
            .arg(format!("unix:{},server=on,wait=off", qmp.display()))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("starting qemu-system-x86_64");
        Self { child, serial, qmp, stderr }
    }

    fn console(&self) -> String {
        std::fs::read_to_string(&self.serial).unwrap_or_default()
    }

    /// Everything worth seeing when something fails.
    fn logs(&self) -> String {
        format!(
            "--- serial console ---\n{}\n--- qemu stderr ---\n{}",
            self.console(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits for a console line starting with `prefix`; panics with the logs if QEMU exits first.
    fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.console().lines().find(|l| l.starts_with(prefix)) {
                return line.trim_end().to_string();
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("qemu exited ({status}) before printing {prefix}\n{}", self.logs());
            }
            assert!(Instant::now() < deadline, "no {prefix} line within {timeout:?}\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_for_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "qemu still running {timeout:?} after the request\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends a QMP command and returns its `return` line.
    fn qmp(&self, command: &str) -> String {
        let stream = UnixStream::connect(&self.qmp).unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        reader.read_line(&mut line).unwrap(); // greeting
        for cmd in ["qmp_capabilities", command] {
            writeln!(writer, "{{\"execute\":\"{cmd}\"}}").unwrap();
            loop {
                line.clear();
                assert!(reader.read_line(&mut line).unwrap() > 0, "QMP closed during {cmd}");
                if line.contains("\"return\"") || line.contains("\"error\"") {
                    break;
                }
            }
            assert!(line.contains("\"return\""), "QMP {cmd}: {line}");
        }
        line
    }
}

/// One HTTP/1.1 request through the port forward; returns (status, body).
fn http(port: u16, method: &str, path: &str, body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!("{method} {path} HTTP/1.1\r\nHost: guest\r\nContent-Length: {}\r\n\r\n", body.len());
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap_or_else(|| {
        panic!("no HTTP response to {method} {path}: {:?}", String::from_utf8_lossy(&out));
    });
    let status = String::from_utf8_lossy(&out[..split]).split(' ').nth(1).unwrap().parse().unwrap();
    (status, out[split + 4..].to_vec())
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_else(|e| panic!("{e}: {:?}", String::from_utf8_lossy(body)))
}

#[test]
fn boots_serves_powers_off_and_keeps_files() {
    if let Some(reason) = skip_reason() {
        ultracloud_runtime::prerequisite::missing(&reason);
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let image = dir.join("image");

    // Build (twice: the second build must replace the first cleanly).
    let mut opts = BuildOptions::new(guest_agent().unwrap());
    opts.out_dir = image.clone();
    opts.disk_size_mib = 128;
    let started = Instant::now();
    ultracloud_guest_image::build(&opts, |line| eprintln!("build: {line}")).unwrap();
    eprintln!("first build took {:?}", started.elapsed());
    let manifest = ultracloud_guest_image::build(&opts, |_| {}).unwrap();
    assert_eq!(read_manifest(&image).unwrap(), manifest);
    assert_eq!(verify_image(&image).unwrap(), manifest);
    assert_eq!(std::fs::read_dir(dir).unwrap().count(), 1, "scratch directories left beside the image");
    for (role, file) in manifest.image_files() {
        eprintln!("{role}: {} bytes", file.size);
    }

    let overlay = dir.join("overlay.qcow2");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-F", "qcow2", "-b"])
        .arg(Manifest::path_of(&image, &manifest.files.disk))
        .arg(&overlay)
        .status()
        .unwrap();
    assert!(status.success());

    // First boot, with user data.
    let port = free_port();
    let userdata = r#"{"hostname":"boot-test","files":{"/etc/motd":"hello from user data\n"},"run":"echo run-says-$(cat /etc/motd | tr ' ' '-')"}"#;
    let started = Instant::now();
    let mut vm = Qemu::boot(dir, &image, &manifest, &overlay, Some(userdata), port, 1);
    let ready = vm.wait_for_line("ULTRACLOUD-GUEST-READY ", BOOT_TIMEOUT);
    eprintln!("first boot: {ready} after {:?} (QEMU start to READY, TCG)", started.elapsed());
    assert!(ready.starts_with("ULTRACLOUD-GUEST-READY ip=10.0.2.15 mac=52:54:00:12:34:56"), "{ready}");
    assert!(!vm.console().contains("ULTRACLOUD-GUEST-ERROR"), "{}", vm.logs());

    assert_eq!(http(port, "GET", "/health", b""), (200, b"{\"status\":\"ok\"}\n".to_vec()));
    assert_eq!(json(&http(port, "POST", "/visit", b"").1)["visits"], 1);
    assert_eq!(json(&http(port, "POST", "/visit", b"").1)["visits"], 2);
    let state = json(&http(port, "GET", "/state", b"").1);
    assert_eq!(state["visits"], 2);
    let boot_id = state["boot_id"].as_str().unwrap().to_string();
    let addrs = json(&http(port, "GET", "/addrs", b"").1);
    assert_eq!(addrs["hostname"], "boot-test");
    let eth0 = addrs["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == "eth0").unwrap().clone();
    assert_eq!(eth0["ipv4"][0], "10.0.2.15/24");
    let content: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    let (status, body) = http(port, "PUT", "/files/kept.bin", &content);
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(http(port, "GET", "/files/kept.bin", b""), (200, content.clone()));
    assert_eq!(http(port, "GET", "/files/bad%2Fname", b"").0, 400);
    assert_eq!(http(port, "GET", "/nowhere", b"").0, 404);
    vm.wait_for_line("run-says-hello-from-user-data", BOOT_TIMEOUT);

    // Graceful stop: the ACPI power button.
    let asked = Instant::now();
    vm.qmp("system_powerdown");
    let status = vm.wait_for_exit(POWEROFF_TIMEOUT);
    eprintln!("powered off {:?} after system_powerdown ({status})", asked.elapsed());
    assert!(vm.console().contains("ULTRACLOUD-GUEST-POWEROFF reason=power-button"), "{}", vm.logs());
    drop(vm);

    // Second boot of the same disk, without user data: the file is still there, the rest is new.
    let port = free_port();
    let started = Instant::now();
    let mut vm = Qemu::boot(dir, &image, &manifest, &overlay, None, port, 2);
    let ready = vm.wait_for_line("ULTRACLOUD-GUEST-READY ", BOOT_TIMEOUT);
    eprintln!("second boot: {ready} after {:?}", started.elapsed());
    assert_eq!(http(port, "GET", "/files/kept.bin", b""), (200, content));
    let state = json(&http(port, "GET", "/state", b"").1);
    assert_eq!(state["visits"], 0);
    assert_ne!(state["boot_id"], boot_id.as_str());
    assert_eq!(json(&http(port, "GET", "/addrs", b"").1)["hostname"], "ultracloud-guest");
    vm.qmp("system_powerdown");
    vm.wait_for_exit(POWEROFF_TIMEOUT);
}
