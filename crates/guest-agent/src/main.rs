//! `ultracloud-guest`: the agent inside every UltraCloud guest VM.
//!
//! The guest image's initramfs loads the drivers, mounts the root disk and `switch_root`s to
//! `/sbin/init`, which is this binary: it runs as PID 1 for the guest's whole life. It mounts the
//! kernel filesystems, reaps orphans, reads the user data the host passed through fw_cfg, brings
//! the network up with DHCP, serves a small HTTP API (see [`api`]) and powers the machine off on
//! request (signals or the ACPI power button, see [`init`]). Progress reaches the host as single
//! lines on the serial console:
//!
//! - `ULTRACLOUD-GUEST-READY ip=<ipv4> mac=<mac>`: the HTTP API listens and the address is known;
//! - `ULTRACLOUD-GUEST-ERROR <what>: <reason>`: something failed; the agent keeps going;
//! - `ULTRACLOUD-GUEST-POWEROFF reason=<why>`: shutting down.
//!
//! Run on a host (not as PID 1) with `--listen ADDR [--files-dir DIR]`, it serves the same API
//! without touching the machine, printing `ULTRACLOUD-GUEST-LISTENING addr=<addr>`: tests use it.

mod agent;
mod api;
mod http;
mod init;
mod net;
mod userdata;

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use agent::{Agent, FILES_DIR};
use init::{Init, console};
use userdata::{USERDATA_PATH, UserData};

/// How long DHCP may take before the agent reports an error (and keeps trying).
const DHCP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long to keep watching for a lease after reporting the DHCP error.
const LATE_LEASE_WAIT: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// Hostname when user data names none.
const DEFAULT_HOSTNAME: &str = "ultracloud-guest";

fn main() -> ExitCode {
    // Before any thread exists, so that all of them inherit the mask.
    if let Err(e) = init::block_signals() {
        console(&format!("ULTRACLOUD-GUEST-ERROR signals: blocking: {e}"));
    }
    if std::process::id() == 1 {
        guest_main();
    }
    match HostArgs::parse(std::env::args().skip(1)) {
        Ok(args) => host_main(args),
        Err(msg) => {
            eprintln!("ultracloud-guest: {msg}");
            eprintln!("usage: ultracloud-guest --listen ADDR [--files-dir DIR]   (as PID 1 it takes no arguments)");
            ExitCode::from(2)
        }
    }
}

/// Starts the HTTP API on `listener`, answering with `agent`.
fn start_http(listener: TcpListener, agent: Agent) -> std::io::Result<()> {
    let agent = Arc::new(agent);
    let handler = Arc::new(move |request| match api::route(request) {
        Ok(action) => agent.handle(action),
        Err(response) => response,
    });
    std::thread::Builder::new().name("http-accept".into()).spawn(move || http::serve(listener, handler))?;
    Ok(())
}

/// Life as PID 1 of a guest. Never returns: PID 1 exiting panics the kernel.
fn guest_main() -> ! {
    let init = Init::new(true);
    if let Err(e) = init.spawn_signal_thread() {
        console(&format!("ULTRACLOUD-GUEST-ERROR signals: starting the signal thread: {e}"));
    }
    for e in init::mount_basics() {
        console(&format!("ULTRACLOUD-GUEST-ERROR mount: {e}"));
    }
    let userdata = read_userdata(Path::new(USERDATA_PATH));
    let hostname = userdata.hostname.clone().unwrap_or_else(|| DEFAULT_HOSTNAME.to_string());
    if let Err(e) = nix::unistd::sethostname(&hostname) {
        console(&format!("ULTRACLOUD-GUEST-ERROR hostname: {e}"));
    }
    for e in userdata.write_files(Path::new("/")) {
        console(&format!("ULTRACLOUD-GUEST-ERROR userdata: {e}"));
    }
    for e in init.watch_power_button() {
        console(&format!("ULTRACLOUD-GUEST-ERROR power button: {e}"));
    }

    let port = userdata.http_port();
    let http_up = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
        .and_then(|listener| start_http(listener, Agent::new(PathBuf::from(FILES_DIR))));
    if let Err(e) = &http_up {
        console(&format!("ULTRACLOUD-GUEST-ERROR http: listening on port {port}: {e}"));
    }

    if let Err(e) = net::link_up(&init.children, "lo") {
        console(&format!("ULTRACLOUD-GUEST-ERROR network: {e}"));
    }
    bring_up_network(&init, &hostname, http_up.is_ok());

    if let Some(script) = &userdata.run {
        let mut cmd = init::command("/bin/sh");
        cmd.arg("-c").arg(script).stdin(Stdio::null()).current_dir("/root");
        if let Err(e) = init.children.spawn(&mut cmd) {
            console(&format!("ULTRACLOUD-GUEST-ERROR run: starting /bin/sh: {e}"));
        }
    }
    loop {
        std::thread::park();
    }
}

/// DHCP on [`net::DHCP_INTERFACE`], then the READY line (or the error, and READY later if a lease
/// still arrives).
fn bring_up_network(init: &Arc<Init>, hostname: &str, http_up: bool) {
    let ifname = net::DHCP_INTERFACE;
    let Some(mac) = net::mac_of(ifname) else {
        console(&format!("ULTRACLOUD-GUEST-ERROR dhcp: no network interface {ifname}"));
        return;
    };
    let started =
        net::link_up(&init.children, ifname).and_then(|()| net::start_dhcp(&init.children, ifname, Some(hostname)));
    let pid = match started {
        Ok(pid) => pid,
        Err(e) => {
            console(&format!("ULTRACLOUD-GUEST-ERROR dhcp: {e}"));
            return;
        }
    };
    let ready = move |ip: Ipv4Addr| {
        if http_up {
            console(&format!("ULTRACLOUD-GUEST-READY ip={ip} mac={mac}"));
        }
    };
    match net::wait_for_lease(&init.children, ifname, pid, DHCP_TIMEOUT) {
        Ok(ip) => ready(ip),
        Err(e) => {
            console(&format!("ULTRACLOUD-GUEST-ERROR dhcp: {e}"));
            let init = Arc::clone(init);
            let late = move || {
                // udhcpc keeps trying: announce the lease if it still comes.
                if let Ok(ip) = net::wait_for_lease(&init.children, ifname, pid, LATE_LEASE_WAIT) {
                    ready(ip);
                }
            };
            let _ = std::thread::Builder::new().name("dhcp-late".into()).spawn(late);
        }
    }
}

/// The user data at `path`: defaults when absent, defaults and a console error when malformed.
fn read_userdata(path: &Path) -> UserData {
    let bytes = match std::fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return UserData::default(),
        Err(e) => {
            console(&format!("ULTRACLOUD-GUEST-ERROR userdata: reading {}: {e}", path.display()));
            return UserData::default();
        }
    };
    UserData::parse(&bytes).unwrap_or_else(|e| {
        console(&format!("ULTRACLOUD-GUEST-ERROR userdata: {e}"));
        UserData::default()
    })
}

/// Command line when not PID 1.
#[derive(Debug, PartialEq, Eq)]
struct HostArgs {
    listen: SocketAddr,
    files_dir: PathBuf,
}

impl HostArgs {
    fn parse(mut args: impl Iterator<Item = String>) -> Result<Self, String> {
        let (mut listen, mut files_dir) = (None, None);
        while let Some(arg) = args.next() {
            let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
            match arg.as_str() {
                "--listen" => listen = Some(value()?.parse().map_err(|e| format!("--listen: {e}"))?),
                "--files-dir" => files_dir = Some(PathBuf::from(value()?)),
                _ => return Err(format!("unknown argument {arg:?}")),
            }
        }
        let listen = listen.ok_or("--listen is required when not running as PID 1")?;
        Ok(Self { listen, files_dir: files_dir.unwrap_or_else(|| PathBuf::from(FILES_DIR)) })
    }
}

/// Serves the API on a host, for tests and development; exits on SIGTERM or SIGINT.
fn host_main(args: HostArgs) -> ExitCode {
    let init = Init::new(false);
    let listener = match TcpListener::bind(args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ultracloud-guest: listening on {}: {e}", args.listen);
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_default();
    if let Err(e) = init.spawn_signal_thread().and_then(|()| start_http(listener, Agent::new(args.files_dir))) {
        eprintln!("ultracloud-guest: starting threads: {e}");
        return ExitCode::FAILURE;
    }
    console(&format!("ULTRACLOUD-GUEST-LISTENING addr={addr}"));
    loop {
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Result<HostArgs, String> {
        HostArgs::parse(list.iter().map(|s| s.to_string()))
    }

    #[test]
    fn parses_host_arguments() {
        let a = args(&["--listen", "127.0.0.1:0", "--files-dir", "/tmp/x"]).unwrap();
        assert_eq!(a, HostArgs { listen: "127.0.0.1:0".parse().unwrap(), files_dir: "/tmp/x".into() });
        assert_eq!(args(&["--listen", "127.0.0.1:1"]).unwrap().files_dir, PathBuf::from(FILES_DIR));
        assert!(args(&[]).is_err());
        assert!(args(&["--listen"]).is_err());
        assert!(args(&["--listen", "nonsense"]).is_err());
        assert!(args(&["--bogus"]).is_err());
    }

    #[test]
    fn user_data_falls_back_to_defaults() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(read_userdata(&dir.path().join("absent")), UserData::default());
        let bad = dir.path().join("bad");
        std::fs::write(&bad, "{not json").unwrap();
        assert_eq!(read_userdata(&bad), UserData::default());
        let good = dir.path().join("good");
        std::fs::write(&good, r#"{"http_port": 8080}"#).unwrap();
        assert_eq!(read_userdata(&good).http_port(), 8080);
    }
}
