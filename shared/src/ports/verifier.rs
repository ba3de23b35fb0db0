//! The upload verifier: decides whether the health authority authorised an upload (a one-time
//! code, a verification certificate), and what it certified about the diagnosis.

use async_trait::async_trait;

use super::{CodeClaim, CodeRefused, StoreError};
use crate::domain::certificate::CertificateError;
use crate::domain::key::{ReportType, UnixSeconds};
use crate::domain::upload::Upload;

/// Why an upload is not authorised.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error(transparent)]
    Refused(#[from] CodeRefused),
    #[error("too many wrong verification codes from this client; try again later")]
    RateLimited,
    #[error(transparent)]
    Store(StoreError),
    #[error(transparent)]
    Certificate(#[from] CertificateError),
}

impl From<StoreError> for VerifyError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Code(refused) => VerifyError::Refused(refused),
            other => VerifyError::Store(other),
        }
    }
}

/// What an authorised upload carries into storage.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Authorization {
    /// A single-use code to consume atomically with the keys, if the proof was one.
    pub claim: Option<CodeClaim>,
    /// The diagnosis as the health authority certified it; overrides the upload's own.
    pub report_type: Option<ReportType>,
    /// Symptom onset as certified; overrides the upload's own.
    pub symptom_onset_interval: Option<u32>,
}

/// The port that decides whether an upload is authorised by the health authority.
#[async_trait]
pub trait UploadVerifier: Send + Sync {
    /// `client` identifies the caller (its address) for rate limiting.
    async fn verify(
        &self,
        upload: &Upload,
        client: &str,
        now: UnixSeconds,
    ) -> Result<Authorization, VerifyError>;
}
