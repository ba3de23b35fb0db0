//! Mutual TLS between backends (SP5). The server side is a listener that requires a client
//! certificate chaining to the configured CA. It names the peer's region by the certificate
//! subject's common name, and passes it on to the API as [`Peer`]. The client side is the
//! [`Fetch`] adapter, which presents this backend's certificate to a peer.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
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

use crate::domain::access::Peer;
use crate::ports::{Fetch, FetchError};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} holds no usable PEM certificate or key")]
    Pem(String),
    #[error("TLS set-up failed: {0}")]
    Config(String),
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|_| TlsError::Pem(path.display().to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem(path.display().to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(path.display().to_string()));
    }
    Ok(certs)
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read(path.display().to_string(), e))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

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

/// Reads peers' feeds over HTTPS, presenting this backend's client certificate and trusting
/// only the peer's CA when one is configured.
pub struct HttpsFetch {
    client: reqwest::Client,
}

impl HttpsFetch {
    pub fn new(
        identity: Option<(&Path, &Path)>,
        server_ca: Option<&Path>,
    ) -> Result<Self, TlsError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120));
        if let Some(ca) = server_ca {
            builder = builder.tls_built_in_root_certs(false);
            for cert in certificates(ca)? {
                let cert = reqwest::Certificate::from_der(&cert)
                    .map_err(|e| TlsError::Config(e.to_string()))?;
                builder = builder.add_root_certificate(cert);
            }
        }
        if let Some((cert, key)) = identity {
            let pem = [read(cert)?, read(key)?].concat();
            let identity = reqwest::Identity::from_pem(&pem)
                .map_err(|_| TlsError::Pem(cert.display().to_string()))?;
            builder = builder.identity(identity);
        }
        Ok(Self {
            client: builder
                .build()
                .map_err(|e| TlsError::Config(e.to_string()))?,
        })
    }
}

#[async_trait]
impl Fetch for HttpsFetch {
    async fn get(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
        let transport = |e: reqwest::Error| FetchError::Transport {
            url: url.to_string(),
            reason: error_chain(&e),
        };
        let too_large = || FetchError::TooLarge {
            url: url.to_string(),
            limit: max_bytes,
        };
        let mut response = self.client.get(url).send().await.map_err(transport)?;
        if !response.status().is_success() {
            return Err(FetchError::Status {
                url: url.to_string(),
                status: response.status().as_u16(),
            });
        }
        if response
            .content_length()
            .is_some_and(|n| n > max_bytes as u64)
        {
            return Err(too_large());
        }
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport)? {
            if body.len() + chunk.len() > max_bytes {
                return Err(too_large());
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    }
}

/// An error with its causes, which is where TLS failures explain themselves.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
