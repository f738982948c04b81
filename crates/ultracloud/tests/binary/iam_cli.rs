//! `ultracloud iam` as a real process over a real flaredb process, driven by the CLI
//! (`login`, `whoami`, `tenant`, `project`, `user`, `apikey`, `binding`, `logout`): the
//! session file is 0600, secrets never reach the service's debug log, and a listener that
//! cannot bind stops the start with a message naming the address.

use crate::flaredb_support;
use std::os::unix::fs::PermissionsExt;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_ultracloud");

use ultracloud_runtime::test_port::free_port;

struct Iam {
    child: Child,
    url: String,
    log: std::path::PathBuf,
}

impl Drop for Iam {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn iam_command(dir: &std::path::Path, db: &str, listen: &str, log: &std::path::Path) -> Command {
    let mut c = Command::new(BIN);
    c.args(["iam", "--flaredb-endpoints", db, "--listen", listen])
        .arg(format!("--admin-listen=127.0.0.1:{}", free_port()))
        .arg(format!("--data-dir={}", dir.display()))
        .env("ULTRACLOUD_LOG_LEVEL", "debug")
        .stdout(std::fs::File::create(log.with_extension("out")).unwrap())
        .stderr(std::fs::File::create(log).unwrap());
    c
}

async fn start_iam(dir: &std::path::Path, db: &str) -> Iam {
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.join("iam.log");
    let child = iam_command(&dir.join("iam"), db, &listen, &log).spawn().unwrap();
    // From here the process is owned by `Iam`, whose Drop kills and waits for it.
    let iam = Iam { child, url: format!("http://{listen}"), log };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if reqwest::get(format!("{}/v1/openapi.json", iam.url)).await.is_ok_and(|r| r.status().is_success()) {
            return iam;
        }
        assert!(Instant::now() < deadline, "iam did not start:\n{}", std::fs::read_to_string(&iam.log).unwrap());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Runs the CLI with the session kept in `config`.
fn cli(config: &std::path::Path, iam: &str, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new(BIN);
    c.args(args)
        .env("ULTRACLOUD_CONFIG_DIR", config)
        .env("ULTRACLOUD_IAM", iam)
        .env_remove("ULTRACLOUD_TOKEN")
        .env_remove("ULTRACLOUD_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    {
        use std::io::Write;
        let mut input = child.stdin.take().unwrap();
        if let Some(s) = stdin {
            input.write_all(s.as_bytes()).unwrap();
        }
    }
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "failed: {text}\n{}", String::from_utf8_lossy(&out.stderr));
    text
}

fn err(out: &Output) -> String {
    assert!(!out.status.success(), "should have failed: {}", String::from_utf8_lossy(&out.stdout));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_drives_iam_and_no_secret_is_logged() {
    let _shared = crate::HEAVY.read().await;
    let db = flaredb_support::FCluster::start(1, &[]);
    db.ready().await;
    let dir = tempfile::tempdir().unwrap();
    let iam = start_iam(dir.path(), &db.nodes[0].addr).await;
    let pw_file = dir.path().join("iam/admin-password");
    assert_eq!(std::fs::metadata(&pw_file).unwrap().permissions().mode() & 0o777, 0o600);
    let admin_pw = std::fs::read_to_string(&pw_file).unwrap().trim().to_owned();
    let platform_key = std::fs::read_to_string(dir.path().join("iam/platform-api-key")).unwrap().trim().to_owned();
    let stdout = std::fs::read_to_string(iam.log.with_extension("out")).unwrap();
    assert!(stdout.contains("admin-password") && !stdout.contains(&admin_pw), "the path is printed, not the secret");

    let cfg = dir.path().join("cli");
    let run = |args: &[&str], stdin: Option<&str>| cli(&cfg, &iam.url, args, stdin);

    let e = err(&run(&["tenant", "list"], None));
    assert!(e.contains("not logged in"), "{e}");
    let e = err(&run(&["login"], Some("wrong password\n")));
    assert!(e.contains("wrong user name or password"), "{e}");
    let out = ok(&run(&["login", "--password-file", pw_file.to_str().unwrap()], None));
    assert!(out.contains("as user:admin"), "{out}");
    let creds = cfg.join("credentials.json");
    assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);
    let session: serde_json::Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
    let (access, refresh) =
        (session["access_token"].as_str().unwrap().to_owned(), session["refresh_token"].as_str().unwrap().to_owned());

    let out = ok(&run(&["whoami"], None));
    assert!(out.contains("user:admin") && out.contains("system-admin"), "{out}");
    ok(&run(&["tenant", "create", "acme", "--display-name", "Acme Corp"], None));
    ok(&run(&["project", "create", "--tenant", "acme", "web"], None));
    let out = ok(&run(&["tenant", "list"], None));
    assert!(out.contains("acme") && out.contains("Acme Corp"), "{out}");
    let e = err(&run(&["tenant", "create", "Not Valid"], None));
    assert!(e.contains("Not Valid") && e.contains("lowercase"), "{e}");
    ok(&run(&["user", "create", "alice", "--tenant", "acme"], Some("alice's long password\n")));
    ok(&run(&["binding", "create", "user:alice", "member", "--scope", "acme/web"], None));
    let out = ok(&run(&["binding", "list", "--subject", "user:alice"], None));
    assert!(out.contains("member@p.acme.web") && out.contains("acme/web"), "{out}");
    let e = err(&run(&["binding", "create", "user:alice", "viewer", "--scope", "acme/"], None));
    assert!(e.contains("TENANT/PROJECT"), "a scope is system, TENANT or TENANT/PROJECT: {e}");
    ok(&run(&["sa", "create", "ci", "--tenant", "acme"], None));
    // Tables: upper-case headers from the fields, a dash for a null cell.
    let out = ok(&run(&["sa", "list"], None));
    assert!(
        out.lines().next().unwrap_or_default().split_whitespace().eq(["ID", "TENANT", "NODE", "DESCRIPTION"]),
        "{out}"
    );
    let row: Vec<&str> = out.lines().find(|l| l.contains("acme")).unwrap_or_default().split_whitespace().collect();
    assert!(row.len() >= 3 && row[1] == "acme" && row[2] == "-", "{out}");
    let out = ok(&run(&["apikey", "create", "--owner", "sa:ci", "--description", "pipeline"], None));
    let key = out.lines().last().unwrap().trim().to_owned();
    assert!(key.starts_with("ucak_"), "{out}");
    let out = ok(&run(&["apikey", "list", "--owner", "sa:ci"], None));
    assert!(out.contains("pipeline") && !out.contains(&key), "{out}");

    // Another session: alice, then the service account by its key.
    let alice_cfg = dir.path().join("alice");
    let out = ok(&cli(&alice_cfg, &iam.url, &["login", "--user", "alice"], Some("alice's long password\n")));
    assert!(out.contains("user:alice"), "{out}");
    let out = ok(&cli(&alice_cfg, &iam.url, &["tenant", "list"], None));
    assert!(!out.contains("acme"), "members of a project do not read the tenant: {out}");
    let e = err(&cli(&alice_cfg, &iam.url, &["tenant", "create", "mine"], None));
    assert!(e.contains("forbidden"), "{e}");
    let key_file = dir.path().join("ci.key");
    std::fs::write(&key_file, &key).unwrap();
    let out =
        ok(&cli(&dir.path().join("ci"), &iam.url, &["login", "--api-key-file", key_file.to_str().unwrap()], None));
    assert!(out.contains("sa:ci"), "{out}");

    // A refused access token (revoked, or a clock ahead of iam's) is renewed with the refresh
    // token and the request sent again; so is one about to expire, before the request.
    for (field, value) in [("access_token", serde_json::json!("not-a-token")), ("expires_at", serde_json::json!(0))] {
        let mut stored: serde_json::Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
        stored[field] = value.clone();
        std::fs::write(&creds, serde_json::to_vec(&stored).unwrap()).unwrap();
        let out = ok(&run(&["tenant", "list"], None));
        assert!(out.contains("acme"), "{field} = {value}: {out}");
        let renewed: serde_json::Value = serde_json::from_slice(&std::fs::read(&creds).unwrap()).unwrap();
        assert_ne!(renewed[field], value, "the renewed session is stored");
        assert_eq!(std::fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);
    }

    let out = ok(&run(&["logout"], None));
    assert!(out.contains("revoked"), "{out}");
    assert!(!creds.exists());
    let e = err(&run(&["whoami"], None));
    assert!(e.contains("not logged in"), "{e}");

    // The service's debug log never holds a secret.
    let log = std::fs::read_to_string(&iam.log).unwrap();
    assert!(log.contains("failed login"), "the log is captured at debug level");
    for (what, secret) in [
        ("admin password", admin_pw.as_str()),
        ("alice's password", "alice's long password"),
        ("wrong password", "wrong password"),
        ("platform key", platform_key.as_str()),
        ("API key", key.as_str()),
        ("access token", access.rsplit('.').next().unwrap()),
        ("refresh token", refresh.as_str()),
    ] {
        assert!(!log.contains(secret), "the {what} is in the log");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listener_that_cannot_bind_stops_the_start() {
    let _shared = crate::HEAVY.read().await;
    let dir = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let log = dir.path().join("iam.log");
    // flaredb is never reached: binding comes first, so nothing half-starts.
    let status = iam_command(dir.path(), "127.0.0.1:1", &addr, &log).status().unwrap();
    assert!(!status.success());
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains(&addr), "the message names the address: {stderr}");
    let status = iam_command(dir.path(), "127.0.0.1:1", "256.0.0.1:80", &log).status().unwrap();
    assert!(!status.success());
    let stderr = std::fs::read_to_string(&log).unwrap();
    assert!(stderr.contains("256.0.0.1:80"), "a bad address is named too: {stderr}");
}
