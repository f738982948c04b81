//! The listeners' connections and what every request on them passes first.
//!
//! Connections are accepted here rather than by tonic so that each is read through
//! [`AuthorityFix`] *after* TLS (etcdctl's URL authorities live inside the encrypted stream), and
//! so that the client certificate's identity travels with every request as [`ConnInfo`]. TLS
//! handshakes run in tasks of their own: a slow client never holds up the accept loop.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::Stream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::either::Either;
use tokio_util::sync::CancellationToken;
use ultracloud_tls::serve::{TlsAcceptor, TlsStream};
use ultracloud_tls::{PeerIdentity, Role};

use super::authority::AuthorityFix;

/// Connections accepted but not yet taken by the server.
const BACKLOG: usize = 64;

/// Who is on the other end of a connection; in every request's extensions.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    /// The client's address.
    pub remote: SocketAddr,
    /// The identity its TLS client certificate names (none without TLS).
    pub identity: Option<PeerIdentity>,
}

/// An accepted connection, ready for the HTTP/2 (or HTTP/1) server.
pub struct Conn {
    io: AuthorityFix<Either<TcpStream, TlsStream<TcpStream>>>,
    info: ConnInfo,
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

/// The connections accepted on `listener`, through a TLS handshake when `tls` is given, until
/// `shutdown`. The stream owns the listener: when the server drops it, the port is free at once
/// (a member restarted in the same process binds it again).
pub fn incoming(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
) -> impl Stream<Item = io::Result<Conn>> {
    let (handshaken, done) = mpsc::channel::<Conn>(BACKLOG);
    let state = Accepting { listener, tls, shutdown, handshaken, done };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            let (tcp, remote) = tokio::select! {
                accepted = st.listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of descriptors and the like: wait instead of spinning.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                },
                Some(conn) = st.done.recv() => return Some((Ok(conn), st)),
                () = st.shutdown.cancelled() => return None,
            };
            // Small gRPC answers must not wait for the client's delayed ACK (40 ms on Linux).
            let _ = tcp.set_nodelay(true);
            let Some(acceptor) = st.tls.clone() else {
                let conn = Conn { io: AuthorityFix::new(Either::Left(tcp)), info: ConnInfo { remote, identity: None } };
                return Some((Ok(conn), st));
            };
            let handshaken = st.handshaken.clone();
            tokio::spawn(async move {
                if let Some((tls, identity)) = ultracloud_tls::serve::handshake(&acceptor, tcp, remote).await {
                    let conn = Conn { io: AuthorityFix::new(Either::Right(tls)), info: ConnInfo { remote, identity } };
                    let _ = handshaken.send(conn).await;
                }
            });
        }
    })
}

/// The accept loop's state: the listener, and the connections whose handshake finished.
struct Accepting {
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: CancellationToken,
    handshaken: mpsc::Sender<Conn>,
    done: mpsc::Receiver<Conn>,
}

/// Middleware (`from_fn_with_state(ROLES, require_role)`) admitting only requests whose client
/// certificate holds one of the roles; others get a gRPC status naming what is missing.
pub async fn require_role(State(roles): State<&'static [Role]>, req: Request, next: Next) -> Response {
    let identity = req.extensions().get::<ConnInfo>().and_then(|c| c.identity.as_ref());
    match crate::tls::check(roles, identity) {
        Ok(()) => next.run(req).await,
        Err(status) => status.into_http::<axum::body::Body>().into_response(),
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}
