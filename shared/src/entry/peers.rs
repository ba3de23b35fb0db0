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
}

/// A producer as configured in a peers file: its PEM keys read, an HTTPS client with this
/// backend's TLS identity.
pub fn open_producer(config: PeerConfig) -> Result<Producer, ProducerError> {
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
    let identity = config
        .client_cert
        .as_deref()
        .zip(config.client_key.as_deref());
    let fetch = HttpsFetch::new(identity, config.server_ca.as_deref())
        .map_err(|e| ProducerError::Tls(region, e))?;
    Ok(Producer::new(config, keys, Arc::new(fetch)))
}
