//! The app layer: carries out an [`Action`] against the agent's state (a visit counter in memory,
//! files on the root disk) and turns the outcome into a [`Response`].

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;

use crate::api::{Action, FileName};
use crate::http::Response;
use crate::net;

/// Asks `GET /health` of the guest agent at `addr` (3 s bounds) and says what came back.
fn reach(addr: std::net::SocketAddrV4) -> serde_json::Value {
    use std::io::Read;
    let started = std::time::Instant::now();
    let limit = std::time::Duration::from_secs(3);
    let outcome = (|| -> std::io::Result<String> {
        let mut s = std::net::TcpStream::connect_timeout(&addr.into(), limit)?;
        s.set_read_timeout(Some(limit))?;
        s.set_write_timeout(Some(limit))?;
        s.write_all(format!("GET /health HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())?;
        let mut buf = Vec::new();
        s.take(4096).read_to_end(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf).lines().next().unwrap_or_default().to_owned())
    })();
    let ms = started.elapsed().as_millis();
    match outcome {
        Ok(status) => json!({ "ok": status.split_whitespace().nth(1) == Some("200"), "status": status, "ms": ms }),
        Err(e) => json!({ "ok": false, "status": e.to_string(), "ms": ms }),
    }
}

/// Where `PUT /files/{name}` stores files in the guest.
pub const FILES_DIR: &str = "/var/lib/ultracloud-guest";

/// The agent's state.
#[derive(Debug)]
pub struct Agent {
    visits: AtomicU64,
    boot_id: String,
    files_dir: PathBuf,
    /// Makes temporary file names unique among concurrent `PUT`s.
    tmp_seq: AtomicU64,
}

impl Agent {
    /// An agent storing files in `files_dir`.
    pub fn new(files_dir: PathBuf) -> Self {
        let boot_id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default().trim().to_string();
        Self { visits: AtomicU64::new(0), boot_id, files_dir, tmp_seq: AtomicU64::new(0) }
    }

    /// Carries out `action`.
    pub fn handle(&self, action: Action) -> Response {
        match action {
            Action::Health => Response::json(200, &json!({ "status": "ok" })),
            Action::Addrs => {
                Response::json(200, &json!({ "hostname": net::hostname(), "interfaces": net::interfaces() }))
            }
            Action::Visit => {
                let visits = self.visits.fetch_add(1, Ordering::SeqCst) + 1;
                Response::json(200, &json!({ "visits": visits }))
            }
            Action::State => Response::json(
                200,
                &json!({
                    "visits": self.visits.load(Ordering::SeqCst),
                    "boot_id": self.boot_id,
                    "uptime_s": uptime_s(),
                }),
            ),
            Action::PutFile { name, body } => match self.put_file(&name, &body) {
                Ok(()) => Response::json(200, &json!({ "name": name.as_str(), "size": body.len() })),
                Err(e) => Response::error(500, "storage", &format!("storing {}: {e}", name.as_str())),
            },
            Action::GetFile { name } => match std::fs::read(self.files_dir.join(name.as_str())) {
                Ok(bytes) => Response::bytes(bytes),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Response::error(404, "no_such_file", &format!("no file named {}", name.as_str()))
                }
                Err(e) => Response::error(500, "storage", &format!("reading {}: {e}", name.as_str())),
            },
            Action::Reach { addr } => Response::json(200, &reach(addr)),
        }
    }

    /// Writes the file durably: a temporary file, fsync, rename over the name, fsync the directory.
    fn put_file(&self, name: &FileName, body: &[u8]) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.files_dir)?;
        let seq = self.tmp_seq.fetch_add(1, Ordering::SeqCst);
        let tmp = self.files_dir.join(format!(".{}.{seq}.tmp", name.as_str()));
        let result = write_synced(&tmp, body)
            .and_then(|()| std::fs::rename(&tmp, self.files_dir.join(name.as_str())))
            .and_then(|()| File::open(&self.files_dir)?.sync_all());
        if result.is_err() {
            let _ = std::fs::remove_file(&tmp);
        }
        result
    }
}

fn write_synced(path: &Path, body: &[u8]) -> std::io::Result<()> {
    let mut file = File::create(path)?;
    file.write_all(body)?;
    file.sync_all()
}

/// Seconds since the guest kernel booted, from `/proc/uptime`.
fn uptime_s() -> f64 {
    std::fs::read_to_string("/proc/uptime").ok().and_then(|s| s.split_whitespace().next()?.parse().ok()).unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body_json(r: &Response) -> serde_json::Value {
        serde_json::from_slice(&r.body).unwrap()
    }

    #[test]
    fn counts_visits() {
        let dir = tempfile::tempdir().unwrap();
        let agent = Agent::new(dir.path().to_path_buf());
        assert_eq!(body_json(&agent.handle(Action::Visit))["visits"], 1);
        assert_eq!(body_json(&agent.handle(Action::Visit))["visits"], 2);
        let state = body_json(&agent.handle(Action::State));
        assert_eq!(state["visits"], 2);
        assert!(state["uptime_s"].as_f64().unwrap() > 0.0);
        assert_eq!(body_json(&agent.handle(Action::Health))["status"], "ok");
    }

    #[test]
    fn stores_and_reads_files() {
        let dir = tempfile::tempdir().unwrap();
        let agent = Agent::new(dir.path().join("files"));
        let name = FileName::parse("a.txt").unwrap();
        let r = agent.handle(Action::GetFile { name: name.clone() });
        assert_eq!(r.status, 404);
        let r = agent.handle(Action::PutFile { name: name.clone(), body: b"one".to_vec() });
        assert_eq!(r.status, 200);
        agent.handle(Action::PutFile { name: name.clone(), body: b"two".to_vec() });
        let r = agent.handle(Action::GetFile { name });
        assert_eq!((r.status, r.body.as_slice()), (200, &b"two"[..]));
        // No temporary files are left behind.
        assert_eq!(std::fs::read_dir(dir.path().join("files")).unwrap().count(), 1);
    }

    #[test]
    fn lists_addresses() {
        let agent = Agent::new(PathBuf::from("/nonexistent"));
        let addrs = body_json(&agent.handle(Action::Addrs));
        assert!(addrs["hostname"].is_string());
        let lo = addrs["interfaces"].as_array().unwrap().iter().find(|i| i["name"] == "lo").cloned().unwrap();
        assert!(lo["ipv4"].as_array().unwrap().iter().any(|a| a == "127.0.0.1/8"));
    }
}
