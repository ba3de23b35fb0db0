//! Data-prep under a backlog: a run takes at most `dataprep_max_keys` keys, so a backlog is
//! published over several runs, in the store's order, each going on where the one before
//! stopped; crashes and concurrent runs in the middle of it lose and duplicate nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use enfeed::domain::feed::Feed;
use enfeed::{Backend, Config};
use enfeed_tests::{DiesHalfway, TestRegion, person_keys};

/// A region whose data-prep takes at most four keys a run.
async fn region() -> TestRegion {
    let mut config = Config::new("CH".parse().unwrap());
    config.padding_min = 0;
    config.dataprep_max_keys = 4;
    TestRegion::with_config(config).await
}

/// Asserts every feed holds `expected` keys, each once, in chunks numbered 1..=n.
async fn assert_each_key_once(region: &TestRegion, expected: usize) {
    for feed in [
        Feed::Public,
        Feed::AllToAll,
        Feed::Region("DE".parse().unwrap()),
    ] {
        let mut counts = BTreeMap::new();
        for key in region.feed_keys(feed).await {
            *counts.entry(key).or_insert(0) += 1;
        }
        assert_eq!(counts.len(), expected, "{feed}: {counts:?}");
        assert!(counts.values().all(|n| *n == 1), "{feed}: {counts:?}");
        let (index, _) = region.download_feed(feed).await;
        assert_eq!(
            index.chunks,
            (1..=index.chunks.len() as u32).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn a_backlog_is_published_a_bounded_run_at_a_time_until_it_is_gone() {
    let ch = region().await;
    for person in 1..=5 {
        ch.upload(&person_keys(person, 3), &["CH", "DE"]).await;
    }
    ch.clock.advance(60);
    let mut runs = 0;
    loop {
        let report = ch.dataprep().await;
        runs += 1;
        let public: Vec<_> = report["chunks"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|c| c["path"].as_str().unwrap().starts_with("v1/keys/"))
            .collect();
        assert!(
            public.iter().all(|c| c["keys"].as_u64().unwrap() <= 4),
            "{report}"
        );
        if !report["moreWaiting"].as_bool().unwrap() {
            break;
        }
        assert!(runs < 10, "the backlog does not drain: {report}");
    }
    assert_eq!(runs, 4, "15 keys, 4 a run");
    assert_each_key_once(&ch, 15).await;

    // Keys uploaded after the backlog are published by the next run, after it.
    ch.upload(&person_keys(6, 2), &["CH", "DE"]).await;
    ch.clock.advance(60);
    let report = ch.dataprep().await;
    assert_eq!(report["moreWaiting"], false, "{report}");
    assert_each_key_once(&ch, 17).await;
}

#[tokio::test]
async fn drain_runs_again_while_a_backlog_waits() {
    let ch = region().await;
    for person in 1..=3 {
        ch.upload(&person_keys(person, 3), &["CH", "DE"]).await;
    }
    ch.clock.advance(60);
    let report = ch
        .backend
        .drain_dataprep(std::time::Duration::from_secs(60))
        .await
        .unwrap();
    assert!(!report.more_waiting);
    assert_eq!(
        report
            .chunks
            .iter()
            .filter(|c| c.path.starts_with("v1/keys/"))
            .count(),
        3,
        "9 keys, 4 a run"
    );
    assert_each_key_once(&ch, 9).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashes_and_concurrent_runs_in_the_middle_of_a_backlog_lose_and_repeat_nothing() {
    let ch = region().await;
    for person in 1..=6 {
        ch.upload(&person_keys(person, 3), &["CH", "DE"]).await;
    }
    ch.clock.advance(60);
    ch.dataprep().await;
    // The second part of the backlog dies after its first chunk.
    let crashing = Backend {
        blobs: Arc::new(DiesHalfway::new(ch.backend.blobs.clone(), 1)),
        ..(*ch.backend).clone()
    };
    assert!(crashing.run_dataprep().await.is_err());
    // Three runs at once, again and again, finish the backlog.
    for _ in 0..4 {
        let runs = (0..3).map(|_| {
            let backend = ch.backend.clone();
            tokio::spawn(async move { backend.run_dataprep().await })
        });
        for run in futures::future::join_all(runs).await {
            run.unwrap().unwrap();
        }
    }
    assert_each_key_once(&ch, 18).await;
}
