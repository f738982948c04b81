//! A router served over TLS with client certificates required: who gets in and who does not.

#![allow(clippy::unwrap_used, clippy::expect_used)] // a panic is the failure report in tests

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use axum::Router;
use axum::extract::ConnectInfo;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use ultracloud_tls::serve::{require_role, serve};
use ultracloud_tls::{CertAuthority, ClientAuth, ClusterTls, IssueRequest, PeerIdentity, Role};

const PEERS: &[Role] = &[Role::ControlPlane, Role::Admin];

fn issue(ca: &CertAuthority, root: &Path, name: &str, role: Role) -> ClusterTls {
    let mut req = IssueRequest::new(name, role);
    req.ips = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    req.dns = vec!["localhost".into()];
    ClusterTls::load(&ca.issue(&req, &root.join(name)).unwrap()).unwrap()
}

async fn whoami(
    axum::Extension(id): axum::Extension<PeerIdentity>,
    ConnectInfo(addr): ConnectInfo<std::net::SocketAddr>,
) -> String {
    format!("{} {} {}", id.name, id.role, addr.ip())
}

#[tokio::test]
async fn only_certificates_of_the_cluster_ca_in_an_allowed_role_get_in() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertAuthority::create("test cluster").unwrap();
    ca.save(&dir.path().join("ca")).unwrap();
    let server = issue(&ca, dir.path(), "node01", Role::ControlPlane);
    let peer = issue(&ca, dir.path(), "node02", Role::ControlPlane);
    let worker = issue(&ca, dir.path(), "node04", Role::Worker);
    let operator = issue(&ca, dir.path(), "alice", Role::Admin);
    let other_ca = CertAuthority::create("someone else").unwrap();
    let stranger = issue(&other_ca, dir.path(), "mallory", Role::ControlPlane);

    let router =
        Router::new().route("/who", get(whoami)).layer(axum::middleware::from_fn_with_state(PEERS, require_role));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let stop = CancellationToken::new();
    let task = tokio::spawn(serve(listener, router, server.server_config(ClientAuth::Required).unwrap(), stop.clone()));
    let url = format!("https://127.0.0.1:{}/who", addr.port());
    let get = |tls: &ClusterTls| {
        let client = tls.http_client_builder().unwrap().build().unwrap();
        let url = url.clone();
        async move { client.get(url).send().await }
    };

    let r = get(&peer).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "node02 control-plane 127.0.0.1");
    assert_eq!(get(&operator).await.unwrap().status(), 200);
    // A worker's certificate is the cluster's, but not of a role this route admits.
    let r = get(&worker).await.unwrap();
    assert_eq!(r.status(), 403);
    assert!(r.text().await.unwrap().contains("node04 (worker)"));
    // Another CA's certificate, no certificate at all, and plain HTTP never get an answer.
    assert!(get(&stranger).await.is_err(), "a certificate from another CA");
    let trusting = reqwest::Client::builder()
        .use_preconfigured_tls(ultracloud_tls::trust_only(&dir.path().join("ca/ca.pem")).unwrap())
        .build()
        .unwrap();
    assert!(trusting.get(&url).send().await.is_err(), "no client certificate");
    let plain = reqwest::Client::new().get(format!("http://127.0.0.1:{}/who", addr.port())).send().await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true), "plain HTTP");

    stop.cancel();
    task.await.unwrap().unwrap();
}

#[test]
fn a_loaded_directory_knows_its_holder_and_its_key_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = CertAuthority::create("c").unwrap();
    ca.save(&dir.path().join("ca")).unwrap();
    let reloaded = CertAuthority::load(&dir.path().join("ca")).unwrap();
    let tls = issue(&reloaded, dir.path(), "node05", Role::Worker);
    assert_eq!(tls.identity(), Some(&PeerIdentity { name: "node05".into(), role: Role::Worker }));
    let key = dir.path().join("node05/key.pem");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // A key made readable by others is tightened on the next load.
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    ClusterTls::load(&dir.path().join("node05")).unwrap();
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    // A certificate whose key is another's is refused at load, naming the directory.
    std::fs::copy(dir.path().join("ca/ca.pem"), dir.path().join("node05/cert.pem")).unwrap();
    let err = ClusterTls::load(&dir.path().join("node05")).unwrap_err().to_string();
    assert!(err.contains("node05"), "{err}");
}
