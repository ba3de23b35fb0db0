//! The TLS side of the backend listener (served by [`crate::adapters::listener`]): a client
//! certificate chaining to the configured CA is required, and its subject's common name names
//! the peer's region, passed on to the API as [`Peer`].

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;

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
