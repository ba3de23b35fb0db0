//! The trust registry: a TUF repository of a root, two cluster authorities and four regions,
//! served over HTTP. A region configures itself from it, follows a peer's signing-key
//! roll-over and a revocation, and keeps its last good configuration when the registry is
//! rolled back, frozen or short of its signatures; the reference TUF client (python-tuf) reads the same repository.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::http::{StatusCode, Uri};
use enfeed::adapters::tuf::TufRegistry;
use enfeed::adapters::tuf::authority::{self, Lifetimes, TopKeys};
use enfeed::domain::access::Peer;
use enfeed::domain::feed::Feed;
use enfeed::domain::key::RegionId;
use enfeed::domain::peers::{FeedFormat, PeersFile};
use enfeed::domain::registry::{EntryKey, EntryTls, Offered, RegionEntry, target_name};
use enfeed::entry::peers::Peering;
use enfeed::services::consumer::Poll;
use enfeed::services::federation::Federation;
use enfeed_tests::fake_peer::{FakePeer, keys, plain_http};
use enfeed_tests::{NOW, TestRegion};

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn region(id: &str) -> RegionId {
    id.parse().unwrap()
}

/// The key holders of the registry, each key in a file of its own, and the repository.
struct Registry {
    dir: tempfile::TempDir,
    repo: PathBuf,
    submissions: std::cell::Cell<u32>,
}

impl Registry {
    async fn create() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let registry = Self {
            repo: dir.path().join("repository"),
            dir,
            submissions: 0.into(),
        };
        let root = [
            registry.key("root-1").await,
            registry.key("root-2").await,
            registry.key("root-3").await,
        ];
        let keys = TopKeys {
            root: &root,
            threshold: 2,
            targets: &registry.key("targets").await,
            snapshot: &registry.key("snapshot").await,
            timestamp: &registry.key("timestamp").await,
        };
        authority::create(&registry.repo, &keys, Lifetimes::default(), now())
            .await
            .unwrap();
        registry
    }

    /// The private key file of `holder`, made on first use.
    async fn key(&self, holder: &str) -> PathBuf {
        let path = self.dir.path().join("keys").join(holder);
        if !path.exists() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            authority::generate_key(&path).await.unwrap();
        }
        path
    }

    /// A fresh submission folder.
    fn submission(&self) -> PathBuf {
        self.submissions.set(self.submissions.get() + 1);
        self.dir
            .path()
            .join(format!("submission-{}", self.submissions.get()))
    }

    async fn publish_with(&self, submissions: &[PathBuf], lifetimes: Lifetimes, at: u64) {
        authority::publish(
            &self.repo,
            &[self.key("snapshot").await],
            &[self.key("timestamp").await],
            submissions,
            lifetimes,
            at,
        )
        .await
        .unwrap();
    }

    async fn publish(&self, submissions: &[PathBuf]) {
        self.publish_with(submissions, Lifetimes::default(), now())
            .await;
    }

    /// `parent` delegates `role` to its key, and the role signs its first version (with
    /// `entry` for a region); published together.
    async fn join(&self, parent: &str, role: &str, entry: Option<(&str, Vec<u8>)>) {
        let out = self.submission();
        let parent_key = self.key(parent).await;
        let role_key = self.key(role).await;
        authority::delegate(
            &self.repo,
            parent,
            &[parent_key],
            role,
            &authority::public_path(&role_key),
            Lifetimes::default(),
            now(),
            &out,
        )
        .await
        .unwrap();
        self.sign(role, entry, &out).await.unwrap();
        self.publish(&[out]).await;
    }

    async fn sign(
        &self,
        role: &str,
        entry: Option<(&str, Vec<u8>)>,
        out: &Path,
    ) -> Result<(), enfeed::adapters::tuf::TufError> {
        let entry = entry
            .as_ref()
            .map(|(name, bytes)| (*name, bytes.as_slice()));
        authority::sign_role(
            &self.repo,
            role,
            &[self.key(role).await],
            entry,
            Lifetimes::default(),
            now(),
            out,
        )
        .await
    }

    fn root(&self) -> Vec<u8> {
        std::fs::read(self.repo.join(authority::TRUSTED_ROOT)).unwrap()
    }
}

/// The entry of a region played by `peer`, offering its all-to-all feed to `a2a`.
fn entry_of(peer: &FakePeer, a2a: &[&str]) -> Vec<u8> {
    let verification_keys = peer
        .signer_keys()
        .iter()
        .map(|key| EntryKey {
            key_id: key.info.key_id.clone(),
            key_version: key.info.key_version.clone(),
            public_key_pem: key.to_pem(),
            not_before: None,
            not_after: None,
        })
        .collect();
    let entry = RegionEntry {
        region: peer.region,
        backend_url: peer.url.clone(),
        public_url: peer.url.clone(),
        replication: Offered {
            a2a_consumers: a2a.iter().map(|r| region(r)).collect(),
            region_feeds: true,
        },
        format: FeedFormat::Enfeed,
        index_url: None,
        export_root: None,
        verification_keys,
        tls: EntryTls::default(),
        insecure_http: true,
    };
    serde_json::to_vec_pretty(&entry).unwrap()
}

/// A static file server of the repository, whose folder the test can swap (to serve an
/// attacker's older copy).
struct Served {
    url: String,
    folder: Arc<Mutex<PathBuf>>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for Served {
    fn drop(&mut self) {
        self.server.abort();
    }
}

async fn serve(folder: &Path) -> Served {
    let folder = Arc::new(Mutex::new(folder.to_path_buf()));
    let root = folder.clone();
    let app = axum::Router::new().fallback(move |uri: Uri| {
        let path = root
            .lock()
            .unwrap()
            .join(uri.path().trim_start_matches('/'));
        async move { std::fs::read(path).map_err(|_| StatusCode::NOT_FOUND) }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Served {
        url,
        folder,
        server,
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// What python-tuf's ngclient reads: each target's region, or null.
fn python_reads(url: &str, root: &Path, state: &Path, names: &[&str]) -> serde_json::Value {
    let python = enfeed_tests::venv_python();
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("support/ngclient.py");
    let output = std::process::Command::new(&python)
        .arg(script)
        .arg(url)
        .arg(root)
        .arg(state)
        .args(names)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python-tuf failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn regions_configure_themselves_from_the_registry_and_follow_it() {
    let registry = Registry::create().await;
    let mut de = FakePeer::start("DE").await;
    let fr = FakePeer::start("FR").await;
    let us = FakePeer::start("US").await;
    let ch_peer = FakePeer::start("CH").await;
    registry.join("targets", "eu", None).await;
    registry.join("targets", "us", None).await;
    let names = [
        target_name("eu", region("CH")),
        target_name("eu", region("DE")),
        target_name("eu", region("FR")),
        target_name("us", region("US")),
    ];
    registry
        .join("eu", "CH", Some((&names[0], entry_of(&ch_peer, &["DE"]))))
        .await;
    registry
        .join("eu", "DE", Some((&names[1], entry_of(&de, &[]))))
        .await;
    registry
        .join("eu", "FR", Some((&names[2], entry_of(&fr, &[]))))
        .await;
    registry
        .join("us", "US", Some((&names[3], entry_of(&us, &[]))))
        .await;
    let served = serve(&registry.repo).await;

    // The reference client reads the repository as enfeed wrote it.
    let root_file = registry.repo.join(authority::TRUSTED_ROOT);
    let python_state = tempfile::tempdir().unwrap();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    assert_eq!(
        python_reads(&served.url, &root_file, python_state.path(), &names),
        serde_json::json!({"eu-CH.json": "CH", "eu-DE.json": "DE", "eu-FR.json": "FR",
                           "us-US.json": "US"})
    );

    // CH configures itself: it pulls the three others and serves whom the registry says.
    let datastore = tempfile::tempdir().unwrap();
    let tuf = TufRegistry::new(
        &served.url,
        registry.root(),
        datastore.path().to_path_buf(),
        plain_http(),
    )
    .unwrap();
    let peering = Peering::with_registry(
        PeersFile::default(),
        None,
        Federation::new(Arc::new(tuf), region("CH")),
    )
    .unwrap();
    let ch = TestRegion::with_peering("CH", peering).await;
    let started = std::time::Instant::now();
    let report = ch.backend.refresh_registry().await;
    println!(
        "registry refresh (4 regions, 2 clusters): {:?}",
        started.elapsed()
    );
    assert_eq!(report.error, None, "{report:?}");
    assert_eq!(report.regions, ["CH", "DE", "FR", "US"]);
    let mut producers = report.producers.clone();
    producers.sort();
    assert_eq!(producers, ["DE", "FR", "US"]);
    for (n, peer) in [&de, &fr, &us].into_iter().enumerate() {
        peer.serve_index(&[1], NOW);
        peer.serve_chunk(1, &keys(10 * n as u8, 2)).await;
    }
    let pulled = ch.backend.run_consumer(Poll::Now).await;
    assert!(pulled.peers.iter().all(|p| p.error.is_none()), "{pulled:?}");
    assert_eq!(ch.backend.keys.count().await.unwrap().remote, 6);
    let access = ch.backend.access("token".into());
    let reads = |feed: Feed, peer: &str| access.may_read(feed, Some(Peer(region(peer))));
    assert!(
        reads(Feed::AllToAll, "DE"),
        "CH's entry offers DE its a2a feed"
    );
    assert!(!reads(Feed::AllToAll, "FR"));
    assert!(reads(Feed::Region(region("FR")), "FR"));
    assert!(
        !reads(Feed::Region(region("IT")), "IT"),
        "not in the registry"
    );

    // DE rolls its signing key over: chunks signed by the new key alone are refused until DE's
    // own role publishes the new key, and accepted after, with no change at CH.
    de.roll_over_signing_key();
    de.serve_index(&[1, 2], NOW);
    de.serve_chunk(2, &keys(100, 3)).await;
    let pulled = ch.backend.run_consumer(Poll::Now).await;
    let de_report = pulled.peers.iter().find(|p| p.region == "DE").unwrap();
    assert!(
        de_report.error.as_deref().unwrap().contains("signature"),
        "{pulled:?}"
    );
    let out = registry.submission();
    registry
        .sign("DE", Some((names[1], entry_of(&de, &[]))), &out)
        .await
        .unwrap();
    registry.publish(&[out]).await;
    assert_eq!(ch.backend.refresh_registry().await.error, None);
    let pulled = ch.backend.run_consumer(Poll::Now).await;
    let de_report = pulled.peers.iter().find(|p| p.region == "DE").unwrap();
    assert_eq!((de_report.error.as_deref(), de_report.imported), (None, 3));
    let before_revocation = registry.dir.path().join("copy-before-revocation");
    copy_dir(&registry.repo, &before_revocation);

    // The EU cluster revokes FR: it is no longer pulled, nor served.
    let out = registry.submission();
    authority::revoke(
        &registry.repo,
        "eu",
        &[registry.key("eu").await],
        "FR",
        Lifetimes::default(),
        now(),
        &out,
    )
    .await
    .unwrap();
    registry.publish(&[out]).await;
    let report = ch.backend.refresh_registry().await;
    assert_eq!(report.regions, ["CH", "DE", "US"], "{report:?}");
    fr.serve_index(&[1, 2], NOW);
    fr.serve_chunk(2, &keys(200, 2)).await;
    let pulled = ch.backend.run_consumer(Poll::Now).await;
    assert!(pulled.peers.iter().all(|p| p.region != "FR"), "{pulled:?}");
    assert!(
        !reads(Feed::Region(region("FR")), "FR"),
        "FR is served no more"
    );
    assert_eq!(
        python_reads(&served.url, &root_file, python_state.path(), &names)["eu-FR.json"],
        serde_json::Value::Null,
        "python-tuf follows the revocation (the snapshot keeps FR's last version)"
    );

    // An attacker serves the registry as it was before the revocation: refused, and the
    // configuration in force stays (FR not pulled, DE still pulled).
    *served.folder.lock().unwrap() = before_revocation;
    let report = ch.backend.refresh_registry().await;
    let error = report.error.unwrap();
    assert!(error.contains("fails verification"), "{error}");
    de.serve_index(&[1, 2, 3], NOW);
    de.serve_chunk(3, &keys(110, 1)).await;
    let pulled = ch.backend.run_consumer(Poll::Now).await;
    assert!(pulled.peers.iter().all(|p| p.region != "FR"), "{pulled:?}");
    let de_report = pulled.peers.iter().find(|p| p.region == "DE").unwrap();
    assert_eq!(de_report.imported, 1);
    assert!(!reads(Feed::Region(region("FR")), "FR"));

    // A frozen registry (its timestamp expired) is refused the same way.
    *served.folder.lock().unwrap() = registry.repo.clone();
    let expired = Lifetimes {
        timestamp: 60,
        ..Lifetimes::default()
    };
    registry.publish_with(&[], expired, now() - 3600).await;
    let error = ch.backend.refresh_registry().await.error.unwrap();
    assert!(error.contains("expired"), "{error}");
    de.serve_index(&[1, 2, 3, 4], NOW);
    de.serve_chunk(4, &keys(120, 1)).await;
    let pulled = ch.backend.run_consumer(Poll::Now).await;
    let de_report = pulled.peers.iter().find(|p| p.region == "DE").unwrap();
    assert_eq!(de_report.imported, 1, "{pulled:?}");

    // A fresh timestamp brings the registry back.
    registry.publish(&[]).await;
    assert_eq!(ch.backend.refresh_registry().await.error, None);

    // A timestamp changed without its role's key (short of its threshold of signatures) is
    // refused the same way, and the configuration in force stays.
    let tampered = registry.dir.path().join("copy-tampered");
    copy_dir(&registry.repo, &tampered);
    let path = tampered.join("metadata/timestamp.json");
    let mut timestamp: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let version = timestamp["signed"]["version"].as_u64().unwrap();
    timestamp["signed"]["version"] = (version + 1).into();
    std::fs::write(&path, serde_json::to_vec(&timestamp).unwrap()).unwrap();
    *served.folder.lock().unwrap() = tampered;
    let error = ch.backend.refresh_registry().await.error.unwrap();
    assert!(error.contains("threshold"), "{error}");
    de.serve_index(&[1, 2, 3, 4, 5], NOW);
    de.serve_chunk(5, &keys(130, 1)).await;
    let pulled = ch.backend.run_consumer(Poll::Now).await;
    assert!(pulled.peers.iter().all(|p| p.region != "FR"), "{pulled:?}");
    let de_report = pulled.peers.iter().find(|p| p.region == "DE").unwrap();
    assert_eq!(de_report.imported, 1, "{pulled:?}");
}

#[tokio::test]
async fn the_publisher_refuses_entries_outside_their_delegation_and_changes_nothing() {
    let registry = Registry::create().await;
    registry.join("targets", "us", None).await;
    let us = FakePeer::start("US").await;
    let ca = FakePeer::start("CA").await;
    let us_name = target_name("us", region("US"));
    registry
        .join("us", "US", Some((&us_name, entry_of(&us, &[]))))
        .await;
    let timestamp = std::fs::read(registry.repo.join("metadata/timestamp.json")).unwrap();

    // US's role signs an entry that claims another region.
    let out = registry.submission();
    registry
        .sign("US", Some((&us_name, entry_of(&ca, &[]))), &out)
        .await
        .unwrap();
    let refused = authority::publish(
        &registry.repo,
        &[registry.key("snapshot").await],
        &[registry.key("timestamp").await],
        &[out],
        Lifetimes::default(),
        now(),
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("claims region CA"),
        "{refused}"
    );

    // US's role lists a file outside its delegation.
    let out = registry.submission();
    let ca_name = target_name("us", region("CA"));
    registry
        .sign("US", Some((&ca_name, entry_of(&ca, &[]))), &out)
        .await
        .unwrap();
    let refused = authority::publish(
        &registry.repo,
        &[registry.key("snapshot").await],
        &[registry.key("timestamp").await],
        &[out],
        Lifetimes::default(),
        now(),
    )
    .await
    .unwrap_err();
    assert!(
        refused.to_string().contains("outside its delegation"),
        "{refused}"
    );

    // A region's key cannot sign another region's role.
    let out = registry.submission();
    let forged = authority::sign_role(
        &registry.repo,
        "US",
        &[registry.key("intruder").await],
        None,
        Lifetimes::default(),
        now(),
        &out,
    )
    .await;
    assert!(forged.is_err(), "signed by a key US does not hold");
    assert_eq!(
        std::fs::read(registry.repo.join("metadata/timestamp.json")).unwrap(),
        timestamp,
        "nothing was published"
    );
}

#[tokio::test]
async fn the_consumer_function_follows_the_registry() {
    let cloud = crate::aws::Cloud::start().await;
    let registry = Registry::create().await;
    let de = FakePeer::start("DE").await;
    de.serve_index(&[1], NOW);
    de.serve_chunk(1, &keys(1, 3)).await;
    registry.join("targets", "eu", None).await;
    let name = target_name("eu", region("DE"));
    registry
        .join("eu", "DE", Some((&name, entry_of(&de, &[]))))
        .await;
    let served = serve(&registry.repo).await;

    // The consumer function as deployed: no peers file, the registry and its root from the
    // layer, its trusted metadata in the function's /tmp.
    let datastore = tempfile::tempdir().unwrap();
    let mut settings = cloud.settings.clone();
    settings.signing_keys_path = None;
    settings.registry = Some(served.url.clone());
    settings.registry_root = Some(registry.repo.join(authority::TRUSTED_ROOT));
    settings.registry_datastore = datastore.path().to_path_buf();
    let consumer = enfeed::entry::lambda::consumer_backend(
        cloud.config(),
        &settings,
        &cloud.sdk,
        cloud.clock.clone(),
    )
    .await
    .unwrap();
    let report = enfeed::entry::lambda::handlers::run_consumer(
        &consumer,
        crate::aws::scheduled_event("enfeed-consumer"),
    )
    .await
    .unwrap();
    assert_eq!(report.peers.len(), 1, "{report:?}");
    assert_eq!(report.peers[0].region, "DE");
    assert_eq!(report.peers[0].imported, 3, "{report:?}");
    assert_eq!(consumer.keys.count().await.unwrap().remote, 3);
    assert!(
        datastore.path().join("timestamp.json").exists(),
        "what the function trusts is kept for its next run"
    );
}
