//! The peers of a region made ready to pull: those of its peers file (their verification keys
//! read from PEM files, an HTTPS client with this backend's TLS identity towards each) and,
//! with a trust registry ([`Peering::with_registry`]), those the registry lists, refreshed on a
//! schedule. A peer of the peers file overrides the registry's entry for its region.

use std::path::Path;
use std::sync::Arc;

use crate::adapters::tls::{HttpsFetch, IdentityPem, PeerTls, TlsError};
use crate::domain::access::AccessPolicy;
use crate::domain::key::RegionId;
use crate::domain::peers::{PeerConfig, PeersFile};
use crate::domain::registry::{CheckedEntry, RegistryGrants};
use crate::domain::signature::{KeyError, VerificationKey};
use crate::services::consumer::{Consumer, Producer};
use crate::services::federation::{Federation, RefusedEntry, RegistryReport};

/// Why a configured producer cannot be pulled.
#[derive(Debug, thiserror::Error)]
pub enum ProducerError {
    #[error("peer {0}: cannot read verification key {1}: {2}")]
    Key(RegionId, String, std::io::Error),
    #[error("{0}: cannot read {1}: {2}")]
    Read(String, String, std::io::Error),
    #[error("peer {0}: {1}")]
    BadKey(RegionId, KeyError),
    #[error("peer {0}: {1}")]
    Tls(RegionId, TlsError),
    #[error("{0}: a client_cert needs a client_key, in the peers file or as a secret")]
    NoClientKey(String),
}

/// This backend's TLS identity (certificate and key, PEM) towards `whom` (a peer, or every
/// peer): the certificate file, with the key from a secret store (`secret_key`) or else from
/// its file.
fn identity(
    whom: &str,
    cert: Option<&Path>,
    secret_key: Option<&str>,
    key: Option<&Path>,
) -> Result<Option<IdentityPem>, ProducerError> {
    let read = |path: &Path| {
        std::fs::read(path)
            .map_err(|e| ProducerError::Read(whom.to_string(), path.display().to_string(), e))
    };
    Ok(match (cert, secret_key, key) {
        (Some(cert), Some(secret), _) => Some((read(cert)?, secret.as_bytes().to_vec())),
        (Some(cert), None, Some(key)) => Some((read(cert)?, read(key)?)),
        (Some(_), None, None) => return Err(ProducerError::NoClientKey(whom.to_string())),
        (None, _, _) => None,
    })
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
    let server_ca = config
        .server_ca
        .as_deref()
        .map(|path| {
            std::fs::read(path).map_err(|e| {
                ProducerError::Read(format!("peer {region}"), path.display().to_string(), e)
            })
        })
        .transpose()?;
    let tls = PeerTls {
        identity_pem: identity(
            &format!("peer {region}"),
            config.client_cert.as_deref(),
            client_key,
            config.client_key.as_deref(),
        )?,
        server_ca_pem: server_ca,
        server_cert_sha256: None,
        insecure_http: config.insecure_http,
    };
    let fetch = HttpsFetch::with(&tls).map_err(|e| ProducerError::Tls(region, e))?;
    Ok(Producer::new(config, keys, Arc::new(fetch)))
}

/// A producer the registry lists: its keys and TLS identity from its entry, this backend's
/// identity from the peers file's defaults.
fn open_registry_producer(
    config: PeerConfig,
    entry: CheckedEntry,
    identity: &PeerTls,
) -> Result<Producer, ProducerError> {
    let tls = PeerTls {
        identity_pem: identity.identity_pem.clone(),
        server_ca_pem: entry.entry.tls.server_ca_pem.map(String::into_bytes),
        server_cert_sha256: entry.server_cert_sha256,
        insecure_http: entry.entry.insecure_http,
    };
    let fetch = HttpsFetch::with(&tls).map_err(|e| ProducerError::Tls(config.region, e))?;
    Ok(Producer::with_windows(config, entry.keys, Arc::new(fetch)))
}

/// Where a region's peers come from: its peers file, and the trust registry if it has one.
pub struct Peering {
    file: PeersFile,
    /// This backend's TLS client key from a secret store, in place of the files'.
    client_key: Option<String>,
    /// This backend's TLS identity towards the registry's peers (the peers file's defaults).
    identity: PeerTls,
    registry: Option<Federation>,
    grants: Arc<RegistryGrants>,
}

impl Peering {
    /// The peers of a peers file only; `client_key` (PEM) is this backend's TLS client key
    /// from a secret store, in place of the files' `client_key`.
    pub fn local(file: PeersFile, client_key: Option<String>) -> Result<Self, ProducerError> {
        let identity = PeerTls {
            identity_pem: identity(
                "the peers file",
                file.client_cert.as_deref(),
                client_key.as_deref(),
                file.client_key.as_deref(),
            )?,
            ..PeerTls::default()
        };
        Ok(Self {
            identity,
            client_key,
            file,
            registry: None,
            grants: Arc::default(),
        })
    }

    /// The peers of a peers file, and those of the registry read by `federation`.
    pub fn with_registry(
        file: PeersFile,
        client_key: Option<String>,
        federation: Federation,
    ) -> Result<Self, ProducerError> {
        Ok(Self {
            registry: Some(federation),
            ..Self::local(file, client_key)?
        })
    }

    /// Whether a trust registry is configured.
    pub fn has_registry(&self) -> bool {
        self.registry.is_some()
    }

    /// Whether any peer may ever be pulled.
    pub fn pulls(&self) -> bool {
        self.registry.is_some() || !self.file.peers.is_empty()
    }

    /// Who may read the backend feeds: the peers file's a2a consumers and, with a registry,
    /// what the registry grants at its last good refresh.
    pub fn access(&self, admin_token: String) -> AccessPolicy {
        AccessPolicy {
            admin_token,
            a2a_consumers: self.file.a2a_consumers.clone(),
            registry: self.registry.as_ref().map(|_| self.grants.clone()),
            local_peers: self.file.peers.iter().map(|p| p.region).collect(),
        }
    }

    /// The producers of the peers file.
    pub fn local_producers(&self) -> Result<Vec<Producer>, ProducerError> {
        self.file
            .peers
            .iter()
            .cloned()
            .map(|peer| open_producer(peer, self.client_key.as_deref()))
            .collect()
    }

    /// Reads the registry and, if it verifies, puts what it says in force: the consumer's
    /// producers (the peers file's, then the registry's for the other regions) and the grants
    /// of the backend feeds. If it does not verify, the configuration in force stays, and the
    /// report says why.
    pub async fn refresh(&self, consumer: &Consumer) -> RegistryReport {
        let Some(federation) = &self.registry else {
            return RegistryReport::default();
        };
        let (view, mut report) = match federation.refresh().await {
            Ok(refreshed) => refreshed,
            Err(error) => {
                tracing::error!(%error, "registry refused; the last good configuration stays");
                return RegistryReport {
                    error: Some(error.to_string()),
                    ..RegistryReport::default()
                };
            }
        };
        let mut producers = match self.local_producers() {
            Ok(producers) => producers,
            Err(error) => {
                tracing::error!(%error, "peers file unusable; the configuration stays");
                report.error = Some(error.to_string());
                return report;
            }
        };
        let local: Vec<RegionId> = producers.iter().map(|p| p.config.region).collect();
        for (config, entry) in view.producers.iter().cloned() {
            if local.contains(&config.region) {
                continue;
            }
            let role = config.region.to_string();
            match open_registry_producer(config, entry, &self.identity) {
                Ok(producer) => producers.push(producer),
                Err(error) => {
                    tracing::warn!(%role, %error, "registry entry refused");
                    *report.refused_by_reason.entry("bad_tls").or_default() += 1;
                    report.refused.push(RefusedEntry {
                        target: role.clone(),
                        role,
                        error: error.to_string(),
                    });
                }
            }
        }
        report.producers = producers
            .iter()
            .map(|p| p.config.region.to_string())
            .collect();
        consumer.set_producers(producers);
        self.grants.update(&view);
        tracing::info!(
            regions = report.regions.len(),
            producers = report.producers.len(),
            refused = report.refused.len(),
            "registry refreshed"
        );
        report
    }
}
