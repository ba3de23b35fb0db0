//! Backend-to-backend replication under faults: peers that lie, peers that break, consumers
//! that die mid-pull, foreign vendors' layouts, and who may read which backend feed.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use async_trait::async_trait;
use enfeed::Backend;
use enfeed::adapters::local::LocalStore;
use enfeed::adapters::tls::HttpsFetch;
use enfeed::domain::feed::Feed;
use enfeed::domain::key::RegionId;
use enfeed::domain::peers::FeedFormat;
use enfeed::domain::signature::VerificationKey;
use enfeed::ports::{ConsumerStateStore, Fetch, FetchError, PeerState, StoreError};
use enfeed::services::consumer::{Consumer, Poll, Producer};
use enfeed_sim::world::{RegionPlan, World};
use enfeed_tests::fake_peer::{FakePeer, keys, plain_http};
use enfeed_tests::{NOW, TestRegion, fixtures};

/// A consumer of `producers` into `backend`, keeping its state in `state`.
pub fn consumer(
    backend: &Backend,
    producers: Vec<Producer>,
    state: Arc<dyn ConsumerStateStore>,
) -> Consumer {
    Consumer::new(
        producers,
        backend.keys.clone(),
        state,
        backend.clock.clone(),
        backend.metrics.clone(),
        &backend.config,
    )
}

pub fn state_store() -> (Arc<LocalStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (
        Arc::new(LocalStore::open(&dir.path().join("state.redb")).unwrap()),
        dir,
    )
}

pub async fn remote_keys(region: &TestRegion) -> u64 {
    region.backend.keys.count().await.unwrap().remote
}

#[tokio::test]
async fn lying_or_broken_peers_are_refused_and_the_others_still_pulled() {
    let ch = TestRegion::start("CH").await;
    let (state, _dir) = state_store();
    let good = FakePeer::start("DE").await;
    good.serve_index(&[1], NOW + 600);
    good.serve_chunk(1, &keys(10, 5)).await;

    let liar = FakePeer::start("FR").await;
    let impostor = FakePeer::start("FR").await;
    let forged = impostor.chunk(&keys(50, 3), "FR").await;
    let valid = liar.chunk(&keys(60, 3), "FR").await;
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("bad signature", forged, "signature"),
        (
            "truncated zip",
            valid[..valid.len() / 2].to_vec(),
            "batch 1",
        ),
        ("oversized zip", vec![0u8; 17 << 20], "more than"),
        (
            "other region's file",
            liar.chunk(&keys(90, 2), "IT").await,
            "region",
        ),
    ];
    let run = consumer(
        &ch.backend,
        vec![good.producer(plain_http()), liar.producer(plain_http())],
        state.clone(),
    );
    for (case, chunk, reason) in cases {
        liar.serve_index(&[1], NOW);
        liar.serve("v1/CH/keys/1", chunk);
        let report = run.run(Poll::WhenDue).await;
        let (de, fr) = (&report.peers[0], &report.peers[1]);
        assert!(de.error.is_none(), "{case}: the good peer failed: {de:?}");
        let error = fr
            .error
            .as_deref()
            .unwrap_or_else(|| panic!("{case} was accepted"));
        assert!(error.contains(reason), "{case}: {error}");
        assert_eq!(fr.imported, 0, "{case}");
        assert_eq!(
            remote_keys(&ch).await,
            5,
            "{case}: only the good peer's keys are stored"
        );
        assert_eq!(
            state
                .load_peer("FR".parse().unwrap())
                .await
                .unwrap()
                .last_batch_id,
            None,
            "{case}"
        );
    }

    // A peer whose chunk numbers go backwards is refused too; what it gave before stays.
    liar.serve_index(&[1, 2], NOW);
    liar.serve_chunk(1, &keys(100, 2)).await;
    liar.serve_chunk(2, &keys(110, 2)).await;
    assert!(run.run(Poll::WhenDue).await.peers[1].error.is_none());
    assert_eq!(remote_keys(&ch).await, 9);
    liar.serve_index(&[1], NOW);
    let report = run.run(Poll::WhenDue).await;
    assert!(
        report.peers[1]
            .error
            .as_deref()
            .unwrap()
            .contains("went backwards"),
        "{report:?}"
    );
    assert_eq!(remote_keys(&ch).await, 9);
}

/// A fetch that fails, like a consumer process killed mid-pull, on its `fail_at`-th call.
struct DiesOnce {
    inner: Arc<dyn Fetch>,
    calls: AtomicUsize,
    fail_at: usize,
}

#[async_trait]
impl Fetch for DiesOnce {
    async fn get(&self, url: &str, max_bytes: usize) -> Result<Vec<u8>, FetchError> {
        if self.calls.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            return Err(FetchError::Transport {
                url: url.into(),
                reason: "killed".into(),
            });
        }
        self.inner.get(url, max_bytes).await
    }
}

/// A state store that loses the first save after a batch, like a crash between storing a
/// batch's keys and recording it as taken.
struct ForgetsOnce {
    inner: Arc<dyn ConsumerStateStore>,
    forgotten: AtomicUsize,
}

#[async_trait]
impl ConsumerStateStore for ForgetsOnce {
    async fn load_peer(&self, peer: RegionId) -> Result<PeerState, StoreError> {
        self.inner.load_peer(peer).await
    }

    async fn save_peer(&self, peer: RegionId, state: &PeerState) -> Result<(), StoreError> {
        if self.forgotten.fetch_add(1, Ordering::SeqCst) == 0 {
            return Err(StoreError::Backend("crashed before saving".into()));
        }
        self.inner.save_peer(peer, state).await
    }
}

#[tokio::test]
async fn a_consumer_killed_mid_pull_resumes_without_losing_or_duplicating_keys() {
    let ch = TestRegion::start("CH").await;
    let de = FakePeer::start("DE").await;
    de.serve_index(&[1, 2, 3], NOW);
    for n in 1..=3u8 {
        de.serve_chunk(u32::from(n), &keys(n * 10, 4)).await;
    }
    let (state, _dir) = state_store();
    // Killed while fetching chunk 2 (the third request, after the index and chunk 1).
    let dying = Arc::new(DiesOnce {
        inner: plain_http(),
        calls: AtomicUsize::new(0),
        fail_at: 3,
    });
    let report = consumer(&ch.backend, vec![de.producer(dying.clone())], state.clone())
        .run(Poll::WhenDue)
        .await;
    assert!(report.peers[0].error.is_some());
    assert_eq!(remote_keys(&ch).await, 4);
    assert_eq!(
        state
            .load_peer(de.region)
            .await
            .unwrap()
            .last_batch_id
            .as_deref(),
        Some("1")
    );
    // Crashes again, this time after storing chunk 2 but before recording it.
    let forgetful = Arc::new(ForgetsOnce {
        inner: state.clone(),
        forgotten: AtomicUsize::new(0),
    });
    let report = consumer(&ch.backend, vec![de.producer(plain_http())], forgetful)
        .run(Poll::WhenDue)
        .await;
    assert!(report.peers[0].error.is_some());
    assert_eq!(remote_keys(&ch).await, 8);
    // The next run takes chunk 2 again (nothing new in it) and chunk 3.
    let report = consumer(&ch.backend, vec![de.producer(plain_http())], state.clone())
        .run(Poll::WhenDue)
        .await;
    assert!(report.peers[0].error.is_none(), "{report:?}");
    assert_eq!((report.peers[0].batches, report.peers[0].imported), (2, 4));
    assert_eq!(remote_keys(&ch).await, 12);
    // Every key reaches CH's phones exactly once.
    ch.clock.advance(60);
    ch.dataprep().await;
    let published = ch.feed_keys(Feed::Public).await;
    let distinct: std::collections::BTreeSet<_> = published.iter().collect();
    assert_eq!((published.len(), distinct.len()), (12, 12));
    // Remote keys never leave CH on its backend feeds.
    assert!(ch.feed_keys(Feed::AllToAll).await.is_empty());
}

#[tokio::test]
async fn the_recommended_next_poll_time_is_honoured() {
    let ch = TestRegion::start("CH").await;
    let de = FakePeer::start("DE").await;
    de.serve_index(&[1], NOW + 3600);
    de.serve_chunk(1, &keys(1, 2)).await;
    let (state, _dir) = state_store();
    let run = consumer(&ch.backend, vec![de.producer(plain_http())], state);
    assert_eq!(run.run(Poll::WhenDue).await.peers[0].batches, 1);
    de.serve_index(&[1, 2], NOW + 7200);
    de.serve_chunk(2, &keys(9, 2)).await;
    assert_eq!(
        run.run(Poll::WhenDue).await.peers[0].not_before,
        Some(NOW + 3600)
    );
    ch.clock.set(NOW + 3600);
    assert_eq!(run.run(Poll::WhenDue).await.peers[0].batches, 1);
    assert_eq!(remote_keys(&ch).await, 4);
}

#[tokio::test]
async fn googles_export_is_imported_through_a_gaen_index_peer() {
    // A day after the file's window, when its keys were current.
    let mut config = enfeed::Config::new("CH".parse().unwrap());
    config.padding_min = 0;
    let ch = TestRegion::with_config(config).await;
    ch.clock.set(1_590_246_000 + 86_400);
    let us = FakePeer::start("US").await;
    let dir = fixtures().join("google-export-example");
    let name = "exposureKeyExport-US/1590159600-1590246000-00001.zip";
    us.serve("index.txt", format!("{name}\n").into_bytes());
    us.serve(
        name,
        std::fs::read(dir.join("testExport-2-records-1-of-1.zip")).unwrap(),
    );
    let pem = std::fs::read_to_string(dir.join("public.pem")).unwrap();
    let key = VerificationKey::from_pem(&pem, "some_id", "1").unwrap();
    let (state, _dir) = state_store();
    let producer = Producer::new(us.config(FeedFormat::GaenIndex), vec![key], plain_http());
    let run = consumer(&ch.backend, vec![producer], state.clone());
    let report = run.run(Poll::WhenDue).await;
    assert!(report.peers[0].error.is_none(), "{report:?}");
    assert_eq!((report.peers[0].batches, report.peers[0].imported), (1, 2));
    assert_eq!(
        state
            .load_peer(us.region)
            .await
            .unwrap()
            .last_batch_id
            .as_deref(),
        Some(name)
    );
    assert_eq!(
        run.run(Poll::WhenDue).await.peers[0].batches,
        0,
        "a file is taken once"
    );
    ch.clock.advance(60);
    ch.dataprep().await;
    let mut published = ch.feed_keys(Feed::Public).await;
    published.sort();
    assert_eq!(
        published,
        vec!["Fy/EgOWYSQw0F3YEM5sVQw==", "K2MFOsSDI43hdhaehh89zQ=="]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_feeds_are_served_only_to_entitled_peers_over_mutual_tls() {
    let plan = [
        RegionPlan::new("AT").serves_a2a_to("BE"),
        RegionPlan::new("BE").pulls_a2a("AT"),
        RegionPlan::new("CZ").pulls_partial("AT"),
    ];
    let world = World::start(&plan, NOW).await.unwrap();
    let at = &world.nodes[&"AT".parse().unwrap()];
    let client = |region: &str| {
        let (cert, key) = world
            .ca
            .issue(&format!("probe-{region}"), region, false)
            .unwrap();
        HttpsFetch::new(Some((&cert, &key)), Some(&world.ca.ca_pem())).unwrap()
    };
    let get = async |fetch: &HttpsFetch, path: &str| {
        fetch
            .get(&format!("{}/{path}", at.backend_url), 1 << 20)
            .await
    };
    let status = |result: Result<Vec<u8>, FetchError>| match result {
        Ok(_) => 200,
        Err(FetchError::Status { status, .. }) => status,
        Err(other) => panic!("{other}"),
    };
    let (be, cz) = (client("BE"), client("CZ"));
    assert_eq!(
        status(get(&be, "v1/a2a/keys").await),
        200,
        "BE is an a2a consumer"
    );
    assert_eq!(
        status(get(&be, "v1/BE/keys").await),
        200,
        "its own per-region feed"
    );
    assert_eq!(status(get(&cz, "v1/CZ/keys").await), 200);
    assert_eq!(
        status(get(&cz, "v1/BE/keys").await),
        403,
        "another region's feed"
    );
    assert_eq!(
        status(get(&cz, "v1/a2a/keys").await),
        403,
        "not an a2a consumer"
    );
    assert_eq!(
        status(get(&cz, "v1/keys").await),
        200,
        "the public feed stays open"
    );
    // Without a client certificate, or with one from another CA, there is no connection.
    let anonymous = HttpsFetch::new(None, Some(&world.ca.ca_pem())).unwrap();
    assert!(matches!(
        get(&anonymous, "v1/keys").await,
        Err(FetchError::Transport { .. })
    ));
    let stranger_dir = tempfile::tempdir().unwrap();
    let stranger_ca = enfeed_sim::world::BackendCa::new(stranger_dir.path()).unwrap();
    let (cert, key) = stranger_ca.issue("rogue", "BE", false).unwrap();
    let rogue = HttpsFetch::new(Some((&cert, &key)), Some(&world.ca.ca_pem())).unwrap();
    assert!(matches!(
        get(&rogue, "v1/a2a/keys").await,
        Err(FetchError::Transport { .. })
    ));
}
