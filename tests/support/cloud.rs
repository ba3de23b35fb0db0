//! One region's AWS resources on a moto server, as `template.yaml` creates them: the table,
//! the consumer-state table, the bucket and the SSM parameters, with the helpers that read
//! back what the functions wrote. For the serverless tests and the benchmark of data-prep on
//! DynamoDB.

use std::collections::BTreeMap;
use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_s3::types::{
    BucketLocationConstraint, BucketVersioningStatus, CreateBucketConfiguration,
    VersioningConfiguration,
};
use aws_sdk_ssm::types::ParameterType;
use enfeed::adapters::aws::{DynamoConsumerState, DynamoStore};
use enfeed::adapters::ecdsa::EcdsaSigner;
use enfeed::adapters::local::signing_keys;
use enfeed::domain::export::{ExportFile, ExportLimits, read_export};
use enfeed::domain::feed::{Feed, FeedIndex};
use enfeed::domain::secret::new_pepper_hex;
use enfeed::domain::signature::VerificationKey;
use enfeed::entry::lambda::Settings;
use enfeed::ports::ManualClock;
use enfeed::ports::Signer as _;
use enfeed::{Backend, Config};
use serde_json::json;

use crate::NOW;
use crate::moto::{AWS_REGION, Moto};

pub const TABLE: &str = "enfeed-ch";
pub const CONSUMER_TABLE: &str = "enfeed-ch-consumer";
pub const BUCKET: &str = "enfeed-ch-feeds";
pub const KEYS_PATH: &str = "/enfeed/CH/signing-keys";
pub const PEPPER_PARAMETER: &str = "/enfeed/CH/code-pepper";
/// The time a scheduled data-prep invocation leaves for more runs: none, one run.
pub const ONE_RUN: std::time::Duration = std::time::Duration::ZERO;

/// One region's AWS resources on a moto server of its own, as `template.yaml` creates them,
/// with a signing key in SSM.
pub struct Cloud {
    pub sdk: SdkConfig,
    pub dynamo: aws_sdk_dynamodb::Client,
    pub s3: aws_sdk_s3::Client,
    pub ssm: aws_sdk_ssm::Client,
    pub clock: Arc<ManualClock>,
    pub settings: Settings,
    /// The signing key's PEM, as stored in SSM.
    pub signing_pem: String,
    /// Stopped when the test ends.
    _moto: Moto,
}

impl Cloud {
    pub async fn start() -> Self {
        Self::start_on(Moto::start().await).await
    }

    /// The same resources on a server already started.
    pub async fn start_on(moto: Moto) -> Self {
        let sdk = moto.sdk_config().await;
        let dynamo = aws_sdk_dynamodb::Client::new(&sdk);
        let s3 = enfeed::adapters::aws::s3_client(&sdk, true);
        let ssm = aws_sdk_ssm::Client::new(&sdk);
        DynamoStore::create_table(&dynamo, TABLE).await.unwrap();
        DynamoConsumerState::create_table(&dynamo, CONSUMER_TABLE)
            .await
            .unwrap();
        s3.create_bucket()
            .bucket(BUCKET)
            .create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(AWS_REGION))
                    .build(),
            )
            .send()
            .await
            .unwrap();
        // Versioning makes any rewrite of a chunk visible as a second version.
        s3.put_bucket_versioning()
            .bucket(BUCKET)
            .versioning_configuration(
                VersioningConfiguration::builder()
                    .status(BucketVersioningStatus::Enabled)
                    .build(),
            )
            .send()
            .await
            .unwrap();
        let keys = tempfile::tempdir().unwrap();
        signing_keys::open_or_create(keys.path(), "CH").unwrap();
        let signing_pem = std::fs::read_to_string(keys.path().join("v1.pem")).unwrap();
        ssm.put_parameter()
            .name(format!("{KEYS_PATH}/v1"))
            .value(&signing_pem)
            .r#type(ParameterType::SecureString)
            .send()
            .await
            .unwrap();
        ssm.put_parameter()
            .name(PEPPER_PARAMETER)
            .value(new_pepper_hex())
            .r#type(ParameterType::SecureString)
            .send()
            .await
            .unwrap();
        Self {
            dynamo,
            s3,
            ssm,
            clock: Arc::new(ManualClock::new(NOW)),
            settings: Settings {
                table: TABLE.into(),
                bucket: BUCKET.into(),
                signing_keys_path: Some(KEYS_PATH.into()),
                code_pepper_parameter: Some(PEPPER_PARAMETER.into()),
                client_key_parameter: None,
                consumer_table: Some(CONSUMER_TABLE.into()),
                a2a_consumers: vec!["AT".parse().unwrap()],
                peers_file: None,
                issuers: None,
                cdn_origin_token: None,
                console_origins: Vec::new(),
                s3_path_style: true,
                registry: None,
                registry_root: None,
                registry_ca: None,
                registry_datastore: std::env::temp_dir().join("enfeed-registry-unused"),
            },
            sdk,
            signing_pem,
            _moto: moto,
        }
    }

    /// The region's settings: padding off, so tests see exactly the keys they uploaded.
    pub fn config(&self) -> Config {
        let mut config = Config::new("CH".parse().unwrap());
        config.padding_min = 0;
        config
    }

    /// A backend as a freshly started function builds it: its own SDK clients, its signing
    /// keys loaded from SSM.
    pub async fn backend(&self) -> Backend {
        self.backend_with(self.config()).await
    }

    /// The same, with other settings of the region than [`Cloud::config`]'s.
    pub async fn backend_with(&self, config: Config) -> Backend {
        enfeed::entry::lambda::backend(config, &self.settings, &self.sdk, self.clock.clone())
            .await
            .unwrap()
    }

    /// A scheduled data-prep invocation of one run, by a freshly started function.
    pub async fn scheduled_dataprep(&self) -> enfeed::services::dataprep::DataPrepReport {
        let event = scheduled_event("enfeed-dataprep");
        enfeed::entry::lambda::handlers::run_dataprep(&self.backend().await, event, ONE_RUN)
            .await
            .unwrap()
    }

    /// The public key of the signing key, derived here from the PEM rather than asked of the
    /// backend.
    pub fn verification_keys(&self) -> Vec<VerificationKey> {
        EcdsaSigner::from_pems("CH", &[("v1".into(), self.signing_pem.clone())])
            .unwrap()
            .verification_keys()
    }

    /// An object of the bucket: its bytes, Content-Type and Cache-Control.
    pub async fn object(&self, key: &str) -> Option<(Vec<u8>, String, String)> {
        let object = match self.s3.get_object().bucket(BUCKET).key(key).send().await {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return None,
            Err(e) => panic!("{e:?}"),
        };
        let content_type = object.content_type().unwrap_or_default().to_string();
        let cache_control = object.cache_control().unwrap_or_default().to_string();
        let bytes = object.body.collect().await.unwrap().into_bytes().to_vec();
        Some((bytes, content_type, cache_control))
    }

    /// A feed as a phone or peer reads it from the bucket: the index, then every chunk in it,
    /// each checked as a GAEN export and verified with the signing key.
    pub async fn feed_files(&self, feed: Feed) -> (FeedIndex, Vec<ExportFile>) {
        let (index, content_type, cache_control) = self
            .object(&feed.index_path())
            .await
            .unwrap_or_else(|| panic!("{feed} has no index"));
        assert_eq!(content_type, "application/json");
        assert_eq!(cache_control, "no-cache, max-age=0");
        let index: FeedIndex = serde_json::from_slice(&index).unwrap();
        let keys = self.verification_keys();
        let mut files = Vec::new();
        for n in &index.chunks {
            let (zip, content_type, cache_control) =
                self.object(&feed.chunk_path(*n)).await.unwrap();
            assert_eq!(content_type, "application/zip");
            // Freshness is the object's Expires, an absolute time: no max-age.
            assert_eq!(cache_control, enfeed::adapters::aws::CHUNK_CACHE_CONTROL);
            let file = read_export(&zip, &ExportLimits::default()).unwrap();
            file.verify(&keys).unwrap();
            assert_eq!(file.header.region, "CH");
            files.push(file);
        }
        (index, files)
    }

    /// How often each key (base64) appears in the chunks of a feed.
    pub async fn key_counts(&self, feed: Feed) -> BTreeMap<String, usize> {
        use base64::Engine as _;
        let mut counts = BTreeMap::new();
        for file in self.feed_files(feed).await.1 {
            for key in file.keys {
                let key = base64::engine::general_purpose::STANDARD.encode(key.key_data);
                *counts.entry(key).or_insert(0) += 1;
            }
        }
        counts
    }

    /// How many versions each chunk object has: 1 unless it was rewritten.
    pub async fn chunk_versions(&self) -> BTreeMap<String, usize> {
        let listed = self
            .s3
            .list_object_versions()
            .bucket(BUCKET)
            .send()
            .await
            .unwrap();
        assert!(!listed.is_truncated().unwrap_or(false));
        let mut versions = BTreeMap::new();
        for version in listed.versions() {
            let key = version.key().unwrap();
            let is_chunk = key.rsplit('/').next().unwrap().parse::<u32>().is_ok();
            if is_chunk {
                *versions.entry(key.to_string()).or_insert(0) += 1;
            }
        }
        versions
    }
}

/// An EventBridge scheduled event, as a schedule rule delivers it.
pub fn scheduled_event(rule: &str) -> aws_lambda_events::eventbridge::EventBridgeEvent {
    serde_json::from_value(json!({
        "version": "0",
        "id": "89d1a02d-5ec7-412e-82f5-13505f849b41",
        "detail-type": "Scheduled Event",
        "source": "aws.events",
        "account": "123456789012",
        "time": "2025-06-15T12:00:00Z",
        "region": AWS_REGION,
        "resources": [format!("arn:aws:events:{AWS_REGION}:123456789012:rule/{rule}")],
        "detail": {}
    }))
    .expect("an EventBridge event")
}
