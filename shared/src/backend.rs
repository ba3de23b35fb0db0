//! One region's backend: the ports wired together, and the operations that the entry points
//! (the HTTP API, the command line, the Lambda functions) call.

use std::sync::Arc;

use serde::Serialize;

use crate::authorize::{IssuedCode, OneTimeCodes, UploadVerifier, VerifyError};
use crate::consumer::{Consumer, ConsumerReport, Poll};
use crate::dataprep::{self, DataPrepError, DataPrepReport};
use crate::domain::certificate::{CertificateConfigError, CertificateVerifier, TrustedIssuer};
use crate::domain::config::Config;
use crate::domain::upload::{PublishRequest, UploadError, publish_at};
use crate::ports::{
    BlobStore, Clock, CodeStore, Inserted, KeyStore, NewKeys, Origin, PublicationStore, Signer,
    StoreError, StoredKey,
};
use crate::signing::SignatureInfo;

/// The ports of one backend.
#[derive(Clone)]
pub struct Backend {
    pub config: Config,
    pub keys: Arc<dyn KeyStore>,
    pub codes: OneTimeCodes,
    pub publications: Arc<dyn PublicationStore>,
    pub blobs: Arc<dyn BlobStore>,
    pub signer: Arc<dyn Signer>,
    pub clock: Arc<dyn Clock>,
    /// Decides whether uploads are authorised; one-time codes unless replaced.
    pub verifier: Arc<dyn UploadVerifier>,
    /// Pulls the feeds of peer backends, when any are configured.
    pub consumer: Option<Arc<Consumer>>,
}

/// Anything that can store keys, codes and publication state: one adapter for all three.
pub trait Storage: KeyStore + CodeStore + PublicationStore + 'static {}
impl<T: KeyStore + CodeStore + PublicationStore + 'static> Storage for T {}

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

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Code(refused) => PublishError::Unauthorized(refused.into()),
            other => PublishError::Store(other),
        }
    }
}

/// A public key phones and peers verify this region's chunks with.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishedKey {
    #[serde(flatten)]
    pub info: SignatureInfo,
    pub public_key_pem: String,
}

impl Backend {
    /// Wires a backend whose keys, codes and publication state share one storage adapter, with
    /// one-time codes as the upload verifier.
    pub fn new<S: Storage>(
        config: Config,
        storage: Arc<S>,
        blobs: Arc<dyn BlobStore>,
        signer: Arc<dyn Signer>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let codes = OneTimeCodes::new(storage.clone(), config.code_lifetime);
        Self {
            verifier: Arc::new(codes.clone()),
            codes,
            keys: storage.clone(),
            publications: storage,
            blobs,
            signer,
            clock,
            config,
            consumer: None,
        }
    }

    /// Accepts verification certificates of `issuers` besides one-time codes.
    pub fn trust(&mut self, issuers: Vec<TrustedIssuer>) -> Result<(), CertificateConfigError> {
        let certificates = CertificateVerifier::new(issuers)?;
        self.verifier = Arc::new(certificates.or_else(Arc::new(self.codes.clone())));
        Ok(())
    }

    /// Takes an upload (`POST /v1/publish`): parses, validates, verifies, and stores it, all or
    /// nothing. `client` identifies the caller for rate limiting.
    pub async fn publish(
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
        tracing::info!(
            inserted = n,
            replay = matches!(inserted, Inserted::Replayed(_)),
            "upload stored"
        );
        Ok(PublishResponse {
            inserted_exposures: n,
        })
    }

    /// Issues a one-time code for a person who tested positive.
    pub async fn issue_code(&self) -> Result<IssuedCode, StoreError> {
        self.codes.issue(self.clock.now()).await
    }

    /// Publishes what is new and retires what has expired.
    pub async fn run_dataprep(&self) -> Result<DataPrepReport, DataPrepError> {
        dataprep::run(self).await
    }

    /// Pulls what is new from the peers (those due, or all with [`Poll::Now`]); nothing
    /// without configured peers.
    pub async fn run_consumer(&self, poll: Poll) -> ConsumerReport {
        match &self.consumer {
            Some(consumer) => consumer.run(self, poll).await,
            None => ConsumerReport::default(),
        }
    }

    /// The public keys that verify this region's chunks, newest first.
    pub fn verification_keys(&self) -> Vec<PublishedKey> {
        self.signer
            .verification_keys()
            .into_iter()
            .map(|key| PublishedKey {
                public_key_pem: key.to_pem(),
                info: key.info,
            })
            .collect()
    }
}
