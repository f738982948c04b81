//! A QMP (QEMU Machine Protocol) client: JSON lines over the VM's unix socket. QEMU accepts one
//! client at a time, so each operation connects, negotiates capabilities, runs its commands and
//! disconnects; that also makes an agent restart invisible to QEMU.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::UnixStream;
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};

/// How long one QMP exchange may take.
pub const QMP_TIMEOUT: Duration = Duration::from_secs(10);

/// A QMP failure.
#[derive(Debug, thiserror::Error)]
pub enum QmpError {
    /// The socket could not be reached or broke.
    #[error("QMP {0}")]
    Io(String),
    /// QEMU answered with an error.
    #[error("QMP command {command} failed: {class}: {desc}")]
    Command {
        /// The command.
        command: String,
        /// QEMU's error class.
        class: String,
        /// QEMU's description.
        desc: String,
    },
}

/// One QMP session.
#[derive(Debug)]
pub struct Qmp {
    lines: tokio::io::Lines<BufReader<OwnedReadHalf>>,
    writer: OwnedWriteHalf,
}

impl Qmp {
    /// Connects to `socket`, reads the greeting and enters command mode.
    pub async fn connect(socket: &Path) -> Result<Self, QmpError> {
        let stream = tokio::time::timeout(QMP_TIMEOUT, UnixStream::connect(socket))
            .await
            .map_err(|_| QmpError::Io(format!("connecting to {}: timed out", socket.display())))?
            .map_err(|e| QmpError::Io(format!("connecting to {}: {e}", socket.display())))?;
        let (r, writer) = stream.into_split();
        let mut qmp = Self { lines: BufReader::new(r).lines(), writer };
        let greeting = qmp.next_message().await?;
        if greeting.get("QMP").is_none() {
            return Err(QmpError::Io(format!("unexpected greeting {greeting}")));
        }
        qmp.execute("qmp_capabilities", None).await?;
        Ok(qmp)
    }

    async fn next_message(&mut self) -> Result<Value, QmpError> {
        let line = tokio::time::timeout(QMP_TIMEOUT, self.lines.next_line())
            .await
            .map_err(|_| QmpError::Io("reading: timed out".into()))?
            .map_err(|e| QmpError::Io(format!("reading: {e}")))?
            .ok_or_else(|| QmpError::Io("QEMU closed the socket".into()))?;
        serde_json::from_str(&line).map_err(|e| QmpError::Io(format!("unreadable message {line:?}: {e}")))
    }

    /// Runs a command and returns its `return` value (events that arrive meanwhile are skipped).
    pub async fn execute(&mut self, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
        let mut msg = json!({ "execute": command });
        if let Some(a) = arguments {
            msg["arguments"] = a;
        }
        let mut line = msg.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).await.map_err(|e| QmpError::Io(format!("writing: {e}")))?;
        loop {
            let m = self.next_message().await?;
            if let Some(r) = m.get("return") {
                return Ok(r.clone());
            }
            if let Some(e) = m.get("error") {
                return Err(QmpError::Command {
                    command: command.to_owned(),
                    class: e["class"].as_str().unwrap_or("?").to_owned(),
                    desc: e["desc"].as_str().unwrap_or("?").to_owned(),
                });
            }
        }
    }

    /// The run state (`running`, `paused`, `shutdown`, `guest-panicked`, `inmigrate`,
    /// `postmigrate`, …).
    pub async fn status(&mut self) -> Result<String, QmpError> {
        let r = self.execute("query-status", None).await?;
        Ok(r["status"].as_str().unwrap_or("unknown").to_owned())
    }
}

/// Connects and runs one command.
pub async fn run(socket: &Path, command: &str, arguments: Option<Value>) -> Result<Value, QmpError> {
    Qmp::connect(socket).await?.execute(command, arguments).await
}

#[cfg(test)]
mod tests {
    use tokio::io::AsyncReadExt;
    use tokio::net::UnixListener;

    use super::*;

    /// A fake QEMU speaking QMP on a socket: enough to test the client's framing.
    async fn fake_qemu(listener: UnixListener) {
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"{\"QMP\": {\"version\": {}, \"capabilities\": []}}\n").await.unwrap();
        let mut buf = vec![0u8; 4096];
        let mut pending = String::new();
        loop {
            let n = s.read(&mut buf).await.unwrap();
            if n == 0 {
                return;
            }
            pending.push_str(std::str::from_utf8(&buf[..n]).unwrap());
            while let Some(i) = pending.find('\n') {
                let line: String = pending.drain(..=i).collect();
                let v: Value = serde_json::from_str(&line).unwrap();
                let reply = match v["execute"].as_str().unwrap() {
                    "qmp_capabilities" => "{\"return\": {}}\n".to_owned(),
                    "query-status" => {
                        "{\"event\": \"RESET\", \"data\": {}}\n{\"return\": {\"status\": \"running\", \"running\": true}}\n"
                            .to_owned()
                    }
                    other => format!("{{\"error\": {{\"class\": \"CommandNotFound\", \"desc\": \"{other}\"}}}}\n"),
                };
                s.write_all(reply.as_bytes()).await.unwrap();
            }
        }
    }

    #[tokio::test]
    async fn greets_skips_events_and_reports_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("qmp.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        tokio::spawn(fake_qemu(listener));
        let mut q = Qmp::connect(&sock).await.unwrap();
        assert_eq!(q.status().await.unwrap(), "running");
        let e = q.execute("bogus", None).await.unwrap_err();
        assert!(e.to_string().contains("CommandNotFound"), "{e}");
    }
}
