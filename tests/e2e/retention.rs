//! SP3: keys are kept T days; expired chunks leave their index, then their files go.

use enfeed::domain::feed::Feed;
use enfeed::ports::Clock as _;
use enfeed_tests::{TestRegion, person_keys, person_keys_at};

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
