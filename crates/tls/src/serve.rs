//! Serving an axum router over TLS: each accepted connection does its handshake in a task of
//! its own (a slow or hostile client never holds up the accept loop), and every request
//! carries the peer's address (`ConnectInfo<SocketAddr>`) and, where the client presented a
//! certificate, its [`PeerIdentity`] as a request extension.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
pub use tokio_rustls::TlsAcceptor;
pub use tokio_rustls::server::TlsStream;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::identity::{PeerIdentity, Role};

/// A client that has not finished its handshake by then is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `router` over TLS on `listener` until `shutdown`, then lets in-flight requests end.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    config: Arc<rustls::ServerConfig>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(config);
    let tracker = TaskTracker::new();
    loop {
        let (tcp, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of descriptors and the like: wait instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = shutdown.cancelled() => break,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, router, shutdown) = (acceptor.clone(), router.clone(), shutdown.clone());
        tracker.spawn(async move {
            let Some((tls, identity)) = handshake(&acceptor, tcp, remote).await else { return };
            let svc = router.map_request(move |mut req: Request<hyper::body::Incoming>| {
                req.extensions_mut().insert(ConnectInfo(remote));
                if let Some(id) = &identity {
                    req.extensions_mut().insert(id.clone());
                }
                req
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tls), TowerToHyperService::new(svc))
                .with_upgrades();
            tokio::pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r { tracing::debug!(peer = %remote, error = %e, "connection ended with an error"); }
                }
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = conn.await;
                }
            }
        });
    }
    tracker.close();
    tracker.wait().await;
    Ok(())
}

/// A TLS-ready connection: `tls` and the identity its client certificate names, if any.
pub type Handshaken = (TlsStream<TcpStream>, Option<PeerIdentity>);

/// Takes an accepted connection through the TLS handshake (bounded in time). `None` when the
/// client spoke plain HTTP (answered with a 400 saying to use TLS), failed or timed out.
pub async fn handshake(acceptor: &TlsAcceptor, tcp: TcpStream, remote: std::net::SocketAddr) -> Option<Handshaken> {
    if !answer_cleartext(&tcp, remote).await {
        return None;
    }
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(peer = %remote, error = %e, "TLS handshake refused");
            return None;
        }
        Err(_) => {
            tracing::debug!(peer = %remote, "TLS handshake timed out");
            return None;
        }
    };
    let identity = tls.get_ref().1.peer_certificates().and_then(|c| c.first()).and_then(|c| PeerIdentity::from_der(c));
    Some((tls, identity))
}

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

/// Whether `tcp` starts a TLS handshake. A client speaking plain HTTP to this TLS port gets a
/// 400 saying so (as nginx does) instead of a dropped connection it would retry.
async fn answer_cleartext(tcp: &TcpStream, remote: std::net::SocketAddr) -> bool {
    let mut first = [0u8; 1];
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, tcp.peek(&mut first)).await {
        Ok(Ok(1)) if first[0] == TLS_HANDSHAKE => true,
        Ok(Ok(1)) if first[0].is_ascii_uppercase() => {
            tracing::debug!(peer = %remote, "plain HTTP on a TLS port");
            let body = r#"{"error":{"code":"tls_required","message":"this port speaks TLS only: use https:// and the cluster CA (a TLS directory)"}}"#;
            let answer = format!(
                "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = tcp.try_write(answer.as_bytes());
            false
        }
        _ => false,
    }
}

/// Serves `router` on `listener`: over TLS with `config`, or plain HTTP without one.
pub async fn serve_maybe_tls(
    listener: TcpListener,
    router: Router,
    config: Option<Arc<rustls::ServerConfig>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    match config {
        Some(config) => serve(listener, router, config, shutdown).await,
        None => ultracloud_runtime::admin::serve(listener, router, shutdown).await,
    }
}

/// Middleware (`axum::middleware::from_fn_with_state(ROLES, require_role)`) that admits only
/// requests whose client certificate holds one of the roles; 403 otherwise, naming the need.
pub async fn require_role(
    axum::extract::State(roles): axum::extract::State<&'static [Role]>,
    req: Request,
    next: Next,
) -> Response {
    match req.extensions().get::<PeerIdentity>() {
        Some(id) if id.is(roles) => next.run(req).await,
        found => {
            let who = found.map_or_else(|| "no client certificate".to_owned(), |id| format!("the certificate of {id}"));
            let need: Vec<&str> = roles.iter().map(|r| r.as_str()).collect();
            let message =
                format!("{who} may not use this route (it needs a cluster certificate of role {})", need.join(" or "));
            ultracloud_runtime::ApiError::new(StatusCode::FORBIDDEN, "forbidden", message).into_response()
        }
    }
}

/// Serves a service's API `router` (with the runtime's JSON 404 and request metrics) until the
/// service shuts down: over TLS when the service has a TLS directory, else plain HTTP.
pub async fn serve_api(
    ctx: &ultracloud_runtime::ServiceContext,
    listener: TcpListener,
    router: Router,
    tls: Option<&crate::ServerTls>,
) -> std::io::Result<()> {
    serve_maybe_tls(listener, ctx.api_router(router), tls.map(|t| t.config.clone()), ctx.shutdown.clone()).await
}
