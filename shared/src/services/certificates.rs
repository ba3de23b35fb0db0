//! The certificate verifier: the [`UploadVerifier`] that accepts verification certificates of
//! trusted health authorities, and hands other payloads (one-time codes) to a fallback. What a
//! valid certificate certifies (report type, symptom onset) overrides what the upload declares.
//!
//! The trusted issuers are either given once, or followed: read from an [`IssuerSource`] (with
//! the JSON Web Key Set of every issuer that names one) at start and again every so often, so
//! that adding an issuer or rotating its keys takes effect without a redeploy. A refresh that
//! fails keeps the issuers trusted until then, and is tried again at the next interval.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::domain::certificate::{
    CertificateConfigError, IssuersFile, TrustedIssuer, TrustedIssuers, is_certificate, jwks_keys,
};
use crate::domain::key::UnixSeconds;
use crate::domain::upload::Upload;
use crate::ports::{
    Authorization, Fetch, FetchError, IssuerSource, IssuersUnreadable, UploadVerifier, VerifyError,
};

/// Most bytes of a JSON Web Key Set.
pub const MAX_JWKS_BYTES: usize = 256 * 1024;

/// Why the trusted issuers could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum IssuersError {
    #[error(transparent)]
    Unreadable(#[from] IssuersUnreadable),
    #[error(transparent)]
    Config(#[from] CertificateConfigError),
    #[error("the key set of issuer {issuer:?}: {error}")]
    Jwks { issuer: String, error: FetchError },
}

/// Where the trusted issuers are read from, and how often again.
#[derive(Clone)]
pub struct IssuerUpdates {
    pub source: Arc<dyn IssuerSource>,
    /// Reads the issuers' JSON Web Key Sets.
    pub fetch: Arc<dyn Fetch>,
    /// Seconds between reads.
    pub every: u64,
}

/// Reads the trusted issuers: the file, and the keys of every issuer's key set.
pub async fn load_issuers(
    source: &dyn IssuerSource,
    fetch: &dyn Fetch,
) -> Result<Vec<TrustedIssuer>, IssuersError> {
    let text = source.read().await?;
    let mut issuers = IssuersFile::parse(&text, &source.name())?.issuers;
    for issuer in &mut issuers {
        if let Some(url) = &issuer.jwks_url {
            let json =
                fetch
                    .get(url, MAX_JWKS_BYTES)
                    .await
                    .map_err(|error| IssuersError::Jwks {
                        issuer: issuer.issuer.clone(),
                        error,
                    })?;
            issuer.keys.extend(jwks_keys(&json)?);
        }
    }
    Ok(issuers)
}

/// Checks verification certificates, and hands other payloads to its fallback if it has one.
pub struct CertificateVerifier {
    issuers: RwLock<Arc<TrustedIssuers>>,
    max_lifetime: u64,
    fallback: Option<Arc<dyn UploadVerifier>>,
    updates: Option<Followed>,
}

/// The issuers' source, and when it is next read.
struct Followed {
    updates: IssuerUpdates,
    due_at: AtomicU64,
    reading: tokio::sync::Mutex<()>,
}

impl CertificateVerifier {
    /// A verifier that trusts `issuers` and nothing else, and certificates valid for at most
    /// [`CERTIFICATE_MAX_LIFETIME`](crate::domain::config::CERTIFICATE_MAX_LIFETIME) seconds.
    pub fn new(issuers: Vec<TrustedIssuer>) -> Result<Self, CertificateConfigError> {
        let issuers = TrustedIssuers::new(issuers)?;
        Ok(Self {
            max_lifetime: issuers.max_lifetime,
            issuers: RwLock::new(Arc::new(issuers)),
            fallback: None,
            updates: None,
        })
    }

    /// A verifier that trusts the issuers `updates` reads, now and every `updates.every`
    /// seconds from `now` on.
    pub async fn following(updates: IssuerUpdates, now: UnixSeconds) -> Result<Self, IssuersError> {
        let issuers = load_issuers(updates.source.as_ref(), updates.fetch.as_ref()).await?;
        let mut verifier = Self::new(issuers)?;
        verifier.updates = Some(Followed {
            due_at: AtomicU64::new(now + updates.every),
            updates,
            reading: tokio::sync::Mutex::new(()),
        });
        Ok(verifier)
    }

    /// Accepts certificates valid for at most `seconds`, from `iat` to `exp`.
    pub fn with_max_lifetime(mut self, seconds: u64) -> Self {
        self.max_lifetime = seconds;
        let issuers = self.issuers.get_mut().expect("no panic while trusting");
        Arc::get_mut(issuers)
            .expect("a verifier being built holds its issuers alone")
            .max_lifetime = seconds;
        self
    }

    /// Hands payloads that are not certificates, such as one-time codes, to `other`.
    pub fn or_else(self, other: Arc<dyn UploadVerifier>) -> Self {
        Self {
            fallback: Some(other),
            ..self
        }
    }

    /// Reads the issuers again if it is time, unless another check is reading them already.
    async fn refresh_if_due(&self, now: UnixSeconds) {
        let Some(followed) = &self.updates else {
            return;
        };
        if now < followed.due_at.load(Ordering::Acquire) {
            return;
        }
        let Ok(_reading) = followed.reading.try_lock() else {
            return;
        };
        let updates = &followed.updates;
        followed
            .due_at
            .store(now + updates.every, Ordering::Release);
        let loaded = load_issuers(updates.source.as_ref(), updates.fetch.as_ref())
            .await
            .and_then(|issuers| Ok(TrustedIssuers::new(issuers)?));
        match loaded {
            Ok(mut issuers) => {
                issuers.max_lifetime = self.max_lifetime;
                *self.issuers.write().expect("no panic while trusting") = Arc::new(issuers);
                tracing::debug!(source = updates.source.name(), "trusted issuers read again");
            }
            Err(e) => tracing::warn!(
                error = %e,
                "the trusted issuers could not be read again; the last ones stay trusted"
            ),
        }
    }
}

#[async_trait]
impl UploadVerifier for CertificateVerifier {
    async fn verify(
        &self,
        upload: &Upload,
        client: &str,
        now: UnixSeconds,
    ) -> Result<Authorization, VerifyError> {
        match &self.fallback {
            Some(other) if !is_certificate(&upload.verification_payload) => {
                other.verify(upload, client, now).await
            }
            _ => {
                self.refresh_if_due(now).await;
                let issuers = self
                    .issuers
                    .read()
                    .expect("no panic while trusting")
                    .clone();
                let certified = issuers.check(upload, now)?;
                Ok(Authorization {
                    claim: None,
                    report_type: certified.report_type,
                    symptom_onset_interval: certified.symptom_onset_interval,
                })
            }
        }
    }
}
