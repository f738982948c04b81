//! The quickstart's failure paths, with the real binary: not root, a port in use, and a
//! service that dies while starting. Each must fail with a message naming the problem (and the
//! log to read), and leave no process or namespace behind. The passing run is `.ci/run`'s
//! `scripts/quickstart.sh`.

use std::process::{Command, Output};

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ultracloud")
}

fn is_root() -> bool {
    Command::new("id").arg("-u").output().is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// Nothing of a quickstart is left: no namespace, no process naming `dir`, no listener.
fn assert_nothing_left(dir: &std::path::Path, held_by_test: u16) {
    let ns = Command::new("ip").args(["netns", "list"]).output().unwrap();
    let ns = String::from_utf8_lossy(&ns.stdout);
    assert!(!ns.lines().any(|l| l.starts_with("ucqs")), "namespaces left: {ns}");
    let ps = Command::new("pgrep").args(["-f", &dir.display().to_string()]).output().unwrap();
    assert!(ps.stdout.is_empty(), "processes left: {}", String::from_utf8_lossy(&ps.stdout));
    // Every service's listeners are free again: nothing it started still runs.
    for port in [2379, 2479, 8480, 8580, 8680, 9101, 9102, 9103, 9104, 9105, 9106, 9107] {
        if port == held_by_test {
            continue;
        }
        assert!(std::net::TcpListener::bind(("127.0.0.1", port)).is_ok(), "port {port} is still held");
    }
}

/// A quickstart in its own directory, checking the host only (no installs from a test).
fn quickstart(dir: &std::path::Path) -> Output {
    Command::new(bin())
        .args(["quickstart", "--no-install", "--dir"])
        .arg(dir)
        .env_remove("ULTRACLOUD_QUICKSTART_KEEP_VM")
        .output()
        .unwrap()
}

/// One test: the paths share the quickstart's fixed ports and namespace, so they run in turn.
#[test]
fn failures_name_the_problem_and_leave_nothing_behind() {
    let _heavy = crate::HEAVY.blocking_write();
    if !is_root() {
        // The refusal itself is what a non-root user sees.
        let o = Command::new(bin()).arg("quickstart").output().unwrap();
        assert!(!o.status.success());
        assert!(text(&o).contains("the quickstart needs root"), "{}", text(&o));
        ultracloud_runtime::prerequisite::missing("the root-only paths need root");
        return;
    }
    let not_root = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", bin(), "quickstart"])
        .output()
        .unwrap();
    assert!(!not_root.status.success());
    assert!(text(&not_root).contains("the quickstart needs root"), "{}", text(&not_root));

    let dir = tempfile::tempdir().unwrap();
    // A port a service needs is taken before it starts.
    let held =
        std::net::TcpListener::bind("127.0.0.1:8480").expect("port 8480 is free for the test (no UltraCloud running)");
    {
        let o = quickstart(dir.path());
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains("iam: port 8480 or 9103 on 127.0.0.1 is in use"), "{t}");
        assert!(t.contains("logs:"), "{t}");
        assert_nothing_left(dir.path(), 8480);
    }
    drop(held);

    // chainfire's peer port (not checked up front) is taken: chainfire dies while starting.
    let held = std::net::TcpListener::bind("127.0.0.1:2380")
        .expect("port 2380 is free for the test (no etcd or chainfire running)");
    {
        let o = quickstart(dir.path());
        assert!(!o.status.success());
        let t = text(&o);
        assert!(t.contains("chainfire exited during start; read"), "{t}");
        assert!(t.contains("logs/chainfire.log"), "{t}");
        let log = std::fs::read_to_string(dir.path().join("logs/chainfire.log")).unwrap();
        assert!(log.contains("2380"), "the log names the port: {log}");
        assert_nothing_left(dir.path(), 2380);
    }
    drop(held);
}
