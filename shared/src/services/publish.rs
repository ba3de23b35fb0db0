//! Taking an upload (`POST /v1/publish`): the request parsed and checked against every upload
//! rule, its authorisation verified, and its keys stored as local keys together with the
//! consumption of its one-time code, all or nothing.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::config::Config;
use crate::domain::metrics::Metrics;
use crate::domain::upload::{PublishRequest, UploadError, publish_at};
use crate::ports::{
    Clock, CodeRefused, Inserted, KeyStore, NewKeys, Origin, StoreError, StoredKey, UploadVerifier,
    VerifyError,
};

/// The answer to a successful upload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishResponse {
    pub inserted_exposures: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Invalid(#[from] UploadError),
    #[error(transparent)]
    Unauthorized(#[from] VerifyError),
    #[error(transparent)]
    Store(StoreError),
}

impl PublishError {
    /// A short, stable, machine-readable name for the error, as answers carry it.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Invalid(invalid) => invalid.code(),
            PublishError::Unauthorized(VerifyError::RateLimited) => "rate_limited",
            PublishError::Unauthorized(VerifyError::Refused(refused)) => match refused {
                CodeRefused::Unknown => "code_unknown",
                CodeRefused::Expired => "code_expired",
                CodeRefused::Used => "code_used",
            },
            PublishError::Unauthorized(VerifyError::Certificate(refused)) => refused.code(),
            PublishError::Unauthorized(VerifyError::Store(_)) | PublishError::Store(_) => {
                "internal"
            }
        }
    }
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Code(refused) => PublishError::Unauthorized(refused.into()),
            other => PublishError::Store(other),
        }
    }
}

/// Takes uploads into the key store.
#[derive(Clone)]
pub struct Publisher {
    config: Config,
    keys: Arc<dyn KeyStore>,
    verifier: Arc<dyn UploadVerifier>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
}

impl Publisher {
    pub fn new(
        config: Config,
        keys: Arc<dyn KeyStore>,
        verifier: Arc<dyn UploadVerifier>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            config,
            keys,
            verifier,
            clock,
            metrics,
        }
    }

    /// Takes an upload: parses, validates, verifies, and stores it, all or nothing. `client`
    /// identifies the caller for rate limiting.
    pub async fn publish(
        &self,
        body: &[u8],
        client: &str,
    ) -> Result<PublishResponse, PublishError> {
        let outcome = self.store_upload(body, client).await;
        match &outcome {
            Ok(_) => self.metrics.uploads.inc(&["accepted"]),
            Err(e) => {
                self.metrics.uploads.inc(&[e.code()]);
                if matches!(
                    e,
                    PublishError::Store(_) | PublishError::Unauthorized(VerifyError::Store(_))
                ) {
                    self.metrics.storage_errors.inc(&["keys"]);
                }
            }
        }
        outcome
    }

    async fn store_upload(
        &self,
        body: &[u8],
        client: &str,
    ) -> Result<PublishResponse, PublishError> {
        let now = self.clock.now();
        let mut upload = PublishRequest::from_json(body)?.validate(self.config.region, now)?;
        let authorization = self.verifier.verify(&upload, client, now).await?;
        upload.certify(
            authorization.report_type,
            authorization.symptom_onset_interval,
        );
        let keys = upload
            .keys
            .into_iter()
            .map(|key| StoredKey {
                publish_at: publish_at(&key, now, self.config.embargo),
                expires_at: now + self.config.retention(),
                key,
                origin: Origin::Local,
                regions: upload.regions.clone(),
            })
            .collect();
        let inserted = self
            .keys
            .insert(NewKeys {
                keys,
                claim: authorization.claim,
                now,
            })
            .await?;
        let (Inserted::Stored(n) | Inserted::Replayed(n)) = inserted;
        if let Inserted::Stored(new) = inserted {
            self.metrics.keys_stored.add(&["local"], f64::from(new));
        }
        tracing::info!(
            inserted = n,
            replay = matches!(inserted, Inserted::Replayed(_)),
            "upload stored"
        );
        Ok(PublishResponse {
            inserted_exposures: n,
        })
    }
}
