//! The CLI's session: the tokens `ultracloud login` stored, and an HTTP client that sends
//! them, renewing the access token with the refresh token when it is about to expire or is
//! refused, before any request (so a command that waits for minutes outlives the token).
//!
//! Credentials live in `$ULTRACLOUD_CONFIG_DIR/credentials.json` (default
//! `~/.config/ultracloud/`), mode 0600. `ULTRACLOUD_TOKEN` overrides them for scripts.

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use ultracloud_iam::api::{Issued, TokenRequest};

/// Where iam is when nothing says otherwise (`https://` when a cluster CA is trusted).
pub const DEFAULT_IAM: &str = "127.0.0.1:8480";

/// What `ultracloud login` stores.
#[derive(Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// iam's base URL.
    pub iam: String,
    /// Who logged in (for `whoami` without a round trip).
    pub subject: String,
    /// The access token.
    pub access_token: String,
    /// When it expires (seconds since the epoch).
    pub expires_at: u64,
    /// The refresh token.
    pub refresh_token: String,
    /// The cluster CA certificate this session trusts (given to `login --ca-file`); none: the
    /// platform speaks plain HTTP (a loopback quickstart).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// The credentials file.
pub fn path() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("ULTRACLOUD_CONFIG_DIR") {
        return Ok(PathBuf::from(dir).join("credentials.json"));
    }
    let home = std::env::var_os("HOME").ok_or_else(|| anyhow!("HOME is not set; set ULTRACLOUD_CONFIG_DIR"))?;
    Ok(PathBuf::from(home).join(".config/ultracloud/credentials.json"))
}

impl Credentials {
    /// The stored credentials, if any.
    pub fn load() -> anyhow::Result<Option<Self>> {
        let path = path()?;
        match ultracloud_runtime::secret_file::read(&path) {
            Ok(b) => Ok(Some(serde_json::from_str(&b).with_context(|| format!("{} is corrupt", path.display()))?)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(anyhow!("{}: {e}", path.display())),
        }
    }

    /// Stores them (0600).
    pub fn save(&self) -> anyhow::Result<PathBuf> {
        let path = path()?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let text = serde_json::to_string_pretty(self)?;
        ultracloud_runtime::secret_file::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        Ok(path)
    }

    /// Removes the stored credentials.
    pub fn forget() -> anyhow::Result<()> {
        match std::fs::remove_file(path()?) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Credentials from a token answer of `POST /v1/auth/token`.
    pub fn from_issued(iam: &str, subject: String, issued: &Issued) -> Self {
        Self {
            iam: iam.to_owned(),
            subject,
            access_token: issued.access_token.clone(),
            expires_at: ultracloud_runtime::clock::now_secs() + issued.expires_in,
            refresh_token: issued.refresh_token.clone(),
            ca_file: None,
        }
    }
}

/// Makes every client of this process trust the cluster CA in `ULTRACLOUD_CA_FILE`, else in
/// `stored` (the session's), when either is set.
pub fn trust_cluster_ca(stored: Option<&std::path::Path>) -> anyhow::Result<Option<PathBuf>> {
    let ca = std::env::var_os("ULTRACLOUD_CA_FILE").map(PathBuf::from).or_else(|| stored.map(PathBuf::from));
    if let Some(ca) = &ca {
        ultracloud_tls::client::install_trust(ca).with_context(|| format!("the cluster CA {}", ca.display()))?;
    }
    Ok(ca)
}

/// An error answer, as `code: message`.
pub async fn error_of(resp: reqwest::Response) -> anyhow::Error {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    match (body["error"]["code"].as_str(), body["error"]["message"].as_str()) {
        (Some(code), Some(msg)) => anyhow!("{msg} ({code}, HTTP {})", status.as_u16()),
        _ => anyhow!("HTTP {status}"),
    }
}

/// Exchanges a grant for tokens.
pub async fn grant(http: &reqwest::Client, iam: &str, body: &TokenRequest) -> anyhow::Result<Issued> {
    let resp = http
        .post(format!("{iam}/v1/auth/token"))
        .json(body)
        .send()
        .await
        .with_context(|| format!("cannot reach iam at {iam}"))?;
    if !resp.status().is_success() {
        return Err(error_of(resp).await);
    }
    Ok(resp.json().await?)
}

/// An authenticated client of the platform's APIs.
pub struct Session {
    /// The HTTP client.
    pub http: reqwest::Client,
    /// iam's base URL.
    pub iam: String,
    auth: tokio::sync::Mutex<Auth>,
}

/// Where the access token comes from.
enum Auth {
    /// `ULTRACLOUD_TOKEN`: used as it is.
    Fixed(String),
    /// The stored credentials: renewed with the refresh token (and stored again) when the
    /// access token is about to expire or is refused, so a long command (a `--wait`) outlives it.
    Stored(Credentials),
}

/// Renews credentials with their refresh token and stores the result.
async fn renew(http: &reqwest::Client, creds: &Credentials) -> anyhow::Result<Credentials> {
    let body = TokenRequest::RefreshToken { refresh_token: creds.refresh_token.clone() };
    let issued = grant(http, &creds.iam, &body)
        .await
        .map_err(|e| anyhow!("the session has ended ({e}); run `ultracloud login`"))?;
    let mut renewed = Credentials::from_issued(&creds.iam, creds.subject.clone(), &issued);
    renewed.ca_file = creds.ca_file.clone();
    renewed.save()?;
    Ok(renewed)
}

impl Session {
    /// The session of `ULTRACLOUD_TOKEN`, else of the stored credentials (refreshed when the
    /// access token has expired).
    pub async fn open(iam_override: Option<&str>) -> anyhow::Result<Self> {
        if let Ok(token) = std::env::var("ULTRACLOUD_TOKEN") {
            trust_cluster_ca(None)?;
            let http = ultracloud_tls::client::http_client();
            let iam = ultracloud_tls::client::with_scheme(iam_override.unwrap_or(DEFAULT_IAM));
            return Ok(Self { http, iam, auth: tokio::sync::Mutex::new(Auth::Fixed(token)) });
        }
        let Some(mut creds) = Credentials::load()? else {
            bail!("not logged in: run `ultracloud login` (or set ULTRACLOUD_TOKEN)");
        };
        trust_cluster_ca(creds.ca_file.as_deref())?;
        if let Some(iam) = iam_override {
            creds.iam = ultracloud_tls::client::with_scheme(iam);
        }
        let http = ultracloud_tls::client::http_client();
        let session = Self { http, iam: creds.iam.clone(), auth: tokio::sync::Mutex::new(Auth::Stored(creds)) };
        session.token(false).await?;
        Ok(session)
    }

    /// The access token to send, renewed first when it expires within 10 s or when `refused`
    /// (the API answered 401 to it); `ULTRACLOUD_TOKEN` is sent as it is.
    async fn token(&self, refused: bool) -> anyhow::Result<String> {
        let mut auth = self.auth.lock().await;
        match &mut *auth {
            Auth::Fixed(t) => Ok(t.clone()),
            Auth::Stored(creds) => {
                if refused || creds.expires_at <= ultracloud_runtime::clock::now_secs() + 10 {
                    *creds = renew(&self.http, creds).await?;
                }
                Ok(creds.access_token.clone())
            }
        }
    }

    /// Sends a request to `base + path` and returns the JSON answer (null for 204), or the
    /// API's error as an error. A 401 to stored credentials renews them and tries once more.
    pub async fn call(
        &self,
        method: reqwest::Method,
        base: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> anyhow::Result<Value> {
        let send = async |token: String| {
            let mut req = self.http.request(method.clone(), format!("{base}{path}")).bearer_auth(token);
            if let Some(b) = &body {
                req = req.header(reqwest::header::CONTENT_TYPE, "application/json").body(b.clone());
            }
            req.send().await.with_context(|| format!("cannot reach {base}"))
        };
        let mut resp = send(self.token(false).await?).await?;
        if resp.status() == reqwest::StatusCode::UNAUTHORIZED && matches!(&*self.auth.lock().await, Auth::Stored(_)) {
            resp = send(self.token(true).await?).await?;
        }
        if !resp.status().is_success() {
            return Err(error_of(resp).await);
        }
        if resp.status() == reqwest::StatusCode::NO_CONTENT {
            return Ok(Value::Null);
        }
        // JSON, or a text answer (a console log) as a string.
        let text = resp.text().await.unwrap_or_default();
        Ok(serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// [`Session::call`] against iam.
    ///
    /// (Services other than iam are called through their typed clients, with the session as
    /// their [`ultracloud_resource::client::Credentials`].)
    pub async fn iam(&self, method: reqwest::Method, path: &str) -> anyhow::Result<Value> {
        self.call(method, &self.iam, path, None).await
    }

    /// [`Session::iam`] with a request body: one of iam's wire types (`ultracloud_iam::api`).
    pub async fn iam_send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: &impl serde::Serialize,
    ) -> anyhow::Result<Value> {
        self.call(method, &self.iam, path, Some(serde_json::to_vec(body)?)).await
    }

    /// Every item of a paginated list at iam.
    pub async fn iam_list(&self, path: &str) -> anyhow::Result<Vec<Value>> {
        let mut items = Vec::new();
        let mut token: Option<String> = None;
        let sep = if path.contains('?') { '&' } else { '?' };
        loop {
            let page_path = match &token {
                Some(t) => format!("{path}{sep}limit=1000&page_token={t}"),
                None => format!("{path}{sep}limit=1000"),
            };
            let page = self.iam(reqwest::Method::GET, &page_path).await?;
            items.extend(page["items"].as_array().cloned().unwrap_or_default());
            match page["next_page_token"].as_str() {
                Some(t) => token = Some(t.to_owned()),
                None => return Ok(items),
            }
        }
    }
}

impl ultracloud_resource::client::Credentials for Session {
    fn token(&self, renew: bool) -> ultracloud_resource::client::TokenFuture<'_> {
        // A fixed token (`ULTRACLOUD_TOKEN`) is sent again as it is; the 401 then stands.
        Box::pin(async move { Session::token(self, renew).await.map_err(|e| e.to_string()) })
    }
}

/// Reads a secret: from a file, else an environment variable, else the terminal without echo.
pub fn read_secret(file: Option<&std::path::Path>, env: &str, prompt: &str) -> anyhow::Result<String> {
    if let Some(f) = file {
        return ultracloud_runtime::secret_file::read(f).with_context(|| format!("reading {}", f.display()));
    }
    if let Ok(v) = std::env::var(env) {
        return Ok(v);
    }
    use std::io::{BufRead, IsTerminal, Write};
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        let mut line = String::new();
        stdin.lock().read_line(&mut line)?;
        return Ok(line.trim_end_matches(['\r', '\n']).to_owned());
    }
    eprint!("{prompt}: ");
    std::io::stderr().flush()?;
    use nix::sys::termios::{LocalFlags, SetArg, tcgetattr, tcsetattr};
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_flags.remove(LocalFlags::ECHO);
    tcsetattr(&stdin, SetArg::TCSANOW, &quiet)?;
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    tcsetattr(&stdin, SetArg::TCSANOW, &saved)?;
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}
