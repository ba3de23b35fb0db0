//! One region's backend: the adapters it was given, wired into the services, and the operations
//! that the entry points (the HTTP API, the command line, the Lambda functions) call.

use std::sync::{Arc, Mutex};
use std::time::Instant;

use serde::Serialize;

use crate::domain::access::AccessPolicy;
use crate::domain::certificate::{CertificateConfigError, TrustedIssuer};
use crate::domain::config::Config;
use crate::domain::diagnosis::Diagnosis;
use crate::domain::key::RegionId;
use crate::domain::metrics::Metrics;
use crate::domain::recent_errors::RecentErrors;
use crate::domain::revision::RevisionKey;
use crate::domain::secret::Pepper;
use crate::domain::signature::SignatureInfo;
use crate::entry::peers::Peering;
use crate::ports::{
    BlobStore, Clock, CodeStore, ConsumerStateStore, Fetch, IssuerSource, KeyStore,
    PublicationStore, Signer, StoreError, UnixSeconds, UploadVerifier,
};
use crate::services::certificates::{CertificateVerifier, IssuerUpdates, IssuersError};
use crate::services::code_issuers::CodeIssuers;
use crate::services::codes::{IssuedCode, OneTimeCodes};
use crate::services::consumer::{Consumer, ConsumerReport, Poll, Producer};
use crate::services::dataprep::{DataPrep, DataPrepError, DataPrepReport};
use crate::services::federation::RegistryReport;
use crate::services::feeds::Feeds;
use crate::services::publish::{PublishError, PublishResponse, Publisher, RecentUploads};

/// What the revision token key is derived from the code pepper for.
const REVISION_TOKENS: &str = "revision tokens";

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
    /// What the services count.
    pub metrics: Arc<Metrics>,
    /// How real uploads went lately, for chaff to imitate.
    pub recent_uploads: Arc<RecentUploads>,
    /// Where the peers come from (the peers file, the trust registry), when it was given.
    pub peering: Option<Arc<Peering>>,
    /// Seals and opens revision tokens (derived from the code pepper; none without one).
    pub revision_key: Option<Arc<RevisionKey>>,
    /// The health authority's staff who issue codes, where the backend has the pepper their
    /// tokens are hashed under.
    pub code_issuers: Option<CodeIssuers>,
    /// The last data-prep run that completed, and when.
    pub last_dataprep: Arc<Mutex<Option<(UnixSeconds, DataPrepReport)>>>,
    /// The newest warnings and errors logged, for the operator's console.
    pub recent_errors: Arc<RecentErrors>,
}

/// Anything that can store keys, codes and publication state: one adapter for all three.
pub trait Storage: KeyStore + CodeStore + PublicationStore + 'static {}
impl<T: KeyStore + CodeStore + PublicationStore + 'static> Storage for T {}

/// Whether the region works: its store answers, and data-prep ran within two intervals.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Health {
    pub healthy: bool,
    /// `ok`, or why the store did not answer.
    pub store: String,
    /// `ok`, or how long ago data-prep last completed.
    pub dataprep: String,
    /// When data-prep last completed (Unix seconds), if it ever did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_dataprep: Option<UnixSeconds>,
}

/// The public keys that verify a region's chunks, as `/v1/verification-keys` serves them.
#[derive(Clone, Debug, Serialize)]
pub struct VerificationKeys {
    pub region: RegionId,
    pub keys: Vec<PublishedKey>,
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
    /// one-time codes (hashed under `pepper`; none where codes are not used) as the upload
    /// verifier.
    pub fn new<S: Storage>(
        config: Config,
        storage: Arc<S>,
        blobs: Arc<dyn BlobStore>,
        signer: Arc<dyn Signer>,
        pepper: Option<Pepper>,
        clock: Arc<dyn Clock>,
    ) -> Self {
        let metrics = Arc::new(Metrics::default());
        let mut codes = OneTimeCodes::new(
            storage.clone(),
            pepper.clone(),
            metrics.clone(),
            config.code_lifetime,
        );
        codes.alarm_threshold = config.wrong_code_alarm;
        let revision_key = pepper
            .as_ref()
            .map(|pepper| Arc::new(RevisionKey::new(pepper.derive(REVISION_TOKENS))));
        Self {
            revision_key,
            metrics,
            verifier: Arc::new(codes.clone()),
            codes,
            keys: storage.clone(),
            publications: storage,
            blobs,
            signer,
            clock,
            config,
            consumer: None,
            recent_uploads: Arc::default(),
            peering: None,
            code_issuers: None,
            last_dataprep: Arc::default(),
            recent_errors: Arc::default(),
        }
    }

    /// Accepts verification certificates of `issuers` besides one-time codes.
    pub fn trust(&mut self, issuers: Vec<TrustedIssuer>) -> Result<(), CertificateConfigError> {
        self.accept_certificates(CertificateVerifier::new(issuers)?);
        Ok(())
    }

    /// Accepts verification certificates of the issuers that `source` names (and their key
    /// sets, read with `fetch`) besides one-time codes, reading them again every
    /// `issuers_refresh` seconds.
    pub async fn follow_issuers(
        &mut self,
        source: Arc<dyn IssuerSource>,
        fetch: Arc<dyn Fetch>,
    ) -> Result<(), IssuersError> {
        let updates = IssuerUpdates {
            source,
            fetch,
            every: self.config.issuers_refresh,
        };
        let verifier = CertificateVerifier::following(updates, self.clock.now()).await?;
        self.accept_certificates(verifier);
        Ok(())
    }

    fn accept_certificates(&mut self, certificates: CertificateVerifier) {
        let certificates = certificates.with_max_lifetime(self.config.certificate_max_lifetime);
        self.verifier = Arc::new(certificates.or_else(Arc::new(self.codes.clone())));
    }

    /// Pulls from `producers`, keeping its place in each one's feed in `state`.
    pub fn pull_from(&mut self, producers: Vec<Producer>, state: Arc<dyn ConsumerStateStore>) {
        self.consumer = Some(Arc::new(Consumer::new(
            producers,
            self.keys.clone(),
            state,
            self.clock.clone(),
            self.metrics.clone(),
            &self.config,
        )));
    }

    /// Reads the trust registry and puts what it says in force (producers, backend feed
    /// grants); without a registry, nothing. A registry that fails verification leaves the
    /// configuration as it was, and the report says why.
    pub async fn refresh_registry(&self) -> RegistryReport {
        let report = match (&self.peering, &self.consumer) {
            (Some(peering), Some(consumer)) => peering.refresh(consumer).await,
            _ => return RegistryReport::default(),
        };
        if report.error.is_some() {
            self.metrics.registry_failures.inc(&[]);
        }
        for (reason, count) in &report.refused_by_reason {
            self.metrics
                .registry_entries_refused
                .add(&[reason], *count as f64);
        }
        report
    }

    /// Who may read the backend feeds: the peering's rules, or only the admin token's holder.
    pub fn access(&self, admin_token: String) -> AccessPolicy {
        match &self.peering {
            Some(peering) => peering.access(admin_token),
            None => AccessPolicy {
                admin_token,
                ..AccessPolicy::default()
            },
        }
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
        self.publisher().publish(body, client).await
    }

    /// Answers a chaff upload that arrived at `since`; see [`Publisher::chaff`].
    pub async fn chaff(&self, since: Instant) -> PublishResponse {
        self.publisher().chaff(since).await
    }

    fn publisher(&self) -> Publisher {
        Publisher::new(
            self.config.clone(),
            self.keys.clone(),
            self.revision_key.clone(),
            self.verifier.clone(),
            self.clock.clone(),
            self.metrics.clone(),
            self.recent_uploads.clone(),
        )
    }

    /// Issues a one-time code for a person who tested positive, carrying the health
    /// authority's `diagnosis` (possibly empty) to the upload.
    pub async fn issue_code(&self, diagnosis: Diagnosis) -> Result<IssuedCode, StoreError> {
        self.codes.issue(self.clock.now(), diagnosis, None).await
    }

    /// Issues a one-time code as [`issue_code`](Self::issue_code) does, recorded as issued by
    /// the code issuer `issuer`, who can then see its status.
    pub async fn issue_code_as(
        &self,
        issuer: &str,
        diagnosis: Diagnosis,
    ) -> Result<IssuedCode, StoreError> {
        self.codes
            .issue(self.clock.now(), diagnosis, Some(issuer))
            .await
    }

    /// Publishes what is new and retires what has expired, and the public keys that verify the
    /// chunks.
    ///
    /// The allocator's freed pages are given back before and after the run, so that the run's
    /// peak is what it takes, not what uploads or the run before left in the allocator
    /// ([`memory`](crate::adapters::memory)).
    pub async fn run_dataprep(&self) -> Result<DataPrepReport, DataPrepError> {
        give_back_freed_memory().await;
        let report = DataPrep::new(
            self.config.clone(),
            self.keys.clone(),
            self.publications.clone(),
            self.blobs.clone(),
            self.signer.clone(),
            self.clock.clone(),
            self.metrics.clone(),
        )
        .run()
        .await;
        give_back_freed_memory().await;
        let report = report?;
        *self.last_dataprep.lock().expect("no panic while recording") =
            Some((self.clock.now(), report.clone()));
        let document = VerificationKeys {
            region: self.config.region,
            keys: self.verification_keys(),
        };
        let json = serde_json::to_vec(&document).expect("keys serialize");
        self.feeds().publish_verification_keys(json).await?;
        Ok(report)
    }

    /// Runs data-prep, and again while the store holds more keys than one run takes and
    /// another run (as long as the longest so far) fits in what is left of `budget`: a backlog
    /// drains on its own, each run bounded in memory and time. The reports are added up.
    pub async fn drain_dataprep(
        &self,
        budget: std::time::Duration,
    ) -> Result<DataPrepReport, DataPrepError> {
        let started = std::time::Instant::now();
        let mut longest = std::time::Duration::ZERO;
        let mut total = DataPrepReport::default();
        loop {
            let run = std::time::Instant::now();
            total.add(self.run_dataprep().await?);
            longest = longest.max(run.elapsed());
            if !total.more_waiting || started.elapsed() + longest > budget {
                return Ok(total);
            }
        }
    }

    /// Pulls what is new from the peers (those due, or all with [`Poll::Now`]); nothing
    /// without configured peers.
    pub async fn run_consumer(&self, poll: Poll) -> ConsumerReport {
        match &self.consumer {
            Some(consumer) => consumer.run(poll).await,
            None => ConsumerReport::default(),
        }
    }

    /// Whether the store answers, and data-prep last completed within two intervals.
    pub async fn health(&self) -> Health {
        let now = self.clock.now();
        let interval = self.config.dataprep_interval;
        let (store, last) = match self.publications.load().await {
            Ok((_, state)) => ("ok".to_string(), state.completed_at),
            Err(e) => {
                tracing::warn!(error = %e, "health check: the store does not answer");
                ("the store does not answer".to_string(), 0)
            }
        };
        let dataprep = match last {
            0 => "data-prep has not completed yet".to_string(),
            at if now.saturating_sub(at) > 2 * interval => format!(
                "data-prep last completed {} s ago; it runs every {interval} s",
                now.saturating_sub(at)
            ),
            _ => "ok".to_string(),
        };
        Health {
            healthy: store == "ok" && dataprep == "ok",
            store,
            dataprep,
            last_dataprep: (last > 0).then_some(last),
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

/// Gives back what the allocator holds freed ([`memory`](crate::adapters::memory)), and logs
/// how long that took: up to tens of milliseconds after a large run, on a blocking thread so
/// that the runtime's workers go on serving meanwhile.
async fn give_back_freed_memory() {
    let started = std::time::Instant::now();
    let gave = tokio::task::spawn_blocking(crate::adapters::memory::give_back_freed)
        .await
        .unwrap_or(false);
    tracing::debug!(
        gave,
        took_us = started.elapsed().as_micros() as u64,
        "freed memory given back"
    );
}
