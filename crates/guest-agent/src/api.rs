//! The HTTP API of the guest agent: parses a request into one typed [`Action`] (Firecracker's
//! `VmmAction` idea) that [`crate::agent::Agent`] carries out, so routing is testable on its own.
//!
//! | Request             | Answer                                                        |
//! |---------------------|---------------------------------------------------------------|
//! | `GET /health`       | `{"status":"ok"}`                                             |
//! | `GET /addrs`        | hostname and interfaces with MAC and IPv4 addresses           |
//! | `POST /visit`       | increments an in-memory counter: `{"visits":N}`               |
//! | `GET /state`        | `{"visits":N,"boot_id":"…","uptime_s":…}`                     |
//! | `PUT /files/{name}` | stores the body durably on the root disk: `{"name":…,"size":…}` |
//! | `GET /files/{name}` | the stored bytes                                              |
//! | `GET /reach/{ip}:{port}` | asks `GET /health` of another guest from inside this one: `{"ok","status","ms"}` |

use crate::http::{MAX_BODY_BYTES, Request, Response};

/// Longest accepted file name.
pub const MAX_NAME_LEN: usize = 64;

/// What a request asks the agent to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `GET /health`.
    Health,
    /// `GET /addrs`.
    Addrs,
    /// `POST /visit`.
    Visit,
    /// `GET /state`.
    State,
    /// `PUT /files/{name}`.
    PutFile {
        /// The validated file name.
        name: FileName,
        /// The content.
        body: Vec<u8>,
    },
    /// `GET /files/{name}`.
    GetFile {
        /// The validated file name.
        name: FileName,
    },
    /// `GET /reach/{ip}:{port}`: this guest's view of another one (VM-to-VM reachability).
    Reach {
        /// The other guest's HTTP endpoint.
        addr: std::net::SocketAddrV4,
    },
}

/// A file name a client may store: 1 to 64 of `[A-Za-z0-9._-]`, not starting with a dot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileName(String);

impl FileName {
    /// Validates `name`, explaining what is wrong with it.
    pub fn parse(name: &str) -> Result<Self, String> {
        if name.is_empty() || name.len() > MAX_NAME_LEN {
            return Err(format!("file names have 1 to {MAX_NAME_LEN} characters"));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
            return Err("file names use only A-Z a-z 0-9 . _ -".to_string());
        }
        if name.starts_with('.') {
            // Excludes `.` and `..`, and keeps the agent's own temporary files (`.name.N.tmp`) apart.
            return Err("file names must not start with '.'".to_string());
        }
        Ok(Self(name.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Maps a request to its [`Action`], or to the error response explaining why there is none.
pub fn route(request: Request) -> Result<Action, Response> {
    let Request { method, path, body } = request;
    let method_not_allowed = |allow: &str| {
        let mut r = Response::error(405, "method_not_allowed", &format!("{path} allows {allow}"));
        r.headers.push(("Allow", allow.to_string()));
        r
    };
    let action = match path.as_str() {
        "/health" => (method == "GET").then_some(Action::Health).ok_or_else(|| method_not_allowed("GET"))?,
        "/addrs" => (method == "GET").then_some(Action::Addrs).ok_or_else(|| method_not_allowed("GET"))?,
        "/visit" => (method == "POST").then_some(Action::Visit).ok_or_else(|| method_not_allowed("POST"))?,
        "/state" => (method == "GET").then_some(Action::State).ok_or_else(|| method_not_allowed("GET"))?,
        p if p.starts_with("/reach/") => {
            let addr = p["/reach/".len()..]
                .parse()
                .map_err(|_| Response::error(400, "bad_address", "use /reach/IPV4:PORT, e.g. /reach/10.0.0.5:80"))?;
            (method == "GET").then_some(Action::Reach { addr }).ok_or_else(|| method_not_allowed("GET"))?
        }
        _ => {
            let Some(name) = path.strip_prefix("/files/") else {
                return Err(Response::error(404, "not_found", &format!("no such path: {path}")));
            };
            let name = FileName::parse(name).map_err(|msg| Response::error(400, "bad_file_name", &msg))?;
            match method.as_str() {
                "GET" => Action::GetFile { name },
                "PUT" if body.len() > MAX_BODY_BYTES => {
                    return Err(Response::error(413, "too_large", "file too large"));
                }
                "PUT" => Action::PutFile { name, body },
                _ => return Err(method_not_allowed("GET, PUT")),
            }
        }
    };
    Ok(action)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, body: &[u8]) -> Request {
        Request { method: method.into(), path: path.into(), body: body.to_vec() }
    }

    #[test]
    fn routes_known_paths() {
        assert_eq!(route(req("GET", "/health", b"")).unwrap(), Action::Health);
        assert_eq!(route(req("GET", "/addrs", b"")).unwrap(), Action::Addrs);
        assert_eq!(route(req("POST", "/visit", b"")).unwrap(), Action::Visit);
        assert_eq!(route(req("GET", "/state", b"")).unwrap(), Action::State);
        assert_eq!(
            route(req("GET", "/reach/10.0.0.5:80", b"")).unwrap(),
            Action::Reach { addr: "10.0.0.5:80".parse().unwrap() }
        );
        assert_eq!(route(req("GET", "/reach/nowhere", b"")).unwrap_err().status, 400);
        let name = FileName::parse("a-b_c.txt").unwrap();
        assert_eq!(route(req("GET", "/files/a-b_c.txt", b"")).unwrap(), Action::GetFile { name: name.clone() });
        assert_eq!(route(req("PUT", "/files/a-b_c.txt", b"x")).unwrap(), Action::PutFile { name, body: b"x".to_vec() });
    }

    #[test]
    fn refuses_unknown_paths_and_methods() {
        let status = |m: &str, p: &str| route(req(m, p, b"")).unwrap_err().status;
        assert_eq!(status("GET", "/"), 404);
        assert_eq!(status("GET", "/healthz"), 404);
        assert_eq!(status("GET", "/files"), 404);
        assert_eq!(status("POST", "/health"), 405);
        assert_eq!(status("GET", "/visit"), 405);
        assert_eq!(status("DELETE", "/files/a"), 405);
        let r = route(req("GET", "/visit", b"")).unwrap_err();
        assert!(r.headers.contains(&("Allow", "POST".to_string())));
    }

    #[test]
    fn validates_file_names() {
        let status = |p: &str| route(req("GET", p, b"")).unwrap_err().status;
        assert_eq!(status("/files/"), 400);
        assert_eq!(status("/files/.."), 400);
        assert_eq!(status("/files/.hidden"), 400);
        assert_eq!(status("/files/a/b"), 400);
        assert_eq!(status("/files/a%2Fb"), 400);
        assert_eq!(status("/files/sp ace"), 400);
        assert_eq!(status(&format!("/files/{}", "a".repeat(65))), 400);
        assert!(FileName::parse(&"a".repeat(64)).is_ok());
        assert!(FileName::parse("x..y").is_ok());
    }
}
