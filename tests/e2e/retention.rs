//! SP3: keys are kept T days; expired chunks leave their index, then their files go. SP2:
//! stored times are hours, and declared regions go once their per-region files are out.

use enfeed::adapters::local::LocalStore;
use enfeed::domain::feed::Feed;
use enfeed::ports::Clock as _;
use enfeed_tests::{NOW, TestRegion, key_store, person_keys, person_keys_at};

#[tokio::test]
async fn after_t_days_keys_and_chunks_are_gone() {
    let ch = TestRegion::start("CH").await;
    ch.upload(&person_keys(1, 2), &["CH", "DE"]).await;
    ch.clock.advance(60);
    ch.dataprep().await;
    let interval = ch.backend.config.dataprep_interval;
    let retention = ch.backend.config.retention();

    // Just before the keys expire, the chunks leave their indexes, files still there.
    ch.clock.advance(retention - 60 - interval + 1);
    let report = ch.dataprep().await;
    assert_eq!(report["unlistedChunks"], 3, "{report}");
    for feed in [
        Feed::Public,
        Feed::AllToAll,
        Feed::Region("DE".parse().unwrap()),
    ] {
        let (index, _) = ch.download_feed(feed).await;
        assert!(
            index.chunks.is_empty(),
            "{feed} still lists {:?}",
            index.chunks
        );
        assert_eq!(ch.get_as_admin(&feed.chunk_path(1)).await.status(), 200);
    }
    assert_eq!(ch.backend.keys.count().await.unwrap().local, 2);

    // A run later, the files are deleted and the expired keys purged.
    ch.clock.advance(interval);
    let report = ch.dataprep().await;
    assert_eq!(report["deletedChunks"], 3, "{report}");
    assert_eq!(report["purgedKeys"], 2, "{report}");
    for feed in [
        Feed::Public,
        Feed::AllToAll,
        Feed::Region("DE".parse().unwrap()),
    ] {
        assert_eq!(ch.get_as_admin(&feed.chunk_path(1)).await.status(), 404);
    }
    assert_eq!(ch.backend.keys.count().await.unwrap().local, 0);

    // Chunk numbers are not reused after deletion.
    ch.upload(&person_keys_at(ch.clock.now(), 2, 1), &["CH"])
        .await;
    ch.clock.advance(60);
    ch.dataprep().await;
    assert_eq!(ch.download_feed(Feed::Public).await.0.chunks, vec![2]);
}

/// Less kept at home (SP2): stored times are hours, and a key's declared regions are dropped
/// once the per-region files that needed them are published.
#[tokio::test]
async fn times_are_kept_to_the_hour_and_declared_regions_only_until_published() {
    let ch = TestRegion::start("CH").await;
    let stored = |ch: &TestRegion| {
        let keys = ch.backend.keys.clone();
        async move { keys.published_between(0, NOW + 86_400, NOW).await.unwrap() }
    };
    ch.clock.set(NOW + 1234);
    ch.upload(&person_keys(1, 2), &["CH", "DE"]).await;
    for key in stored(&ch).await {
        assert_eq!(key.publish_at, NOW, "arrival kept as its hour");
        assert_eq!(key.expires_at, NOW + ch.backend.config.retention());
        assert_eq!(key.regions.len(), 2);
    }
    let first = ch.dataprep().await;
    assert_eq!(first["regionsDropped"], 0, "{first}");
    let de = Feed::Region("DE".parse().unwrap());
    assert_eq!(ch.feed_keys(de).await.len(), 2);

    // Later in the same hour: stored a second past the seal, and published by the next run.
    ch.clock.advance(600);
    ch.upload(&person_keys(2, 1), &["CH", "DE"]).await;
    let late = stored(&ch).await;
    assert!(
        late.iter()
            .all(|k| k.publish_at == NOW || k.publish_at == NOW + 1),
        "{late:?}"
    );
    // The next run drops the regions of what the runs before published.
    ch.clock.advance(600);
    let second = ch.dataprep().await;
    assert_eq!(second["regionsDropped"], 2, "{second}");
    assert_eq!(ch.feed_keys(de).await.len(), 3, "published files stay");
    let declared: Vec<_> = stored(&ch)
        .await
        .into_iter()
        .filter(|k| !k.regions.is_empty())
        .collect();
    assert_eq!(
        declared.len(),
        1,
        "the late key keeps its regions a run longer"
    );
    ch.clock.advance(600);
    assert_eq!(ch.dataprep().await["regionsDropped"], 1);
    assert!(stored(&ch).await.iter().all(|k| k.regions.is_empty()));
}

/// The embedded store keeps the key store's promises about revisions and declared regions.
#[tokio::test]
async fn the_embedded_store_revises_once_and_drops_declared_regions() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("keys.redb")).unwrap();
    key_store::revisions_and_declared_regions(&store).await;
}

/// The embedded store reads a range in bounded pages, each key once.
#[tokio::test]
async fn the_embedded_store_reads_in_bounded_pages() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::open(&dir.path().join("keys.redb")).unwrap();
    key_store::paged_reads(&store).await;
}
