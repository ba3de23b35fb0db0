//! The mutual-TLS listener for peer backends: a client certificate chaining to the configured
//! CA is required, and its subject's common name names the peer's region, passed on to the API
//! as [`Peer`].

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use hyper_util::service::TowerToHyperService;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tower::ServiceExt as _;

use super::{TlsError, certificates, provider};
use crate::domain::access::Peer;

/// The server's TLS settings: its certificate and key, and the CA that client certificates
/// must chain to (a client without one is refused during the handshake).
pub fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: &Path,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for ca in certificates(client_ca)? {
        roots.add(ca).map_err(|e| TlsError::Config(e.to_string()))?;
    }
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::Config(e.to_string()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|_| TlsError::Pem(key.display().to_string()))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(certificates(cert)?, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(config))
}

/// The region a client certificate names: its subject common name, if that is a region ID.
pub fn peer_of(certificate: &CertificateDer<'_>) -> Option<Peer> {
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref()).ok()?;
    let common_name = parsed.subject().iter_common_name().next()?.as_str().ok()?;
    common_name.parse().ok().map(Peer)
}

/// Serves `app` on `listener` to clients with a certificate from the configured CA. Each
/// request carries the client's [`Peer`] (when its certificate names a region) and address.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
) -> std::io::Result<()> {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, address) = listener.accept().await?;
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let stream = match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp))
                .await
            {
                Ok(Ok(stream)) => stream,
                Ok(Err(e)) => return tracing::info!(%address, error = %e, "TLS handshake refused"),
                Err(_) => return tracing::info!(%address, "TLS handshake timed out"),
            };
            let peer = stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(peer_of);
            let service =
                app.map_request(move |mut request: hyper::Request<hyper::body::Incoming>| {
                    request.extensions_mut().insert(ConnectInfo(address));
                    if let Some(peer) = peer {
                        request.extensions_mut().insert(peer);
                    }
                    request
                });
            let served = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service))
                .await;
            if let Err(e) = served {
                tracing::debug!(%address, error = %e, "backend connection ended");
            }
        });
    }
}
