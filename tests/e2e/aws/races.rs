//! Data-prep on DynamoDB and S3 when EventBridge delivers a schedule twice at once, and when a
//! run dies halfway: every key is published exactly once, no chunk number is used twice, and
//! no chunk object is ever rewritten (the bucket is versioned, so a rewrite would show).

use std::collections::BTreeMap;
use std::sync::Arc;

use enfeed::Backend;
use enfeed::domain::feed::Feed;
use enfeed::entry::lambda::handlers as lambda;
use enfeed::ports::Clock as _;
use enfeed_tests::{DiesHalfway, person_keys_at, upload_body};

use super::{Cloud, ONE_RUN, api_event, lambda_request, scheduled_event, with_iam_caller};

/// Uploads `count` days of keys of `person` through the functions.
async fn upload(cloud: &Cloud, person: u8, count: u32, regions: &[&str]) {
    let backend = Arc::new(cloud.backend().await);
    let event = with_iam_caller(
        api_event("POST", "/v1/admin/codes", None, "203.0.113.9"),
        "ha",
    );
    let response = lambda::issue_code(&backend, lambda_request(event))
        .await
        .unwrap();
    let code: serde_json::Value = serde_json::from_slice(response.body().as_ref()).unwrap();
    let keys = person_keys_at(cloud.clock.now(), person, count);
    let body = upload_body(&keys, regions, code["code"].as_str().unwrap());
    let event = api_event("POST", "/v1/publish", Some(&body), "198.51.100.7");
    let ingest = lambda::HttpFunction::new(backend.clone(), Vec::new(), None);
    let response = ingest.serve(lambda_request(event)).await.unwrap();
    assert_eq!(response.status(), 200);
}

/// Asserts that each feed has `expected` keys, each in exactly one chunk, chunk numbers
/// 1..=n without gaps, and that no chunk object has more than one version.
async fn assert_published_once(cloud: &Cloud, expected: usize) {
    for feed in [
        Feed::Public,
        Feed::AllToAll,
        Feed::Region("DE".parse().unwrap()),
    ] {
        let counts = cloud.key_counts(feed).await;
        assert_eq!(counts.len(), expected, "{feed}: {counts:?}");
        assert!(
            counts.values().all(|n| *n == 1),
            "{feed} repeats keys: {counts:?}"
        );
        let chunks = cloud.feed_files(feed).await.0.chunks;
        assert_eq!(
            chunks,
            (1..=chunks.len() as u32).collect::<Vec<_>>(),
            "{feed}"
        );
    }
    let versions = cloud.chunk_versions().await;
    assert!(!versions.is_empty());
    let rewritten: BTreeMap<_, _> = versions.iter().filter(|(_, v)| **v > 1).collect();
    assert!(rewritten.is_empty(), "chunks rewritten: {rewritten:?}");
}

#[tokio::test]
async fn two_dataprep_invocations_at_once_publish_every_key_exactly_once() {
    let cloud = Cloud::start().await;
    let mut uploaded = 0;
    for round in 0..3u8 {
        for person in 0..3u8 {
            upload(&cloud, round * 10 + person + 1, 4, &["CH", "DE"]).await;
            uploaded += 4;
        }
        cloud.clock.advance(60);
        // Two function instances, each with its own clients, handed the same schedule.
        let (a, b) = (cloud.backend().await, cloud.backend().await);
        let (ra, rb) = tokio::join!(
            lambda::run_dataprep(&a, scheduled_event("enfeed-dataprep"), ONE_RUN),
            lambda::run_dataprep(&b, scheduled_event("enfeed-dataprep"), ONE_RUN),
        );
        let (ra, rb) = (ra.unwrap(), rb.unwrap());
        // Both may report a chunk (the loser completes the winner's plan with create-only
        // puts), but no chunk appears under two numbers.
        assert!(
            !ra.chunks.is_empty() || !rb.chunks.is_empty(),
            "round {round}"
        );
        assert_published_once(&cloud, uploaded).await;
        cloud.clock.advance(3600);
    }
}

#[tokio::test]
async fn a_dataprep_run_that_failed_halfway_is_completed_by_the_rerun_without_rewriting() {
    let cloud = Cloud::start().await;
    upload(&cloud, 1, 5, &["CH", "DE"]).await;
    upload(&cloud, 2, 3, &["CH", "DE"]).await;
    cloud.clock.advance(60);
    let healthy = cloud.backend().await;
    let dying = Backend {
        blobs: Arc::new(DiesHalfway::new(healthy.blobs.clone(), 1)),
        ..healthy.clone()
    };
    let failed = lambda::run_dataprep(&dying, scheduled_event("enfeed-dataprep"), ONE_RUN).await;
    assert!(failed.is_err(), "{failed:?}");
    assert_eq!(
        cloud.chunk_versions().await.len(),
        1,
        "one chunk got out before the failure"
    );
    // Keys uploaded between the failure and the retry wait for the next plan.
    upload(&cloud, 3, 2, &["CH", "DE"]).await;
    cloud.clock.advance(60);
    // EventBridge's retry (or the next schedule) on a fresh instance.
    let retried = cloud.backend().await;
    lambda::run_dataprep(&retried, scheduled_event("enfeed-dataprep"), ONE_RUN)
        .await
        .unwrap();
    assert_published_once(&cloud, 8).await;
    cloud.clock.advance(60);
    lambda::run_dataprep(&retried, scheduled_event("enfeed-dataprep"), ONE_RUN)
        .await
        .unwrap();
    assert_published_once(&cloud, 10).await;
}

/// The load on the seal as deployed: uploads from many function instances (each with its own
/// store, and so its own fence of the seal) while data-prep runs again and again. No upload
/// checks the one seal item, and yet every key is published exactly once: data-prep moves
/// every writer's fence before it reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn uploads_from_many_instances_racing_data_prep_are_each_published_once() {
    use enfeed::adapters::aws::DynamoStore;
    use enfeed::domain::digest::sha256;
    use enfeed::domain::key::{DiagnosisKey, ReportType, interval_of};
    use enfeed::ports::{KeyStore, NewKeys, StoredKey};

    const INSTANCES: usize = 4;
    const UPLOADS: usize = 10;
    let cloud = Cloud::start().await;
    let backend = cloud.backend().await;
    let started = std::time::Instant::now();
    let writers = (0..INSTANCES).map(|instance| {
        let store = DynamoStore::new(cloud.dynamo.clone(), super::TABLE, 30 * 86_400);
        let now = cloud.clock.now();
        tokio::spawn(async move {
            for upload in 0..UPLOADS {
                let keys = (0..14u32)
                    .map(|day| {
                        let seed = [instance as u8, upload as u8, day as u8];
                        let key = DiagnosisKey {
                            key_data: sha256(&[&seed])[..16].try_into().unwrap(),
                            rolling_start: interval_of(now) - 144 * (day + 1),
                            rolling_period: 144,
                            transmission_risk: 0,
                            report_type: ReportType::ConfirmedTest,
                            days_since_onset: None,
                        };
                        let regions = vec!["CH".parse().unwrap()];
                        StoredKey::local(key, regions, now, now, 30 * 86_400)
                    })
                    .collect();
                let batch = NewKeys {
                    keys,
                    now,
                    ..NewKeys::default()
                };
                store.insert(batch).await.unwrap();
            }
        })
    });
    let writers = futures::future::join_all(writers);
    let dataprep = async {
        let mut runs = 0;
        while started.elapsed() < std::time::Duration::from_secs(600) {
            lambda::run_dataprep(&backend, scheduled_event("enfeed-dataprep"), ONE_RUN)
                .await
                .unwrap();
            runs += 1;
            if runs >= 3 && started.elapsed() > std::time::Duration::from_secs(2) {
                break;
            }
        }
        runs
    };
    let (written, runs) = tokio::join!(writers, dataprep);
    written.into_iter().for_each(|w| w.unwrap());
    let elapsed = started.elapsed();
    // What the racing runs left behind goes out with the next.
    lambda::run_dataprep(&backend, scheduled_event("enfeed-dataprep"), ONE_RUN)
        .await
        .unwrap();
    let uploads = INSTANCES * UPLOADS;
    eprintln!(
        "{uploads} uploads of 14 keys from {INSTANCES} instances in {:.1} s ({:.2} uploads/s on moto) \
         beside {runs} data-prep runs",
        elapsed.as_secs_f64(),
        uploads as f64 / elapsed.as_secs_f64()
    );
    let counts = cloud.key_counts(Feed::Public).await;
    assert_eq!(counts.len(), uploads * 14, "a key went missing");
    assert!(counts.values().all(|n| *n == 1), "a key went out twice");
    assert_eq!(cloud.key_counts(Feed::AllToAll).await.len(), uploads * 14);
}
