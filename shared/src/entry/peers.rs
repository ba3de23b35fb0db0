//! The producers of a peers file made ready to pull: their verification keys read from PEM
//! files, and an HTTPS client with this backend's TLS identity towards each.

use std::sync::Arc;

use crate::adapters::tls::{HttpsFetch, TlsError};
use crate::domain::key::RegionId;
use crate::domain::peers::PeerConfig;
use crate::domain::signature::{KeyError, VerificationKey};
use crate::services::consumer::Producer;

/// Why a configured producer cannot be pulled.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error("peer {0}: cannot read verification key {1}: {2}")]
    Key(RegionId, String, std::io::Error),
    #[error("peer {0}: {1}")]
    BadKey(RegionId, KeyError),
    #[error("peer {0}: {1}")]
    Tls(RegionId, TlsError),
    #[error("peer {0}: a client_cert needs a client_key, in the peers file or as a secret")]
    NoClientKey(RegionId),
}

/// A producer as configured in a peers file: its PEM keys read, an HTTPS client with this
/// backend's TLS identity.
///
/// `client_key` (PEM), when given, is this backend's TLS client key from a secret store; it
/// takes the place of the peers file's `client_key`.
pub fn open_producer(
    config: PeerConfig,
    client_key: Option<&str>,
) -> Result<Producer, ProducerError> {
    let region = config.region;
    let keys = config
        .verification_keys
        .iter()
        .map(|path| {
            let pem = std::fs::read_to_string(path)
                .map_err(|e| ProducerError::Key(region, path.display().to_string(), e))?;
            let version = path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            VerificationKey::from_pem(&pem, region.as_str(), &version)
                .map_err(|e| ProducerError::BadKey(region, e))
        })
        .collect::<Result<_, _>>()?;
    let server_ca = config.server_ca.as_deref();
    let fetch = match (&config.client_cert, client_key, &config.client_key) {
        (Some(cert), Some(key_pem), _) => {
            let cert_pem = std::fs::read(cert)
                .map_err(|e| ProducerError::Key(region, cert.display().to_string(), e))?;
            let identity = [cert_pem.as_slice(), b"\n", key_pem.as_bytes()].concat();
            HttpsFetch::with_identity_pem(Some((&identity, "the client key")), server_ca)
        }
        (Some(cert), None, Some(key)) => HttpsFetch::new(Some((cert, key)), server_ca),
        (Some(_), None, None) => return Err(ProducerError::NoClientKey(region)),
        (None, _, _) => HttpsFetch::new(None, server_ca),
    }
    .map_err(|e| ProducerError::Tls(region, e))?;
    Ok(Producer::new(config, keys, Arc::new(fetch)))
}
