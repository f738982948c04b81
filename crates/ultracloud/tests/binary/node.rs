//! `ultracloud node` as a real process: supervision, status, data-dir lock, SIGTERM.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

const BIN: &str = env!("CARGO_BIN_EXE_ultracloud");

use ultracloud_runtime::test_port::free_port;

fn write_config(dir: &Path, port: u16) -> std::path::PathBuf {
    let path = dir.join("node.toml");
    let data = dir.join("data");
    std::fs::write(
        &path,
        format!(
            r#"
name = "testnode"
data_dir = "{}"
admin_listen = "127.0.0.1:{port}"

[service.steady]
program = "/bin/sh"
args = ["-c", "echo steady up; exec sleep 1000"]

[service.crashy]
program = "/bin/sh"
args = ["-c", "echo crashing; exit 7"]
"#,
            data.display()
        ),
    )
    .unwrap();
    path
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_json(config: &Path) -> Option<serde_json::Value> {
    let out = Command::new(BIN).args(["node", "status", "--json", "--config"]).arg(config).output().ok()?;
    out.status.success().then(|| serde_json::from_slice(&out.stdout).ok()).flatten()
}

fn wait_until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn service<'a>(status: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    status["services"].as_array().unwrap().iter().find(|s| s["name"] == name).unwrap()
}

fn http_get(port: u16, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp[9..12].parse().unwrap();
    (code, resp)
}

#[test]
fn node_supervises_reports_locks_and_stops_on_sigterm() {
    let _shared = crate::HEAVY.blocking_read();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let config = write_config(dir.path(), port);
    let agent = Agent(
        Command::new(BIN)
            .args(["node", "--config"])
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.path().join("agent.log")).unwrap())
            .spawn()
            .unwrap(),
    );

    let status = wait_until("steady running and crashy restarted", || {
        let s = status_json(&config)?;
        let ok = service(&s, "steady")["state"] == "running" && service(&s, "crashy")["restarts"].as_u64()? >= 2;
        ok.then_some(s)
    });
    assert_eq!(status["node"], "testnode");
    let steady_pid = service(&status, "steady")["pid"].as_u64().unwrap() as i32;
    assert_eq!(service(&status, "crashy")["last_exit"]["code"], 7);

    // The table form names every service.
    let table = Command::new(BIN).args(["node", "status", "--admin", &format!("127.0.0.1:{port}")]).output().unwrap();
    let table = String::from_utf8_lossy(&table.stdout);
    assert!(table.contains("steady") && table.contains("running") && table.contains("exit code 7"), "{table}");

    // Admin surface: healthy, not ready (crashy keeps failing), metrics and version.
    assert_eq!(http_get(port, "/healthz").0, 200);
    let (code, body) = http_get(port, "/readyz");
    assert_eq!(code, 503, "{body}");
    assert!(body.contains("crashy is"), "{body}");
    assert!(http_get(port, "/metrics").1.contains("ultracloud_http_requests_total"));
    assert!(http_get(port, "/version").1.contains("\"service\":\"node\""));

    // Output of each service goes to <data-dir>/logs/<service>.log.
    let logs = dir.path().join("data/logs");
    assert!(std::fs::read_to_string(logs.join("steady.log")).unwrap().contains("steady up"));
    let crashy_log = std::fs::read_to_string(logs.join("crashy.log")).unwrap();
    assert!(crashy_log.contains("crashing") && crashy_log.contains("restart #1"), "{crashy_log}");

    // A second agent on the same data dir fails at once and says why.
    let second: Output = Command::new(BIN)
        .args(["node", "--config"])
        .arg(&config)
        .args(["--admin-listen", &format!("127.0.0.1:{}", free_port())])
        .output()
        .unwrap();
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains("is in use by another process") && err.contains(&format!("pid {}", agent.0.id())), "{err}");

    // SIGTERM: the agent stops its children and exits 0.
    let mut agent = agent;
    kill(Pid::from_raw(agent.0.id() as i32), Signal::SIGTERM).unwrap();
    let exit = wait_until("agent exit", || agent.0.try_wait().unwrap());
    assert!(
        exit.success(),
        "agent exit {exit:?}; log: {}",
        std::fs::read_to_string(dir.path().join("agent.log")).unwrap()
    );
    assert!(kill(Pid::from_raw(steady_pid), None).is_err(), "service pid {steady_pid} outlived the agent");
    let agent_log = std::fs::read_to_string(dir.path().join("agent.log")).unwrap();
    assert!(agent_log.contains("restarting with backoff"), "{agent_log}");
}

#[test]
fn bad_config_value_is_named() {
    let _shared = crate::HEAVY.blocking_read();
    let out = Command::new(BIN)
        .args(["node", "--data-dir", "/tmp/never-used-ultracloud"])
        .env("ULTRACLOUD_STOP_TIMEOUT_SECS", "soon")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("stop_timeout_secs") && err.contains("soon") && err.contains("ULTRACLOUD_STOP_TIMEOUT_SECS"),
        "{err}"
    );
}
