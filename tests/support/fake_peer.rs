//! A peer backend played by a test: it serves over HTTP whatever files the test gives it,
//! signs chunks with its own key, and yields the producer a consumer pulls it through.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::http::{StatusCode, Uri};
use enfeed::adapters::ecdsa::EcdsaSigner;
use enfeed::adapters::local::signing_keys;
use enfeed::adapters::tls::{HttpsFetch, PeerTls};
use enfeed::domain::export::ExportHeader;
use enfeed::domain::feed::FeedIndex;
use enfeed::domain::key::{DiagnosisKey, RegionId, ReportType};
use enfeed::domain::peers::{FeedFormat, PeerConfig, Replication};
use enfeed::domain::signature::VerificationKey;
use enfeed::ports::{Fetch, Signer as _, write_export};
use enfeed::services::consumer::Producer;

use crate::{NOW, day_start};

/// A peer backend played by the test: it serves whatever files the test gives it.
pub struct FakePeer {
    pub region: RegionId,
    pub url: String,
    files: Arc<Mutex<HashMap<String, Vec<u8>>>>,
    pub signer: EcdsaSigner,
    _keys: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakePeer {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakePeer {
    pub async fn start(region: &str) -> Self {
        let keys = tempfile::tempdir().unwrap();
        let signer = signing_keys::open_or_create(keys.path(), region).unwrap();
        Self::with_signer(region, signer, keys).await
    }

    /// A peer signing with `signer` (whose key files live in `keys`).
    pub async fn with_signer(region: &str, signer: EcdsaSigner, keys: tempfile::TempDir) -> Self {
        let files: Arc<Mutex<HashMap<String, Vec<u8>>>> = Arc::default();
        let served = files.clone();
        let app = axum::Router::new().fallback(move |uri: Uri| {
            let body = served
                .lock()
                .unwrap()
                .get(uri.path().trim_start_matches('/'))
                .cloned();
            async move { body.ok_or(StatusCode::NOT_FOUND) }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Self {
            region: region.parse().unwrap(),
            url,
            files,
            signer,
            _keys: keys,
            server,
        }
    }

    /// Signs from now on with a new key only, as after a roll-over that retired the old one.
    pub fn roll_over_signing_key(&mut self) {
        let keys = tempfile::tempdir().unwrap();
        let region = self.region.as_str();
        signing_keys::open_or_create(keys.path(), region).unwrap();
        signing_keys::rotate(keys.path()).unwrap();
        // Only the new key (v2) stays: the old one is retired.
        std::fs::remove_file(keys.path().join("v1.pem")).unwrap();
        self.signer = signing_keys::open_or_create(keys.path(), region).unwrap();
        self._keys = keys;
    }

    /// The public keys its files verify with.
    pub fn signer_keys(&self) -> Vec<VerificationKey> {
        self.signer.verification_keys()
    }

    /// Its newest public key as PEM, for a peers file.
    pub fn signer_pem(&self) -> String {
        self.signer.verification_keys()[0].to_pem()
    }

    pub fn serve(&self, path: &str, body: Vec<u8>) {
        self.files.lock().unwrap().insert(path.to_string(), body);
    }

    /// Publishes an index of the feed `CH` pulls (the per-region feed for CH).
    pub fn serve_index(&self, chunks: &[u32], next_poll: u64) {
        let index = FeedIndex {
            region: self.region,
            chunks: chunks.to_vec(),
            recommended_next_poll_time: next_poll,
        };
        self.serve("v1/CH/keys", serde_json::to_vec(&index).unwrap());
    }

    /// A chunk signed by this peer, of `keys`, in the header's region `region`.
    pub async fn chunk(&self, keys: &[DiagnosisKey], region: &str) -> Vec<u8> {
        self.chunk_with_revisions(keys, &[], region).await
    }

    /// A chunk of `keys` and of `revised` keys (new report types of keys published before).
    pub async fn chunk_with_revisions(
        &self,
        keys: &[DiagnosisKey],
        revised: &[DiagnosisKey],
        region: &str,
    ) -> Vec<u8> {
        let header = ExportHeader {
            start_timestamp: NOW - 3600,
            end_timestamp: NOW,
            region: region.into(),
            batch_num: 1,
            batch_size: 1,
        };
        write_export(&header, keys, revised, &self.signer)
            .await
            .unwrap()
    }

    pub async fn serve_chunk(&self, n: u32, keys: &[DiagnosisKey]) {
        let chunk = self.chunk(keys, self.region.as_str()).await;
        self.serve(&format!("v1/CH/keys/{n}"), chunk);
    }

    pub fn producer(&self, fetch: Arc<dyn Fetch>) -> Producer {
        Producer::new(
            self.config(FeedFormat::Enfeed),
            self.signer.verification_keys(),
            fetch,
        )
    }

    /// Its settings in a peers file: plain HTTP on loopback, so `insecure_http`.
    pub fn config(&self, format: FeedFormat) -> PeerConfig {
        PeerConfig {
            format,
            insecure_http: true,
            ..PeerConfig::new(self.region, self.url.clone(), Replication::Partial)
        }
    }
}

/// A client for peers on plain HTTP (loopback), as `insecure_http = true` makes.
pub fn plain_http() -> Arc<dyn Fetch> {
    Arc::new(
        HttpsFetch::with(&PeerTls {
            insecure_http: true,
            ..PeerTls::default()
        })
        .unwrap(),
    )
}

/// `count` valid keys made from `seed`.
pub fn keys(seed: u8, count: u8) -> Vec<DiagnosisKey> {
    (0..count)
        .map(|i| DiagnosisKey {
            key_data: [seed.wrapping_add(i); 16],
            rolling_start: day_start(2),
            rolling_period: 144,
            transmission_risk: 1,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        })
        .collect()
}
