//! A small world on one machine, used by `enfeed-lab simulate` and by the end-to-end tests of the
//! user stories. It is made of:
//!
//! - several regions, each a real backend on loopback ports: plain HTTP for phones and uploads,
//!   and mutual TLS for peer backends;
//! - a certificate authority for the backends' TLS identities;
//! - one clock shared by every region.

use std::collections::BTreeMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SanType};
use serde_json::{Value, json};

use enfeed::Backend;
use enfeed::adapters::listener::{self, Limits};
use enfeed::adapters::local::{self, signing_keys};
use enfeed::domain::access::AccessPolicy;
use enfeed::domain::certificate::TrustedIssuer;
use enfeed::domain::config::Config;
use enfeed::domain::export::{ExportLimits, read_export};
use enfeed::domain::feed::{Feed, FeedIndex};
use enfeed::domain::key::{DiagnosisKey, RegionId};
use enfeed::domain::peers::{PeerConfig, Replication};
use enfeed::domain::signature::VerificationKey;
use enfeed::entry::api;
use enfeed::ports::Signer as _;
use enfeed::ports::{Clock, ManualClock};
use enfeed::services::consumer::Poll;

/// What went wrong while building or driving a world.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WorldError(String);

fn fail(e: impl std::fmt::Display) -> WorldError {
    WorldError(e.to_string())
}

/// A region of the world and whom it pulls from.
#[derive(Clone, Debug)]
pub struct RegionPlan {
    pub region: RegionId,
    /// Producers this region's consumer pulls, and which of their feeds.
    pub pulls: Vec<(RegionId, Replication)>,
    /// Regions allowed to pull this region's all-to-all feed.
    pub a2a_consumers: Vec<RegionId>,
    /// Health authorities (besides its own one-time codes) whose certificates it accepts.
    pub trusted_issuers: Vec<TrustedIssuer>,
    pub padding_min: usize,
}

impl RegionPlan {
    pub fn new(region: &str) -> Self {
        Self {
            region: region.parse().expect("a region ID"),
            pulls: Vec::new(),
            a2a_consumers: Vec::new(),
            trusted_issuers: Vec::new(),
            padding_min: 0,
        }
    }

    /// Pulls the per-region feed that `producer` keeps for this region.
    pub fn pulls_partial(mut self, producer: &str) -> Self {
        self.pulls
            .push((producer.parse().expect("a region ID"), Replication::Partial));
        self
    }

    /// Pulls all of `producer`'s local keys.
    pub fn pulls_a2a(mut self, producer: &str) -> Self {
        self.pulls
            .push((producer.parse().expect("a region ID"), Replication::A2a));
        self
    }

    pub fn serves_a2a_to(mut self, consumer: &str) -> Self {
        self.a2a_consumers
            .push(consumer.parse().expect("a region ID"));
        self
    }

    pub fn trusts(mut self, issuer: TrustedIssuer) -> Self {
        self.trusted_issuers.push(issuer);
        self
    }
}

/// A certificate authority for backends: server certificates for `127.0.0.1`, and client
/// certificates whose common name is the backend's region.
pub struct BackendCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
}

impl BackendCa {
    /// A new CA keeping its files in `dir`.
    pub fn new(dir: &Path) -> Result<Self, WorldError> {
        std::fs::create_dir_all(dir).map_err(fail)?;
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "enfeed backend CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().map_err(fail)?)
            .map_err(fail)?;
        std::fs::write(dir.join("ca.pem"), issuer.pem()).map_err(fail)?;
        Ok(Self {
            issuer,
            dir: dir.to_path_buf(),
        })
    }

    /// The CA certificate (PEM file): what servers and clients trust.
    pub fn ca_pem(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate named `common_name`, for a server on loopback if `server`; returns the
    /// paths of its PEM certificate and key.
    pub fn issue(
        &self,
        file_name: &str,
        common_name: &str,
        server: bool,
    ) -> Result<(PathBuf, PathBuf), WorldError> {
        let names = if server {
            vec!["localhost".to_string()]
        } else {
            Vec::new()
        };
        let mut params = CertificateParams::new(names).map_err(fail)?;
        if server {
            params
                .subject_alt_names
                .push(SanType::IpAddress([127, 0, 0, 1].into()));
        }
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        let key = KeyPair::generate().map_err(fail)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(fail)?;
        let (cert_path, key_path) = (
            self.dir.join(format!("{file_name}.pem")),
            self.dir.join(format!("{file_name}.key")),
        );
        std::fs::write(&cert_path, cert.pem()).map_err(fail)?;
        std::fs::write(&key_path, key.serialize_pem()).map_err(fail)?;
        Ok((cert_path, key_path))
    }
}

/// A running region.
pub struct Node {
    pub backend: Arc<Backend>,
    /// Base URL of the HTTP API (uploads, public feed, admin).
    pub public_url: String,
    /// Base URL of the mutual-TLS listener for peer backends.
    pub backend_url: String,
    admin_token: String,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        self.tasks.iter().for_each(tokio::task::JoinHandle::abort);
    }
}

/// What a phone downloaded from one region's public feed.
#[derive(Clone, Debug, Default)]
pub struct Download {
    pub keys: Vec<DiagnosisKey>,
    /// Bytes of the index and the chunks.
    pub bytes: u64,
}

/// Several regions on loopback, sharing one clock.
pub struct World {
    pub clock: Arc<ManualClock>,
    pub ca: BackendCa,
    pub nodes: BTreeMap<RegionId, Node>,
    http: reqwest::Client,
    dir: tempfile::TempDir,
}

impl World {
    /// Starts every region of `plan` at time `now`, wired as planned.
    pub async fn start(plan: &[RegionPlan], now: u64) -> Result<Self, WorldError> {
        let dir = tempfile::tempdir().map_err(fail)?;
        let clock = Arc::new(ManualClock::new(now));
        let ca = BackendCa::new(&dir.path().join("pki"))?;
        // First the signing keys and listeners of every region: consumers need both.
        let mut public_keys = BTreeMap::new();
        let mut listeners = BTreeMap::new();
        for region in plan {
            let data = dir.path().join(region.region.as_str());
            let signer = signing_keys::open_or_create(
                &data.join(local::SIGNING_KEYS),
                region.region.as_str(),
            )
            .map_err(fail)?;
            let pem_path = dir
                .path()
                .join(format!("pki/{}-signing.pem", region.region));
            std::fs::write(&pem_path, signer.verification_keys()[0].to_pem()).map_err(fail)?;
            public_keys.insert(region.region, pem_path);
            let public = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(fail)?;
            let backend = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .map_err(fail)?;
            listeners.insert(region.region, (public, backend));
        }
        let mut backend_urls = BTreeMap::new();
        for (region, (_, backend)) in &listeners {
            backend_urls.insert(
                *region,
                format!("https://{}", backend.local_addr().map_err(fail)?),
            );
        }
        let mut nodes = BTreeMap::new();
        for region in plan {
            let (public, backend_listener) = listeners.remove(&region.region).expect("bound above");
            let backend_url = backend_urls[&region.region].clone();
            let public_url = format!("http://{}", public.local_addr().map_err(fail)?);
            let (client_cert, client_key) = ca.issue(
                &format!("{}-client", region.region),
                region.region.as_str(),
                false,
            )?;
            let peers = region
                .pulls
                .iter()
                .map(|(producer, replication)| {
                    let url = backend_urls.get(producer).ok_or_else(|| {
                        fail(format!(
                            "{} pulls {producer}, which is not in the world",
                            region.region
                        ))
                    })?;
                    Ok(PeerConfig {
                        verification_keys: vec![public_keys[producer].clone()],
                        client_cert: Some(client_cert.clone()),
                        client_key: Some(client_key.clone()),
                        server_ca: Some(ca.ca_pem()),
                        ..PeerConfig::new(*producer, url.clone(), *replication)
                    })
                })
                .collect::<Result<Vec<_>, WorldError>>()?;
            let mut config = Config::new(region.region);
            config.padding_min = region.padding_min;
            let data = dir.path().join(region.region.as_str());
            let mut backend =
                enfeed::entry::local::open_backend(config, &data, clock.clone(), &peers)
                    .map_err(fail)?;
            if !region.trusted_issuers.is_empty() {
                backend
                    .trust(region.trusted_issuers.clone())
                    .map_err(fail)?;
            }
            let backend = Arc::new(backend);
            let admin_token = enfeed::domain::secret::random_token();
            let access = AccessPolicy {
                admin_token: admin_token.clone(),
                a2a_consumers: region.a2a_consumers.clone(),
                ..AccessPolicy::default()
            };
            let app = api::router(backend.clone(), access, api::ApiSettings::default());
            let (server_cert, server_key) =
                ca.issue(&format!("{}-server", region.region), "localhost", true)?;
            let tls = enfeed::adapters::tls::listener::server_config(
                &server_cert,
                &server_key,
                &ca.ca_pem(),
            )
            .map_err(fail)?;
            let tasks = vec![
                tokio::spawn(log_failure(listener::serve(
                    backend_listener,
                    app.clone(),
                    Limits::default(),
                    Some(tls),
                    std::future::pending(),
                ))),
                tokio::spawn(log_failure(listener::serve(
                    public,
                    app,
                    Limits::default(),
                    None,
                    std::future::pending(),
                ))),
            ];
            nodes.insert(
                region.region,
                Node {
                    backend,
                    public_url,
                    backend_url,
                    admin_token,
                    tasks,
                },
            );
        }
        Ok(Self {
            clock,
            ca,
            nodes,
            http: reqwest::Client::new(),
            dir,
        })
    }

    /// The folder the world keeps its files in.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    fn node(&self, region: RegionId) -> Result<&Node, WorldError> {
        self.nodes
            .get(&region)
            .ok_or_else(|| fail(format!("no region {region} in this world")))
    }

    /// Issues a one-time code at `region`, as its health authority does.
    pub async fn issue_code(&self, region: RegionId) -> Result<String, WorldError> {
        let node = self.node(region)?;
        let answer: Value = self
            .http
            .post(format!("{}/v1/admin/codes", node.public_url))
            .bearer_auth(&node.admin_token)
            .send()
            .await
            .map_err(fail)?
            .json()
            .await
            .map_err(fail)?;
        answer["code"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| fail(format!("no code in {answer}")))
    }

    /// A phone uploads `keys` to `region`, declaring `declared`, proving the diagnosis with
    /// `verification` (a code or a certificate, with its HMAC key). Returns the status and
    /// the JSON answer.
    pub async fn upload(
        &self,
        region: RegionId,
        keys: &[DiagnosisKey],
        declared: &[RegionId],
        verification: &str,
        hmac_key: Option<&[u8]>,
    ) -> Result<(u16, Value), WorldError> {
        let node = self.node(region)?;
        let keys: Vec<Value> = keys
            .iter()
            .map(|k| {
                json!({
                    "key": BASE64.encode(k.key_data),
                    "rollingStartNumber": k.rolling_start,
                    "rollingPeriod": k.rolling_period,
                    "transmissionRisk": k.transmission_risk,
                })
            })
            .collect();
        let mut body = json!({
            "temporaryExposureKeys": keys,
            "regions": declared.iter().map(RegionId::as_str).collect::<Vec<_>>(),
            "verificationPayload": verification,
        });
        if let Some(hmac_key) = hmac_key {
            body["hmacKey"] = json!(BASE64.encode(hmac_key));
        }
        let response = self
            .http
            .post(format!("{}/v1/publish", node.public_url))
            .json(&body)
            .send()
            .await
            .map_err(fail)?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.map_err(fail)?))
    }

    /// One round of the world's schedules. Every region publishes; every consumer pulls its
    /// producers; every region publishes again, which brings pulled keys to its phones.
    pub async fn publish_and_replicate(&self) -> Result<(), WorldError> {
        self.clock.advance(60);
        for node in self.nodes.values() {
            node.backend.run_dataprep().await.map_err(fail)?;
        }
        for node in self.nodes.values() {
            let report = node.backend.run_consumer(Poll::Now).await;
            if let Some(error) = report.peers.iter().find_map(|p| p.error.clone()) {
                return Err(fail(format!("{}: {error}", node.backend.config.region)));
            }
        }
        self.clock.advance(60);
        for node in self.nodes.values() {
            node.backend.run_dataprep().await.map_err(fail)?;
        }
        Ok(())
    }

    /// What a phone gets from `region`'s public feed: every chunk after `after`, each verified
    /// with the keys the region publishes.
    pub async fn download(
        &self,
        region: RegionId,
        after: u32,
    ) -> Result<(Download, u32), WorldError> {
        let node = self.node(region)?;
        let keys_body = self
            .get(&format!("{}/v1/verification-keys", node.public_url))
            .await?;
        let published: Value = serde_json::from_slice(&keys_body).map_err(fail)?;
        let keys = published["keys"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|k| {
                VerificationKey::from_pem(k["publicKeyPem"].as_str().unwrap_or_default(), "", "")
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(fail)?;
        let index_body = self
            .get(&format!(
                "{}/{}",
                node.public_url,
                Feed::Public.index_path()
            ))
            .await?;
        let index: FeedIndex = serde_json::from_slice(&index_body).map_err(fail)?;
        let mut download = Download {
            bytes: index_body.len() as u64,
            ..Download::default()
        };
        let mut newest = after;
        for n in index.chunks.into_iter().filter(|n| *n > after) {
            let zip = self
                .get(&format!(
                    "{}/{}",
                    node.public_url,
                    Feed::Public.chunk_path(n)
                ))
                .await?;
            download.bytes += zip.len() as u64;
            let file = read_export(&zip, &ExportLimits::default()).map_err(fail)?;
            file.verify(&keys).map_err(fail)?;
            download.keys.extend(file.keys);
            newest = newest.max(n);
        }
        Ok((download, newest))
    }

    async fn get(&self, url: &str) -> Result<Vec<u8>, WorldError> {
        let response = self.http.get(url).send().await.map_err(fail)?;
        if !response.status().is_success() {
            return Err(fail(format!("GET {url}: {}", response.status())));
        }
        Ok(response.bytes().await.map_err(fail)?.to_vec())
    }

    /// The current time of the world.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }
}

/// Runs a server until it stops, logging why if it failed.
async fn log_failure<E: std::fmt::Display>(server: impl Future<Output = Result<(), E>>) {
    if let Err(e) = server.await {
        tracing::error!(error = %e, "a server of the world stopped");
    }
}
