//! `ultracloud login`, `logout`, `whoami`: the CLI's session with iam.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::bail;
use clap::Args;
use ultracloud_iam::api::{LogoutRequest, TokenRequest};

use super::session::{self, Credentials, DEFAULT_IAM, Session};

/// Log in to iam and store the session for later commands (in ~/.config/ultracloud, mode 0600).
/// The password comes from --password-file, else ULTRACLOUD_PASSWORD, else the terminal
/// (or the first line of stdin). With --api-key-file (or ULTRACLOUD_API_KEY) logs in as the
/// key's owner instead.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// iam's URL (`host:port` means https:// with a cluster CA, else http://).
    #[arg(long, env = "ULTRACLOUD_IAM", default_value = DEFAULT_IAM)]
    iam: String,
    /// User name.
    #[arg(long, short, default_value = "admin")]
    user: String,
    /// Read the password from this file (e.g. the admin-password file iam wrote).
    #[arg(long, value_name = "FILE", conflicts_with = "api_key_file")]
    password_file: Option<PathBuf>,
    /// Log in with the API key in this file.
    #[arg(long, value_name = "FILE")]
    api_key_file: Option<PathBuf>,
    /// The cluster CA certificate (ca.pem) to trust when the platform speaks TLS; stored with
    /// the session, so later commands trust it too.
    #[arg(long, env = "ULTRACLOUD_CA_FILE", value_name = "FILE")]
    ca_file: Option<PathBuf>,
}

/// Runs `login`.
pub async fn login(args: LoginArgs) -> anyhow::Result<ExitCode> {
    let ca_file = match &args.ca_file {
        Some(f) => Some(std::fs::canonicalize(f).map_err(|e| anyhow::anyhow!("--ca-file {}: {e}", f.display()))?),
        None => None,
    };
    session::trust_cluster_ca(ca_file.as_deref())?;
    let iam = ultracloud_tls::client::with_scheme(&args.iam);
    let http = ultracloud_tls::client::http_client();
    let use_key = args.api_key_file.is_some() || std::env::var_os("ULTRACLOUD_API_KEY").is_some();
    let body = if use_key {
        let key = session::read_secret(args.api_key_file.as_deref(), "ULTRACLOUD_API_KEY", "API key")?;
        TokenRequest::ApiKey { api_key: key }
    } else {
        let pw = session::read_secret(args.password_file.as_deref(), "ULTRACLOUD_PASSWORD", "Password")?;
        if pw.is_empty() {
            bail!("no password given");
        }
        TokenRequest::Password { username: args.user, password: pw }
    };
    let issued = session::grant(&http, &iam, &body).await?;
    // Ask who we are: for an API key the owner is only known to iam.
    let me: serde_json::Value =
        http.get(format!("{iam}/v1/auth/whoami")).bearer_auth(&issued.access_token).send().await?.json().await?;
    let subject = me["claims"]["sub"].as_str().unwrap_or("?").to_owned();
    let mut creds = Credentials::from_issued(&iam, subject.clone(), &issued);
    creds.ca_file = ca_file;
    let path = creds.save()?;
    println!("logged in to {iam} as {subject}; session stored in {}", path.display());
    Ok(ExitCode::SUCCESS)
}

/// End the session: revoke its tokens at iam and forget them here.
#[derive(Debug, Args)]
pub struct LogoutArgs {}

/// Runs `logout`.
pub async fn logout(_args: LogoutArgs) -> anyhow::Result<ExitCode> {
    let Some(creds) = Credentials::load()? else {
        println!("not logged in");
        return Ok(ExitCode::SUCCESS);
    };
    session::trust_cluster_ca(creds.ca_file.as_deref())?;
    // Revoke at iam when it can be reached; forget locally in any case.
    let revoked = ultracloud_tls::client::http_client()
        .post(format!("{}/v1/auth/logout", creds.iam))
        .bearer_auth(&creds.access_token)
        .json(&LogoutRequest { refresh_token: Some(creds.refresh_token.clone()) })
        .send()
        .await
        .is_ok_and(|r| r.status().is_success());
    Credentials::forget()?;
    if revoked {
        println!("logged out; the session's tokens are revoked");
    } else {
        println!("logged out here; iam could not revoke the session (its access token expires by itself)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Show who the current session is and its role bindings.
#[derive(Debug, Args)]
pub struct WhoamiArgs {
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `whoami`.
pub async fn whoami(args: WhoamiArgs) -> anyhow::Result<ExitCode> {
    let s = Session::open(None).await?;
    let me = s.iam(reqwest::Method::GET, "/v1/auth/whoami").await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&me)?);
        return Ok(ExitCode::SUCCESS);
    }
    let c = &me["claims"];
    println!("subject: {}", super::table::cell(&c["sub"]));
    println!("tenant:  {}", super::table::cell(&c["tenant"]));
    println!("iam:     {}", s.iam);
    let rows: Vec<Vec<String>> = me["bindings"]
        .as_array()
        .map(|bs| bs.iter().map(|b| vec![super::table::cell(&b["role"]), super::table::scope(&b["scope"])]).collect())
        .unwrap_or_default();
    super::table::print(&["ROLE", "SCOPE"], &rows);
    Ok(ExitCode::SUCCESS)
}
