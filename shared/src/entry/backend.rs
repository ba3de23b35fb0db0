//! One region's backend: the adapters it was given, wired into the services, and the operations
//! that the entry points (the HTTP API, the command line, the Lambda functions) call.

use std::sync::Arc;

use serde::Serialize;

use crate::domain::certificate::{CertificateConfigError, TrustedIssuer};
use crate::domain::config::Config;
use crate::domain::signature::SignatureInfo;
use crate::ports::{
    BlobStore, Clock, CodeStore, ConsumerStateStore, KeyStore, PublicationStore, Signer,
    StoreError, UploadVerifier,
};
use crate::services::certificates::CertificateVerifier;
use crate::services::codes::{IssuedCode, OneTimeCodes};
use crate::services::consumer::{Consumer, ConsumerReport, Poll, Producer};
use crate::services::dataprep::{DataPrep, DataPrepError, DataPrepReport};
use crate::services::feeds::Feeds;
use crate::services::publish::{PublishError, PublishResponse, Publisher};

/// The ports of one backend. Each operation runs the service that does it over the ports that
/// service needs (services are a few shared pointers: building one costs nothing).
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

    /// Pulls from `producers`, keeping its place in each one's feed in `state`.
    pub fn pull_from(&mut self, producers: Vec<Producer>, state: Arc<dyn ConsumerStateStore>) {
        self.consumer = Some(Arc::new(Consumer::new(
            producers,
            self.keys.clone(),
            state,
            self.clock.clone(),
            &self.config,
        )));
    }

    /// Whether the backend pulls any peer's feeds.
    pub fn pulls_peers(&self) -> bool {
        self.consumer.is_some()
    }

    /// Takes an upload (`POST /v1/publish`); see [`Publisher::publish`].
    pub async fn publish(
        &self,
        body: &[u8],
        client: &str,
    ) -> Result<PublishResponse, PublishError> {
        Publisher::new(
            self.config.clone(),
            self.keys.clone(),
            self.verifier.clone(),
            self.clock.clone(),
        )
        .publish(body, client)
        .await
    }

    /// Issues a one-time code for a person who tested positive.
    pub async fn issue_code(&self) -> Result<IssuedCode, StoreError> {
        self.codes.issue(self.clock.now()).await
    }

    /// Publishes what is new and retires what has expired.
    pub async fn run_dataprep(&self) -> Result<DataPrepReport, DataPrepError> {
        DataPrep::new(
            self.config.clone(),
            self.keys.clone(),
            self.publications.clone(),
            self.blobs.clone(),
            self.signer.clone(),
            self.clock.clone(),
        )
        .run()
        .await
    }

    /// Pulls what is new from the peers (those due, or all with [`Poll::Now`]); nothing
    /// without configured peers.
    pub async fn run_consumer(&self, poll: Poll) -> ConsumerReport {
        match &self.consumer {
            Some(consumer) => consumer.run(poll).await,
            None => ConsumerReport::default(),
        }
    }

    /// The published feeds.
    pub fn feeds(&self) -> Feeds {
        Feeds::new(
            self.config.region,
            self.config.dataprep_interval,
            self.blobs.clone(),
            self.clock.clone(),
        )
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
