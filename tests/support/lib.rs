//! Helpers for the end-to-end tests: regions served on loopback ports with a clock the test
//! moves, an HTTP client for them, and generators of valid uploads.

pub mod cloud;
pub mod fake_peer;
pub mod key_store;
pub mod moto;

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use enfeed::adapters::listener;
pub use enfeed::adapters::listener::Limits;
use enfeed::domain::access::AccessPolicy;
use enfeed::domain::export::{ExportFile, ExportLimits, read_export};
use enfeed::domain::feed::{Feed, FeedIndex};
use enfeed::domain::key::{INTERVALS_PER_DAY, interval_of};
use enfeed::domain::signature::VerificationKey;
use enfeed::entry::api;
use enfeed::entry::peers::Peering;
use enfeed::ports::ManualClock;
use enfeed::{Backend, Config};
use serde_json::{Value, json};

/// 2025-06-15 12:00:00 UTC: the tests' "now" unless they move the clock.
pub const NOW: u64 = 1_749_988_800;
pub const ADMIN_TOKEN: &str = "test-admin-token";

/// The shared fixtures folder of the team (Google's export file, crypto test vectors).
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/fixtures")
}

/// A region's backend on a loopback port, with its own data directory and clock.
pub struct TestRegion {
    pub base: String,
    pub backend: Arc<Backend>,
    pub clock: Arc<ManualClock>,
    pub http: reqwest::Client,
    data: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestRegion {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl TestRegion {
    /// A region with default settings except padding, which is off so tests see exact keys.
    pub async fn start(region: &str) -> Self {
        let mut config = Config::new(region.parse().unwrap());
        config.padding_min = 0;
        Self::with_config(config).await
    }

    pub async fn with_config(config: Config) -> Self {
        Self::in_dir(config, tempfile::tempdir().unwrap()).await
    }

    /// A region (padding off) whose listener and API run with `limits` and `settings`.
    pub async fn with_limits(region: &str, limits: Limits, settings: api::ApiSettings) -> Self {
        let mut config = Config::new(region.parse().unwrap());
        config.padding_min = 0;
        Self::serve(config, tempfile::tempdir().unwrap(), None, limits, settings).await
    }

    /// A region signing with `keys` signing keys (`v1` to `v<keys>`), as after rotations.
    pub async fn start_with_signing_keys(region: &str, keys: usize) -> Self {
        let data = tempfile::tempdir().unwrap();
        let dir = data.path().join(enfeed::adapters::local::SIGNING_KEYS);
        enfeed::adapters::local::signing_keys::open_or_create(&dir, region).unwrap();
        for _ in 1..keys {
            enfeed::adapters::local::signing_keys::rotate(&dir).unwrap();
        }
        let mut config = Config::new(region.parse().unwrap());
        config.padding_min = 0;
        Self::in_dir(config, data).await
    }

    /// A region whose peers come from `peering` (its peers file, its trust registry), padding
    /// off; backend feeds are served as the peering grants.
    pub async fn with_peering(region: &str, peering: Peering) -> Self {
        let mut config = Config::new(region.parse().unwrap());
        config.padding_min = 0;
        Self::serve(
            config,
            tempfile::tempdir().unwrap(),
            Some(peering),
            Limits::default(),
            api::ApiSettings::default(),
        )
        .await
    }

    async fn in_dir(config: Config, data: tempfile::TempDir) -> Self {
        Self::serve(
            config,
            data,
            None,
            Limits::default(),
            api::ApiSettings::default(),
        )
        .await
    }

    async fn serve(
        config: Config,
        data: tempfile::TempDir,
        peering: Option<Peering>,
        limits: Limits,
        settings: api::ApiSettings,
    ) -> Self {
        let clock = Arc::new(ManualClock::new(NOW));
        let backend = match peering {
            Some(peering) => enfeed::entry::local::open_federated_backend(
                config,
                data.path(),
                clock.clone(),
                peering,
            ),
            None => enfeed::entry::local::open_backend(config, data.path(), clock.clone(), &[]),
        };
        let backend = Arc::new(backend.unwrap());
        let access = match backend.peering {
            Some(_) => backend.access(ADMIN_TOKEN.into()),
            None => AccessPolicy {
                admin_token: ADMIN_TOKEN.into(),
                ..Default::default()
            },
        };
        let app = api::router(backend.clone(), access, settings);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move {
            listener::serve(listener, app, limits, None, std::future::pending())
                .await
                .unwrap();
        });
        Self {
            base,
            backend,
            clock,
            http: reqwest::Client::new(),
            data,
            server,
        }
    }

    /// The region's data directory.
    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base, path.trim_start_matches('/'))
    }

    /// Issues a one-time code over the admin API.
    pub async fn issue_code(&self) -> String {
        self.issue_code_for(Value::Null).await
    }

    /// Issues a one-time code carrying `diagnosis` (`testType`, `symptomDate`; null for none).
    pub async fn issue_code_for(&self, diagnosis: Value) -> String {
        let mut request = self
            .http
            .post(self.url("v1/admin/codes"))
            .bearer_auth(ADMIN_TOKEN);
        if !diagnosis.is_null() {
            request = request.json(&diagnosis);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 201);
        let body: Value = response.json().await.unwrap();
        body["code"].as_str().unwrap().to_string()
    }

    /// Sends an upload; returns the status and the answer without its random `padding`
    /// (which every answer must carry).
    pub async fn publish(&self, body: &Value) -> (u16, Value) {
        let response = self
            .http
            .post(self.url("v1/publish"))
            .json(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let mut answer: Value = response.json().await.unwrap();
        let padding = answer
            .as_object_mut()
            .and_then(|fields| fields.remove("padding"));
        assert!(
            padding.is_some_and(|p| p.as_str().is_some_and(|p| p.len() >= 16)),
            "an answer without padding: {answer}"
        );
        (status, answer)
    }

    /// Uploads keys with a fresh code, declaring `regions`; asserts success.
    pub async fn upload(&self, keys: &[Value], regions: &[&str]) {
        let code = self.issue_code().await;
        self.upload_with(keys, regions, &code).await;
    }

    /// Uploads keys with the given code, declaring `regions`; asserts success.
    pub async fn upload_with(&self, keys: &[Value], regions: &[&str], code: &str) {
        let (status, body) = self.publish(&upload_body(keys, regions, code)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["insertedExposures"], keys.len());
    }

    /// Runs data-prep over the admin API.
    pub async fn dataprep(&self) -> Value {
        let response = self
            .http
            .post(self.url("v1/admin/run/dataprep"))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// A GET with the admin token (backend feeds need it until peers use TLS).
    pub async fn get_as_admin(&self, path: &str) -> reqwest::Response {
        self.http
            .get(self.url(path))
            .bearer_auth(ADMIN_TOKEN)
            .send()
            .await
            .unwrap()
    }

    /// The region's verification keys, fetched as a phone would.
    pub async fn verification_keys(&self) -> Vec<VerificationKey> {
        let body: Value = self
            .http
            .get(self.url("v1/verification-keys"))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                VerificationKey::from_pem(
                    k["publicKeyPem"].as_str().unwrap(),
                    k["keyId"].as_str().unwrap(),
                    k["keyVersion"].as_str().unwrap(),
                )
                .unwrap()
            })
            .collect()
    }

    /// Downloads a feed's index and every chunk in it, verifying each chunk's signature.
    pub async fn download_feed(&self, feed: Feed) -> (FeedIndex, Vec<ExportFile>) {
        let keys = self.verification_keys().await;
        let index: FeedIndex = self
            .get_as_admin(&feed.index_path())
            .await
            .json()
            .await
            .unwrap();
        let mut files = Vec::new();
        for n in &index.chunks {
            let response = self.get_as_admin(&feed.chunk_path(*n)).await;
            assert_eq!(response.status(), 200);
            let file =
                read_export(&response.bytes().await.unwrap(), &ExportLimits::default()).unwrap();
            file.verify(&keys).unwrap();
            files.push(file);
        }
        (index, files)
    }

    /// Key data (base64) of every key in every chunk of a feed.
    pub async fn feed_keys(&self, feed: Feed) -> Vec<String> {
        let (_, files) = self.download_feed(feed).await;
        files
            .iter()
            .flat_map(|f| f.keys.iter().map(|k| BASE64.encode(k.key_data)))
            .collect()
    }
}

/// The Python of the test tools (`make test` installs moto, python-tuf and the others into
/// `.venv`), or `ENFEED_PYTHON`.
pub fn venv_python() -> PathBuf {
    let python = match std::env::var_os("ENFEED_PYTHON") {
        Some(path) => PathBuf::from(path),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"),
    };
    assert!(
        python.exists(),
        "{} does not exist: run `make test`, which installs the test tools into .venv",
        python.display()
    );
    python
}

/// The interval that starts the day `days_ago` days before [`NOW`].
pub fn day_start(days_ago: u32) -> u32 {
    (interval_of(NOW) / INTERVALS_PER_DAY - days_ago) * INTERVALS_PER_DAY
}

/// A full-day key of `days_ago` days ago, made from `seed`.
pub fn key_json(seed: u8, days_ago: u32) -> Value {
    json!({
        "key": BASE64.encode([seed; 16]),
        "rollingStartNumber": day_start(days_ago),
        "rollingPeriod": 144,
        "transmissionRisk": 4,
    })
}

/// A person's keys of the `count` full days before [`NOW`]'s day, distinct by `person`.
pub fn person_keys(person: u8, count: u32) -> Vec<Value> {
    person_keys_at(NOW, person, count)
}

/// A person's keys of the `count` full days before `now`'s day, distinct by `person`.
pub fn person_keys_at(now: u64, person: u8, count: u32) -> Vec<Value> {
    let today = interval_of(now) / INTERVALS_PER_DAY * INTERVALS_PER_DAY;
    (1..=count)
        .map(|day| {
            let mut bytes = [person; 16];
            bytes[15] = day as u8;
            json!({
                "key": BASE64.encode(bytes),
                "rollingStartNumber": today - day * INTERVALS_PER_DAY,
                "rollingPeriod": 144,
                "transmissionRisk": 4,
            })
        })
        .collect()
}

pub fn upload_body(keys: &[Value], regions: &[&str], code: &str) -> Value {
    json!({
        "temporaryExposureKeys": keys,
        "regions": regions,
        "verificationPayload": code,
        "padding": BASE64.encode([0u8; 64]),
    })
}

/// A blob store that fails every chunk write after the first `allowed` ones, like a process
/// or function that dies in the middle of a data-prep run.
pub struct DiesHalfway {
    inner: Arc<dyn enfeed::ports::BlobStore>,
    allowed: std::sync::atomic::AtomicUsize,
}

impl DiesHalfway {
    pub fn new(inner: Arc<dyn enfeed::ports::BlobStore>, allowed: usize) -> Self {
        Self {
            inner,
            allowed: allowed.into(),
        }
    }
}

#[async_trait::async_trait]
impl enfeed::ports::BlobStore for DiesHalfway {
    async fn put_new(
        &self,
        name: &str,
        kind: enfeed::ports::BlobKind,
        bytes: Vec<u8>,
    ) -> Result<enfeed::ports::Put, enfeed::ports::BlobError> {
        use std::sync::atomic::Ordering;
        if self
            .allowed
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_err()
        {
            return Err(enfeed::ports::BlobError::Backend(
                "died in the middle of the run".into(),
            ));
        }
        self.inner.put_new(name, kind, bytes).await
    }

    async fn put(
        &self,
        name: &str,
        kind: enfeed::ports::BlobKind,
        bytes: Vec<u8>,
    ) -> Result<(), enfeed::ports::BlobError> {
        self.inner.put(name, kind, bytes).await
    }

    async fn get(
        &self,
        name: &str,
    ) -> Result<Option<enfeed::ports::Blob>, enfeed::ports::BlobError> {
        self.inner.get(name).await
    }

    async fn delete(&self, name: &str) -> Result<(), enfeed::ports::BlobError> {
        self.inner.delete(name).await
    }
}
