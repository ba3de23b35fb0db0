//! The certificate verifier: the [`UploadVerifier`] that accepts verification certificates of
//! trusted health authorities, and hands other payloads (one-time codes) to a fallback. What a
//! valid certificate certifies (report type, symptom onset) overrides what the upload declares.

use std::sync::Arc;

use async_trait::async_trait;

use crate::domain::certificate::{
    CertificateConfigError, TrustedIssuer, TrustedIssuers, is_certificate,
};
use crate::domain::key::UnixSeconds;
use crate::domain::upload::Upload;
use crate::ports::{Authorization, UploadVerifier, VerifyError};

/// Checks verification certificates, and hands other payloads to its fallback if it has one.
pub struct CertificateVerifier {
    issuers: TrustedIssuers,
    fallback: Option<Arc<dyn UploadVerifier>>,
}

impl CertificateVerifier {
    /// A verifier that trusts `issuers` and nothing else, and certificates valid for at most
    /// [`MAX_LIFETIME`](crate::domain::certificate::MAX_LIFETIME) seconds.
    pub fn new(issuers: Vec<TrustedIssuer>) -> Result<Self, CertificateConfigError> {
        Ok(Self {
            issuers: TrustedIssuers::new(issuers)?,
            fallback: None,
        })
    }

    /// Accepts certificates valid for at most `seconds`, from `iat` to `exp`.
    pub fn with_max_lifetime(mut self, seconds: u64) -> Self {
        self.issuers.max_lifetime = seconds;
        self
    }

    /// Hands payloads that are not certificates, such as one-time codes, to `other`.
    pub fn or_else(self, other: Arc<dyn UploadVerifier>) -> Self {
        Self {
            fallback: Some(other),
            ..self
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
                let certified = self.issuers.check(upload, now)?;
                Ok(Authorization {
                    claim: None,
                    report_type: certified.report_type,
                    symptom_onset_interval: certified.symptom_onset_interval,
                })
            }
        }
    }
}
