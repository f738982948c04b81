//! The one HTTP client a caller of an UltraCloud service uses — a service calling another, an
//! agent calling its controller, the guard calling iam, the CLI.
//!
//! - **Replicas**: a service is named by several base URLs; a call goes to the replica that
//!   answered last, and moves on when one is unreachable or answers 5xx/429.
//! - **Retries**: after every replica failed, the call is repeated (with growing pauses) —
//!   but only when repeating it cannot do harm: `GET`, `PUT`, `DELETE`, a create carrying an
//!   `Idempotency-Key` (every [`Collection::create`] sends one), a call its maker marked
//!   [`Call::retry_safe`], or one that provably never reached a server (connection refused).
//!   Anything else fails with [`ClientError::Unavailable`] saying it may have been applied.
//! - **Tokens**: a bearer token from the client's [`Credentials`] on every call; a 401 renews
//!   it once and repeats the call.
//! - **Errors**: the platform's `{"error":{"code","message"}}` answers become
//!   [`ClientError::Refused`] with their status, code and message.
//! - **Paths** are built from segments, each percent-encoded, so no ID or name taken from a
//!   user can step into another path or add a query.
//!
//! It lives here, beside the process's TLS identity that every client uses, below the services:
//! iam's guard and the controller kit (`ultracloud_resource::client`, which adds typed
//! collections of a tenant project's resources) both build on it.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use rand_core::RngCore;
use reqwest::Url;
use serde::Serialize;
use serde::de::DeserializeOwned;
use ultracloud_runtime::error::ErrorBody;

/// How long one attempt may take unless the call says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);
/// Rounds over all replicas a retry-safe call makes before giving up.
pub const DEFAULT_ROUNDS: u32 = 3;
/// The header a create's idempotency key travels in (the kit's `idempotency` layer reads it).
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// A token being fetched.
pub type TokenFuture<'a> = Pin<Box<dyn Future<Output = Result<String, String>> + Send + 'a>>;

/// Where a client's bearer tokens come from: a service account's key (iam's `TokenSource`),
/// a logged-in user's session (the CLI).
pub trait Credentials: Send + Sync {
    /// The token to send; `renew`: the last one was refused (401), get a fresh one.
    fn token(&self, renew: bool) -> TokenFuture<'_>;
}

/// A fixed bearer token (`ULTRACLOUD_TOKEN`, tests).
#[derive(Debug, Clone)]
pub struct Bearer(pub String);

impl Credentials for Bearer {
    fn token(&self, _renew: bool) -> TokenFuture<'_> {
        let token = self.0.clone();
        Box::pin(async move { Ok(token) })
    }
}

/// A call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClientError {
    /// The service answered with an error (4xx, or a 5xx no retry got past).
    #[error("{message} ({code}, HTTP {status})")]
    Refused {
        /// The service.
        service: String,
        /// The HTTP status.
        status: u16,
        /// The error's stable code (`not_found`, `conflict`, …).
        code: String,
        /// The error's message, for people.
        message: String,
    },
    /// No replica answered.
    #[error("{service} is unavailable: {detail}")]
    Unavailable {
        /// The service.
        service: String,
        /// The last failure.
        detail: String,
    },
    /// The answer was not what the call expects.
    #[error("{service} answered something unreadable: {detail}")]
    Decode {
        /// The service.
        service: String,
        /// What could not be read.
        detail: String,
    },
    /// No token could be had.
    #[error("no credentials for {service}: {detail}")]
    Credentials {
        /// The service.
        service: String,
        /// Why.
        detail: String,
    },
    /// The client or the request is malformed (a bad endpoint URL, a body that does not
    /// serialize).
    #[error("{0}")]
    Invalid(String),
}

impl ClientError {
    /// The HTTP status the service answered, if it answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Whether the service said the resource does not exist.
    pub fn is_not_found(&self) -> bool {
        self.status() == Some(404)
    }

    /// Whether the service refused the call (4xx): retrying it as it is will not help.
    pub fn is_refusal(&self) -> bool {
        self.status().is_some_and(|s| (400..500).contains(&s))
    }
}

/// A client of one service's replicas; cheap to clone (clones share the preferred replica).
#[derive(Clone)]
pub struct Client {
    service: String,
    http: reqwest::Client,
    bases: Arc<Vec<Url>>,
    preferred: Arc<AtomicUsize>,
    credentials: Option<Arc<dyn Credentials>>,
    timeout: Duration,
    rounds: u32,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let bases: Vec<&str> = self.bases.iter().map(Url::as_str).collect();
        f.debug_struct("Client").field("service", &self.service).field("bases", &bases).finish_non_exhaustive()
    }
}

impl Client {
    /// A client of `service` at `endpoints` (URLs, or `host:port` taking this process's scheme:
    /// `https` when it holds or trusts the cluster CA), using the process's TLS identity.
    pub fn new<S: AsRef<str>>(service: &str, endpoints: &[S]) -> Result<Self, ClientError> {
        let mut bases = Vec::with_capacity(endpoints.len());
        for e in endpoints {
            let url = crate::client::with_scheme(e.as_ref().trim());
            let parsed =
                Url::parse(&url).map_err(|err| ClientError::Invalid(format!("{service} URL {url:?}: {err}")))?;
            if parsed.cannot_be_a_base() || parsed.host().is_none() {
                return Err(ClientError::Invalid(format!("{service} URL {url:?} cannot take a path")));
            }
            bases.push(parsed);
        }
        if bases.is_empty() {
            return Err(ClientError::Invalid(format!("no {service} endpoint given")));
        }
        // No client-wide timeout: each call sets its own (a long poll waits 30 s). A
        // partitioned replica drops the SYN: move on after two seconds, not the whole timeout.
        let http = crate::client::http_client_builder()
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .build()
            .map_err(|e| ClientError::Invalid(format!("HTTP client: {e}")))?;
        Ok(Self {
            service: service.to_owned(),
            http,
            bases: Arc::new(bases),
            preferred: Arc::new(AtomicUsize::new(0)),
            credentials: None,
            timeout: DEFAULT_TIMEOUT,
            rounds: DEFAULT_ROUNDS,
        })
    }

    /// [`Client::new`] from a comma-separated list (`--prismnet a:8580,b:8580`).
    pub fn from_list(service: &str, list: &str) -> Result<Self, ClientError> {
        let endpoints: Vec<&str> = list.split(',').map(str::trim).filter(|e| !e.is_empty()).collect();
        Self::new(service, &endpoints)
    }

    /// The same client, sending tokens from `credentials`.
    #[must_use]
    pub fn with_credentials(mut self, credentials: Arc<dyn Credentials>) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// The same client, with `timeout` for each attempt of a call.
    #[must_use]
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The same client, making at most `rounds` rounds over the replicas (at least one).
    #[must_use]
    pub fn with_rounds(mut self, rounds: u32) -> Self {
        self.rounds = rounds.max(1);
        self
    }

    /// The service's name (as errors say it).
    pub fn service(&self) -> &str {
        &self.service
    }

    /// A call of `method` on the path made of `segments` (each percent-encoded).
    pub fn request<S: AsRef<str>>(&self, method: Method, segments: &[S]) -> Call<'_> {
        Call {
            client: self,
            method,
            segments: segments.iter().map(|s| s.as_ref().to_owned()).collect(),
            query: Vec::new(),
            body: None,
            headers: HeaderMap::new(),
            timeout: self.timeout,
            retry_safe: false,
            error: None,
        }
    }

    /// `GET` on `segments`.
    pub fn get<S: AsRef<str>>(&self, segments: &[S]) -> Call<'_> {
        self.request(Method::GET, segments)
    }

    /// `POST` on `segments`.
    pub fn post<S: AsRef<str>>(&self, segments: &[S]) -> Call<'_> {
        self.request(Method::POST, segments)
    }

    /// `PUT` on `segments`.
    pub fn put<S: AsRef<str>>(&self, segments: &[S]) -> Call<'_> {
        self.request(Method::PUT, segments)
    }

    /// `PATCH` on `segments`.
    pub fn patch<S: AsRef<str>>(&self, segments: &[S]) -> Call<'_> {
        self.request(Method::PATCH, segments)
    }

    /// `DELETE` on `segments`.
    pub fn delete<S: AsRef<str>>(&self, segments: &[S]) -> Call<'_> {
        self.request(Method::DELETE, segments)
    }

    /// `base` with `segments` appended and `query` set.
    fn url(base: &Url, segments: &[String], query: &[(String, String)]) -> Url {
        let mut url = base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

/// One call being built; [`Call::send`] (or [`Call::fetch`], [`Call::done`]) makes it.
#[must_use = "a call does nothing until it is sent"]
pub struct Call<'c> {
    client: &'c Client,
    method: Method,
    segments: Vec<String>,
    query: Vec<(String, String)>,
    body: Option<(Vec<u8>, &'static str)>,
    headers: HeaderMap,
    timeout: Duration,
    retry_safe: bool,
    error: Option<ClientError>,
}

/// A successful answer.
#[derive(Debug, Clone)]
pub struct Answer {
    /// Its status.
    pub status: StatusCode,
    /// Its headers.
    pub headers: HeaderMap,
    /// Its body (as received: no copy).
    pub body: bytes::Bytes,
}

impl Answer {
    /// The revision in its `ETag` (`"3"`), for a later `If-Match`.
    pub fn revision(&self) -> Option<u64> {
        let tag = self.headers.get(http::header::ETAG)?.to_str().ok()?;
        tag.trim_matches('"').parse().ok()
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

impl Call<'_> {
    /// Adds `key=value` to the query.
    pub fn query(mut self, key: &str, value: impl ToString) -> Self {
        self.query.push((key.to_owned(), value.to_string()));
        self
    }

    /// Sends `body` as JSON.
    pub fn json<T: Serialize + ?Sized>(mut self, body: &T) -> Self {
        match serde_json::to_vec(body) {
            Ok(b) => self.body = Some((b, "application/json")),
            Err(e) => self.error = Some(ClientError::Invalid(format!("request body: {e}"))),
        }
        self
    }

    /// Sends `body` as raw bytes (`application/octet-stream`).
    pub fn bytes(mut self, body: Vec<u8>) -> Self {
        self.body = Some((body, "application/octet-stream"));
        self
    }

    /// Sends `body` as plain text.
    pub fn text(mut self, body: String) -> Self {
        self.body = Some((body.into_bytes(), "text/plain; charset=utf-8"));
        self
    }

    /// Gives each attempt `timeout` (a long poll's is longer than the client's default).
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends `Idempotency-Key: key` — the service answers a repeat with the first answer —
    /// which makes the call safe to retry.
    pub fn idempotency_key(mut self, key: &str) -> Self {
        match HeaderValue::from_str(key) {
            Ok(v) => {
                self.headers.insert(http::HeaderName::from_static(IDEMPOTENCY_KEY), v);
                self.retry_safe = true;
            }
            Err(_) => self.error = Some(ClientError::Invalid(format!("Idempotency-Key {key:?}: not a header value"))),
        }
        self
    }

    /// Sends `If-Match` with `revision` (the service refuses the call with 412 when the
    /// resource has changed since); `None` sends none (an unconditional change).
    pub fn if_match(mut self, revision: impl Into<Option<u64>>) -> Self {
        if let Some(Ok(v)) = revision.into().map(|r| HeaderValue::from_str(&format!("\"{r}\""))) {
            self.headers.insert(http::header::IF_MATCH, v);
        }
        self
    }

    /// Marks the call as harmless to repeat (its maker knows: a token grant, an idempotent
    /// action).
    pub fn retry_safe(mut self) -> Self {
        self.retry_safe = true;
        self
    }

    /// Makes the call and decodes a JSON answer.
    pub async fn fetch<T: DeserializeOwned>(self) -> Result<T, ClientError> {
        let service = self.client.service.clone();
        let answer = self.send().await?;
        serde_json::from_slice(&answer.body).map_err(|e| ClientError::Decode { service, detail: e.to_string() })
    }

    /// Makes the call, ignoring the answer's body.
    pub async fn done(self) -> Result<(), ClientError> {
        self.send().await.map(drop)
    }

    /// Makes the call: the replicas in turn, the rounds while the call is retry-safe.
    pub async fn send(self) -> Result<Answer, ClientError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let c = self.client;
        let repeatable =
            self.retry_safe || matches!(self.method, Method::GET | Method::HEAD | Method::PUT | Method::DELETE);
        let n = c.bases.len();
        let mut last = String::new();
        let mut renewed = false;
        for round in 0..c.rounds {
            if round > 0 {
                tokio::time::sleep(backoff(round)).await;
            }
            let first = c.preferred.load(Ordering::Relaxed);
            for i in 0..n {
                let idx = (first + i) % n;
                let base = &c.bases[idx];
                let mut sent = self.attempt(base, self.token(false).await?).await;
                if sent.as_ref().is_ok_and(|r| r.status() == StatusCode::UNAUTHORIZED)
                    && c.credentials.is_some()
                    && !renewed
                {
                    renewed = true; // revoked or expired early: a fresh token, once
                    sent = self.attempt(base, self.token(true).await?).await;
                }
                let resp = match sent {
                    Ok(r) => r,
                    Err(e) => {
                        last = format!("{}: {}", base.as_str().trim_end_matches('/'), error_chain(&e));
                        if !repeatable && !e.is_connect() {
                            return Err(c.unavailable(format!("{last} (the request may have been applied)")));
                        }
                        continue;
                    }
                };
                let status = resp.status();
                let headers = resp.headers().clone();
                let body = match resp.bytes().await {
                    Ok(b) => b,
                    Err(e) => {
                        last =
                            format!("{}: reading the answer: {}", base.as_str().trim_end_matches('/'), error_chain(&e));
                        if !repeatable {
                            return Err(c.unavailable(format!("{last} (the request may have been applied)")));
                        }
                        continue;
                    }
                };
                if status.is_success() {
                    c.preferred.store(idx, Ordering::Relaxed);
                    return Ok(Answer { status, headers, body });
                }
                let refused = c.refused(status, &body);
                if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
                    // Another replica may serve it (this one is not ready, or lost its leader).
                    last = format!("{}: {refused}", base.as_str().trim_end_matches('/'));
                    if !repeatable {
                        return Err(refused);
                    }
                    continue;
                }
                c.preferred.store(idx, Ordering::Relaxed);
                return Err(refused);
            }
        }
        Err(c.unavailable(last))
    }

    async fn token(&self, renew: bool) -> Result<Option<String>, ClientError> {
        let Some(credentials) = &self.client.credentials else { return Ok(None) };
        credentials
            .token(renew)
            .await
            .map(Some)
            .map_err(|detail| ClientError::Credentials { service: self.client.service.clone(), detail })
    }

    async fn attempt(&self, base: &Url, token: Option<String>) -> Result<reqwest::Response, reqwest::Error> {
        let url = Client::url(base, &self.segments, &self.query);
        let mut req = self.client.http.request(self.method.clone(), url).timeout(self.timeout);
        req = req.headers(self.headers.clone());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some((body, content_type)) = &self.body {
            req = req.header(http::header::CONTENT_TYPE, *content_type).body(body.clone());
        }
        req.send().await
    }
}

impl Client {
    fn unavailable(&self, detail: String) -> ClientError {
        let detail = if detail.is_empty() { "no answer".to_owned() } else { detail };
        ClientError::Unavailable { service: self.service.clone(), detail }
    }

    /// The error an answer with a failing `status` carries (the platform's error body, or
    /// the body's first line when it is something else).
    fn refused(&self, status: StatusCode, body: &[u8]) -> ClientError {
        let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
            Ok(e) => (e.error.code, e.error.message),
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                let line = text.lines().next().unwrap_or("").chars().take(200).collect::<String>();
                let reason = status.canonical_reason().unwrap_or("error").to_lowercase().replace(' ', "_");
                (reason, if line.is_empty() { format!("{} answered {status}", self.service) } else { line })
            }
        };
        ClientError::Refused { service: self.service.clone(), status: status.as_u16(), code, message }
    }
}

/// The pause before round `round` (≥ 1): 200 ms doubling to at most 2 s, with jitter so
/// that many clients do not retry in step.
fn backoff(round: u32) -> Duration {
    let base = 200u64.saturating_mul(1 << (round - 1).min(4)).min(2_000);
    let jitter = u64::from(rand_core::OsRng.next_u32()) % (base / 2 + 1);
    Duration::from_millis(base / 2 + jitter)
}

/// An error with its causes (`reqwest` hides the useful part in `source`).
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// A fresh `Idempotency-Key`.
pub fn idempotency_key() -> String {
    let mut bytes = [0u8; 16];
    rand_core::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_segment_stays_one_segment() {
        let base = Url::parse("http://10.0.0.1:8580/").unwrap();
        let seg = |s: &[&str]| s.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let url = Client::url(&base, &seg(&["v1", "ports", "../../../globex/projects/app/ports/p1"]), &[]);
        assert_eq!(url.as_str(), "http://10.0.0.1:8580/v1/ports/..%2F..%2F..%2Fglobex%2Fprojects%2Fapp%2Fports%2Fp1");
        let url = Client::url(&base, &seg(&["v1", "p?x=1#y"]), &[("after".into(), "3&x=4".into())]);
        assert_eq!(url.path(), "/v1/p%3Fx=1%23y");
        assert_eq!(url.query(), Some("after=3%26x%3D4"));
        // A base with a path prefix keeps it.
        let base = Url::parse("http://gw.example/prismnet").unwrap();
        assert_eq!(Client::url(&base, &seg(&["v1", "watch"]), &[]).path(), "/prismnet/v1/watch");
    }

    #[test]
    fn endpoints_are_checked() {
        assert!(matches!(Client::new::<&str>("x", &[]), Err(ClientError::Invalid(_))));
        assert!(matches!(Client::from_list("x", " , "), Err(ClientError::Invalid(_))));
        assert!(matches!(Client::new("x", &["http://bad host:1"]), Err(ClientError::Invalid(_))));
        let c = Client::from_list("prismnet", "127.0.0.1:1, http://127.0.0.2:2/").unwrap();
        assert_eq!(c.bases.len(), 2);
    }

    #[test]
    fn error_answers_are_decoded() {
        let c = Client::new("prismnet", &["127.0.0.1:1"]).unwrap();
        let e = c.refused(StatusCode::NOT_FOUND, br#"{"error":{"code":"not_found","message":"port 'x' not found"}}"#);
        assert!(e.is_not_found() && e.is_refusal());
        assert_eq!(e.to_string(), "port 'x' not found (not_found, HTTP 404)");
        let e = c.refused(StatusCode::BAD_GATEWAY, b"upstream down\nmore");
        assert_eq!(e.to_string(), "upstream down (bad_gateway, HTTP 502)");
        assert!(!e.is_refusal());
    }

    /// A replica on 127.0.0.1 whose routes count their calls: `/ok` answers, `/fail` answers
    /// 503, `/auth` wants the token `fresh`.
    async fn replica(fail: bool) -> (String, Arc<AtomicUsize>) {
        use axum::routing::{get, post};
        let calls = Arc::new(AtomicUsize::new(0));
        let answer = move |calls: Arc<AtomicUsize>| async move {
            calls.fetch_add(1, Ordering::SeqCst);
            if fail {
                (StatusCode::SERVICE_UNAVAILABLE, r#"{"error":{"code":"unavailable","message":"not ready"}}"#)
            } else {
                (StatusCode::OK, r#"{"n":1}"#)
            }
        };
        let (a, b) = (calls.clone(), calls.clone());
        let app = axum::Router::new()
            .route("/ok", get(move || answer(a.clone())).merge(post(move || answer(b.clone()))))
            .route(
                "/auth",
                get(|h: HeaderMap| async move {
                    let fresh = h.get("authorization").is_some_and(|v| v == "Bearer fresh");
                    if fresh { StatusCode::OK } else { StatusCode::UNAUTHORIZED }
                }),
            );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (format!("http://{addr}"), calls)
    }

    /// Hands out `stale` until asked to renew, then `fresh`.
    struct Renewing(AtomicUsize);

    impl Credentials for Renewing {
        fn token(&self, renew: bool) -> TokenFuture<'_> {
            if renew {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
            let t = if self.0.load(Ordering::SeqCst) > 0 { "fresh" } else { "stale" };
            Box::pin(async move { Ok(t.to_owned()) })
        }
    }

    #[tokio::test]
    async fn fails_over_retries_what_is_safe_and_renews_a_refused_token() {
        let (down, down_calls) = replica(true).await;
        let (up, up_calls) = replica(false).await;
        // A GET moves past the failing replica, and the next call starts at the one that answered.
        let c = Client::new("svc", &[&down, &up]).unwrap();
        let v: serde_json::Value = c.get(&["ok"]).fetch().await.unwrap();
        assert_eq!(v["n"], 1);
        c.get(&["ok"]).done().await.unwrap();
        assert_eq!((down_calls.load(Ordering::SeqCst), up_calls.load(Ordering::SeqCst)), (1, 2));

        // Only failing replicas: a GET makes every round, then says what failed last.
        let c = Client::new("svc", &[&down]).unwrap().with_rounds(3);
        let e = c.get(&["ok"]).done().await.unwrap_err();
        assert!(matches!(&e, ClientError::Unavailable { detail, .. } if detail.contains("not ready")), "{e}");
        assert_eq!(down_calls.load(Ordering::SeqCst), 1 + 3);
        // A plain POST that reached a server is not repeated; with an Idempotency-Key it is.
        let e = c.post(&["ok"]).done().await.unwrap_err();
        assert_eq!(e.status(), Some(503));
        assert_eq!(down_calls.load(Ordering::SeqCst), 1 + 3 + 1);
        c.post(&["ok"]).idempotency_key("k1").done().await.unwrap_err();
        assert_eq!(down_calls.load(Ordering::SeqCst), 1 + 3 + 1 + 3);
        // Nothing listening: a POST is moved on (it never reached a server).
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let c = Client::new("svc", &[format!("http://{closed}"), up.clone()]).unwrap();
        c.post(&["ok"]).done().await.unwrap();

        // A refused token is renewed once, and the call repeated with the new one.
        let creds = Arc::new(Renewing(AtomicUsize::new(0)));
        let c = Client::new("svc", &[&up]).unwrap().with_credentials(creds.clone());
        c.get(&["auth"]).done().await.unwrap();
        assert_eq!(creds.0.load(Ordering::SeqCst), 1);
        // Without credentials to renew, the 401 is the answer.
        let e = Client::new("svc", &[&up]).unwrap().get(&["auth"]).done().await.unwrap_err();
        assert_eq!(e.status(), Some(401));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for round in 1..10 {
            let d = backoff(round).as_millis();
            let base = (200u128 << (round - 1).min(4)).min(2_000);
            assert!(d >= base / 2 && d <= base, "round {round}: {d} ms");
        }
        assert_ne!(idempotency_key(), idempotency_key());
        assert_eq!(idempotency_key().len(), 32);
    }
}
