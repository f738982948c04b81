//! The AWS CLI for the gateway tests, run through one Python process per test thread
//! (`aws_batch.py`): the same CLI code, without importing botocore again for every command.
//! Where that helper cannot start (awscli not importable by the interpreter found), each command
//! runs as its own `aws` process.

use std::cell::RefCell;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use serde_json::{Value, json};

const HELPER: &str = include_str!("aws_batch.py");

/// What a command did: (success, stdout, stderr).
pub(crate) type Outcome = (bool, String, String);

struct Batch {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Batch {
    /// Starts the helper with the interpreter of the `aws` program (or `python3`); `None` when
    /// it cannot import awscli.
    fn start() -> Option<Self> {
        let mut child = Command::new(interpreter())
            .args(["-c", HELPER])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .ok()?;
        let stdin = child.stdin.take()?;
        let mut stdout = BufReader::new(child.stdout.take()?);
        let mut line = String::new();
        let ready = stdout.read_line(&mut line).is_ok()
            && serde_json::from_str::<Value>(&line).is_ok_and(|v| v["ready"] == json!(true));
        if !ready {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        Some(Self { child, stdin, stdout })
    }

    fn run(&mut self, args: &[&str], env: &[(&str, &str)]) -> Option<Outcome> {
        let env: serde_json::Map<String, Value> = env.iter().map(|(k, v)| ((*k).to_owned(), json!(v))).collect();
        writeln!(self.stdin, "{}", json!({"args": args, "env": env})).ok()?;
        self.stdin.flush().ok()?;
        let mut line = String::new();
        self.stdout.read_line(&mut line).ok()?;
        let v: Value = serde_json::from_str(&line).ok()?;
        Some((v["rc"] == json!(0), v["out"].as_str()?.to_owned(), v["err"].as_str()?.to_owned()))
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The Python that runs `aws`: its `#!` line when it names one, else `python3`.
fn interpreter() -> PathBuf {
    let shebang = which("aws")
        .and_then(|p| std::fs::read(p).ok())
        .and_then(|b| b.split(|c| *c == b'\n').next().map(|l| String::from_utf8_lossy(l).into_owned()));
    match shebang.as_deref().and_then(|l| l.strip_prefix("#!")) {
        Some(l) if l.contains("python") && !l.contains(' ') => PathBuf::from(l.trim()),
        _ => PathBuf::from("python3"),
    }
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(tool)).find(|p| p.is_file())
}

thread_local! {
    /// This thread's helper: `None` before the first command; `Some(None)` when it could not start.
    static BATCH: RefCell<Option<Option<Batch>>> = const { RefCell::new(None) };
}

/// Runs `aws args…` with `env` added to the test's environment.
pub(crate) fn run(args: &[&str], env: &[(&str, &str)]) -> Outcome {
    let batched = BATCH.with(|cell| {
        let mut cell = cell.borrow_mut();
        let batch = cell.get_or_insert_with(Batch::start).as_mut()?;
        let outcome = batch.run(args, env);
        if outcome.is_none() {
            *cell = Some(None); // the helper broke: plain processes from now on
        }
        outcome
    });
    batched.unwrap_or_else(|| {
        let out = Command::new("aws").args(args).envs(env.iter().copied()).output().expect("aws runs");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    })
}
