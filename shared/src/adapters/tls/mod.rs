//! Mutual TLS between backends (SP5), on rustls with ring: the [`listener`] that serves the
//! backend feeds to peers presenting a client certificate, and the [`client`] that fetches a
//! peer's files presenting this backend's own. Both read their certificates and keys from PEM
//! files.

pub mod client;
pub mod listener;

use std::path::Path;
use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

pub use client::{HttpsFetch, IdentityPem, PeerTls};

/// Why TLS could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} holds no usable PEM certificate or key")]
    Pem(String),
    #[error("TLS set-up failed: {0}")]
    Config(String),
}

pub(super) fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|_| TlsError::Pem(path.display().to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|_| TlsError::Pem(path.display().to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::Pem(path.display().to_string()));
    }
    Ok(certs)
}

pub(super) fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read(path.display().to_string(), e))
}

pub(super) fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
