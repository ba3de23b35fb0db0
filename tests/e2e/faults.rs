//! Faults: data-prep runs that crash halfway or run twice at once lose and duplicate nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use enfeed::Backend;
use enfeed::domain::feed::Feed;
use enfeed_tests::{DiesHalfway, TestRegion, person_keys};

/// How often each key appears across all chunks of a feed.
async fn key_counts(region: &TestRegion, feed: Feed) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for key in region.feed_keys(feed).await {
        *counts.entry(key).or_insert(0) += 1;
    }
    counts
}

async fn assert_each_key_once(region: &TestRegion, expected: usize) {
    for feed in [
        Feed::Public,
        Feed::AllToAll,
        Feed::Region("DE".parse().unwrap()),
    ] {
        let counts = key_counts(region, feed).await;
        assert_eq!(counts.len(), expected, "{feed}: {counts:?}");
        assert!(
            counts.values().all(|n| *n == 1),
            "{feed} repeats keys: {counts:?}"
        );
    }
}

#[tokio::test]
async fn a_run_that_died_halfway_is_completed_by_the_next_without_rewriting() {
    let ch = TestRegion::start("CH").await;
    ch.upload(&person_keys(1, 3), &["CH", "DE"]).await;
    ch.clock.advance(60);
    let crashing = Backend {
        blobs: Arc::new(DiesHalfway::new(ch.backend.blobs.clone(), 1)),
        ..(*ch.backend).clone()
    };
    assert!(crashing.run_dataprep().await.is_err());
    let written = ch
        .backend
        .blobs
        .get("v1/keys/1")
        .await
        .unwrap()
        .expect("the first chunk was written");

    // Keys uploaded meanwhile go to the next chunks, not into the interrupted ones.
    ch.upload(&person_keys(2, 2), &["CH", "DE"]).await;
    ch.clock.advance(60);
    ch.dataprep().await; // completes the interrupted plan
    ch.dataprep().await; // publishes the later upload
    assert_eq!(
        ch.backend.blobs.get("v1/keys/1").await.unwrap().unwrap(),
        written,
        "chunk 1 was rewritten"
    );
    assert_eq!(ch.download_feed(Feed::Public).await.0.chunks, vec![1, 2]);
    assert_each_key_once(&ch, 5).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_runs_publish_every_key_exactly_once() {
    let ch = TestRegion::start("CH").await;
    let mut uploaded = 0;
    for round in 0..4u8 {
        for person in 0..3u8 {
            ch.upload(&person_keys(round * 10 + person + 1, 2), &["CH", "DE"])
                .await;
            uploaded += 2;
        }
        ch.clock.advance(60);
        let runs = (0..3).map(|_| {
            let backend = ch.backend.clone();
            tokio::spawn(async move { backend.run_dataprep().await })
        });
        for run in futures::future::join_all(runs).await {
            run.unwrap().unwrap();
        }
    }
    assert_each_key_once(&ch, uploaded).await;
    let (index, _) = ch.download_feed(Feed::Public).await;
    assert_eq!(
        index.chunks,
        (1..=index.chunks.len() as u32).collect::<Vec<_>>()
    );
}
