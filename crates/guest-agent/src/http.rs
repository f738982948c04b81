//! A deliberately small HTTP/1.1 server over `std::net`: one thread per connection, one request per
//! connection (`Connection: close`), bodies only with `Content-Length`.
//!
//! The guest agent answers a handful of JSON requests from the host and from tests; a framework
//! would triple the static binary for nothing. What matters is that nothing a client sends can
//! crash PID 1: every read is bounded in size and time, and every malformed request gets a 4xx.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Largest request head (request line and headers) accepted.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Largest request body accepted.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
/// Connections served at once; more are answered 503 and closed.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client may stall while sending its request or reading the response.
const IO_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a client may take to send a whole request, however steadily it trickles in.
const REQUEST_DEADLINE: Duration = Duration::from_secs(30);

/// A parsed HTTP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. `GET`.
    pub method: String,
    /// The path without the query string, e.g. `/files/a.txt`.
    pub path: String,
    /// The body (empty when the request had none).
    pub body: Vec<u8>,
}

/// An HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// `Content-Type` header value.
    pub content_type: &'static str,
    /// Extra headers, e.g. `Allow`.
    pub headers: Vec<(&'static str, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Response {
    /// A JSON response with the given status.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        let mut body = value.to_string().into_bytes();
        body.push(b'\n');
        Self { status, content_type: "application/json", headers: Vec::new(), body }
    }

    /// A JSON error: `{"error": code, "message": message}`.
    pub fn error(status: u16, code: &str, message: &str) -> Self {
        Self::json(status, &serde_json::json!({ "error": code, "message": message }))
    }

    /// Raw bytes as `application/octet-stream`.
    pub fn bytes(body: Vec<u8>) -> Self {
        Self { status: 200, content_type: "application/octet-stream", headers: Vec::new(), body }
    }

    /// Serializes status line, headers and body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {} {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            self.status,
            reason(self.status),
            self.content_type,
            self.body.len()
        );
        for (name, value) in &self.headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// The reason phrase of the status codes this server uses.
fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "HTTP Version Not Supported",
        _ => "Unknown",
    }
}

/// What the head of a request says: method, path and how long the body is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Head {
    /// The method.
    pub method: String,
    /// The path without query string.
    pub path: String,
    /// `Content-Length` (0 when absent).
    pub content_length: usize,
    /// The client sent `Expect: 100-continue`.
    pub expect_continue: bool,
}

/// Parses a request head (everything before the blank line), or says which 4xx/5xx to answer.
pub fn parse_head(head: &[u8]) -> Result<Head, Response> {
    let bad = |msg: &str| Response::error(400, "bad_request", msg);
    let text = std::str::from_utf8(head).map_err(|_| bad("request head is not UTF-8"))?;
    let mut lines = text.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.split(' ');
    let (Some(method), Some(target), Some(version), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("malformed request line"));
    };
    if method.is_empty() || !method.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err(bad("malformed method"));
    }
    if !target.starts_with('/') {
        return Err(bad("request target must be an absolute path"));
    }
    match version {
        "HTTP/1.1" | "HTTP/1.0" => {}
        v if v.starts_with("HTTP/") => {
            return Err(Response::error(505, "http_version", "only HTTP/1.0 and HTTP/1.1 are supported"));
        }
        _ => return Err(bad("malformed HTTP version")),
    }
    let path = target.split(['?', '#']).next().unwrap_or(target).to_string();
    let mut content_length = None;
    let mut expect_continue = false;
    for line in lines {
        if line.is_empty() {
            continue;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| bad("malformed header line"))?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value.parse().map_err(|_| bad("malformed Content-Length"))?;
            if content_length.is_some_and(|old| old != n) {
                return Err(bad("conflicting Content-Length headers"));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Response::error(411, "length_required", "send the body with Content-Length"));
        } else if name.eq_ignore_ascii_case("expect") && value.eq_ignore_ascii_case("100-continue") {
            expect_continue = true;
        }
    }
    let content_length = content_length.unwrap_or(0);
    if content_length > MAX_BODY_BYTES {
        return Err(Response::error(413, "too_large", &format!("bodies are limited to {MAX_BODY_BYTES} bytes")));
    }
    Ok(Head { method: method.to_string(), path, content_length, expect_continue })
}

/// Position just past the blank line ending the head, and the head's length without it.
fn find_head_end(buf: &[u8]) -> Option<(usize, usize)> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| (i, i + 4))
}

/// Reads one request from `stream`, or returns the error response to send instead.
pub fn read_request(stream: &mut (impl Read + Write)) -> Result<Request, Response> {
    let timeout_or_400 = |e: io::Error| match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            Response::error(408, "timeout", "request not received in time")
        }
        _ => Response::error(400, "bad_request", &format!("reading request: {e}")),
    };
    let started = Instant::now();
    let too_slow = || Response::error(408, "timeout", "request not received in time");
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (head_len, body_start) = loop {
        if let Some(found) = find_head_end(&buf) {
            break found;
        }
        if buf.len() > MAX_HEAD_BYTES {
            return Err(Response::error(431, "head_too_large", "request head too large"));
        }
        if started.elapsed() > REQUEST_DEADLINE {
            return Err(too_slow());
        }
        let n = stream.read(&mut chunk).map_err(timeout_or_400)?;
        if n == 0 {
            return Err(Response::error(400, "bad_request", "connection closed before the request was complete"));
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    if head_len > MAX_HEAD_BYTES {
        return Err(Response::error(431, "head_too_large", "request head too large"));
    }
    let head = parse_head(&buf[..head_len])?;
    let mut body = buf.split_off(body_start);
    if body.len() > head.content_length {
        // Pipelining is not supported: one request per connection.
        body.truncate(head.content_length);
    }
    if head.expect_continue && body.len() < head.content_length {
        stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(timeout_or_400)?;
    }
    while body.len() < head.content_length {
        if started.elapsed() > REQUEST_DEADLINE {
            return Err(too_slow());
        }
        let want = (head.content_length - body.len()).min(chunk.len());
        let n = stream.read(&mut chunk[..want]).map_err(timeout_or_400)?;
        if n == 0 {
            return Err(Response::error(400, "bad_request", "connection closed before the body was complete"));
        }
        body.extend_from_slice(&chunk[..n]);
    }
    Ok(Request { method: head.method, path: head.path, body })
}

/// Serves one connection: reads a request, asks `handler`, writes the answer, closes.
fn serve_connection(mut stream: TcpStream, handler: &(dyn Fn(Request) -> Response + Send + Sync)) {
    let _ = stream.set_read_timeout(Some(IO_TIMEOUT));
    let _ = stream.set_write_timeout(Some(IO_TIMEOUT));
    let response = match read_request(&mut stream) {
        Ok(request) => handler(request),
        Err(response) => response,
    };
    let _ = stream.write_all(&response.to_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    // Read what the client still sends (an unread body refused early, say) for a moment, so that
    // closing does not reset the connection before the client has read the answer.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    let _ = io::copy(&mut (&mut stream).take(4 * MAX_BODY_BYTES as u64), &mut io::sink());
}

/// Accepts connections forever, each on its own thread, at most [`MAX_CONNECTIONS`] at once.
pub fn serve(listener: TcpListener, handler: Arc<dyn Fn(Request) -> Response + Send + Sync>) -> ! {
    let active = Arc::new(AtomicUsize::new(0));
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) => {
                // EMFILE and friends: back off instead of spinning.
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
        };
        if active.fetch_add(1, Ordering::SeqCst) >= MAX_CONNECTIONS {
            active.fetch_sub(1, Ordering::SeqCst);
            let mut stream = stream;
            let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
            let busy = Response::error(503, "busy", "too many connections");
            let _ = stream.write_all(&busy.to_bytes());
            continue;
        }
        let handler = Arc::clone(&handler);
        let guard = ActiveGuard(Arc::clone(&active));
        let spawned = std::thread::Builder::new().name("http".into()).spawn(move || {
            let _guard = guard;
            serve_connection(stream, handler.as_ref());
        });
        if spawned.is_err() {
            // The closure (with its guard and stream) was dropped: the count is already restored.
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Decrements the active connection count when a connection thread ends, even by panic.
struct ActiveGuard(Arc<AtomicUsize>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An in-memory stream: reads come from `input`, writes go to `output`.
    struct Pipe {
        input: io::Cursor<Vec<u8>>,
        output: Vec<u8>,
    }

    impl Pipe {
        fn new(input: &[u8]) -> Self {
            Self { input: io::Cursor::new(input.to_vec()), output: Vec::new() }
        }
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.input.read(buf)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn reads_get_and_put() {
        let mut p = Pipe::new(b"GET /health?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        let r = read_request(&mut p).unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str(), r.body.len()), ("GET", "/health", 0));

        let mut p = Pipe::new(b"PUT /files/a HTTP/1.1\r\ncontent-length: 5\r\n\r\nhello");
        let r = read_request(&mut p).unwrap();
        assert_eq!(r.body, b"hello");
        assert!(p.output.is_empty());
    }

    #[test]
    fn answers_expect_continue() {
        let mut p = Pipe::new(b"PUT /files/a HTTP/1.1\r\nContent-Length: 2\r\nExpect: 100-continue\r\n\r\nhi");
        // The body is already buffered with the head, so no 100 Continue is needed.
        assert_eq!(read_request(&mut p).unwrap().body, b"hi");
        assert!(p.output.is_empty());
    }

    #[test]
    fn refuses_bad_requests() {
        let status = |input: &[u8]| read_request(&mut Pipe::new(input)).unwrap_err().status;
        assert_eq!(status(b""), 400);
        assert_eq!(status(b"GET /\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/1.1 extra\r\n\r\n"), 400);
        assert_eq!(status(b"get / HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET health HTTP/1.1\r\n\r\n"), 400);
        assert_eq!(status(b"GET / HTTP/2.0\r\n\r\n"), 505);
        assert_eq!(status(b"GET / HTTP/1.1\r\nnocolon\r\n\r\n"), 400);
        assert_eq!(status(b"PUT / HTTP/1.1\r\nContent-Length: x\r\n\r\n"), 400);
        assert_eq!(status(b"PUT / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"), 400);
        assert_eq!(status(b"PUT / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"), 411);
        assert_eq!(status(b"PUT / HTTP/1.1\r\nContent-Length: 1048577\r\n\r\n"), 413);
        assert_eq!(status(b"PUT / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n"), 400);
        assert_eq!(status(b"PUT / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort"), 400);
        assert_eq!(status(b"\xff\xfe / HTTP/1.1\r\n\r\n"), 400);
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 10));
        assert_eq!(status(&huge), 431);
    }

    #[test]
    fn serializes_responses() {
        let r = Response::error(404, "not_found", "no such path");
        let text = String::from_utf8(r.to_bytes()).unwrap();
        assert!(text.starts_with("HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"));
        assert!(text.ends_with("\r\n\r\n{\"error\":\"not_found\",\"message\":\"no such path\"}\n"));
    }
}
