//! The HTTP listeners of a region: the public one (phones, health authorities, operators),
//! HTTP/1.1 in clear, and the backend one for peers, mutual TLS with HTTP/1.1 or HTTP/2.
//!
//! Both shed abuse the same way: a client has [`Limits::header_timeout`] to send each request's
//! headers (which also closes idle keep-alive connections), a TLS client has
//! [`Limits::handshake_timeout`] for its handshake, and at most [`Limits::max_connections`] are
//! open at once; a connection beyond that is closed as soon as it is accepted, and logged. The
//! time a request's body may take is the API's business (it knows which routes read one).

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulConnection, GracefulShutdown};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::tls::listener::peer_of;
use crate::domain::access::Peer;

/// How much a client may take of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Time to send a request's headers; also how long a keep-alive connection may sit idle
    /// between requests.
    pub header_timeout: Duration,
    /// Time to complete a TLS handshake (backend listener).
    pub handshake_timeout: Duration,
    /// Connections open at once; more are closed on arrival.
    pub max_connections: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            handshake_timeout: Duration::from_secs(10),
            max_connections: 512,
        }
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets open requests finish.
/// With `tls`, clients must present a certificate the TLS settings accept; each request then
/// carries the [`Peer`] its certificate names, besides the client's address.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    tls: Option<Arc<rustls::ServerConfig>>,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let refused = Arc::new(AtomicU64::new(0));
    let acceptor = tls.map(TlsAcceptor::from);
    let graceful = GracefulShutdown::new();
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout);
    if acceptor.is_none() {
        // No HTTP/2 in clear: it is for peers, over TLS.
        http = http.http1_only();
    }
    tokio::pin!(shutdown);
    loop {
        let (tcp, address) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // Out of file descriptors, say: wait a moment rather than spin.
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Answers go out whole at once: no waiting for the client's acknowledgement first.
        let _ = tcp.set_nodelay(true);
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            let count = refused.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged at the first refusal and then every thousandth, so a flood cannot flood
            // the log too.
            if count % 1000 == 1 {
                tracing::warn!(
                    %address,
                    max_connections = limits.max_connections,
                    refused = count,
                    "connection limit reached: closing new connections"
                );
            }
            drop(tcp);
            continue;
        };
        let app = app.clone();
        let http = http.clone();
        let acceptor = acceptor.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let _slot = slot;
            let Some(acceptor) = acceptor else {
                let connection = serve_connection(&http, tcp, app, address, None);
                return log_end(address, watcher.watch(connection).await);
            };
            let stream =
                match tokio::time::timeout(limits.handshake_timeout, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => stream,
                    Ok(Err(e)) => {
                        return tracing::info!(%address, error = %e, "TLS handshake refused");
                    }
                    Err(_) => return tracing::info!(%address, "TLS handshake timed out"),
                };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(peer_of);
            let connection = serve_connection(&http, stream, app, address, peer);
            log_end(address, watcher.watch(connection).await);
        });
    }
    graceful.shutdown().await;
    Ok(())
}

type ConnectionError = Box<dyn std::error::Error + Send + Sync>;

/// One connection's requests, each with the client's address and, over mutual TLS, its peer.
fn serve_connection<'a, S>(
    http: &'a auto::Builder<TokioExecutor>,
    stream: S,
    app: Router,
    address: SocketAddr,
    peer: Option<Peer>,
) -> impl GracefulConnection<Error = ConnectionError> + Send + 'a
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service = app.map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
        request.extensions_mut().insert(ConnectInfo(address));
        if let Some(peer) = peer {
            request.extensions_mut().insert(peer);
        }
        request
    });
    http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
}

fn log_end(address: SocketAddr, ended: Result<(), ConnectionError>) {
    if let Err(e) = ended {
        tracing::debug!(%address, error = %e, "connection ended");
    }
}
