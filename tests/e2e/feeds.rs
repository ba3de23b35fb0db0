//! Data-prep and the three feeds: which keys go where, signatures, numbering, padding, caching.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use enfeed::Config;
use enfeed::domain::feed::Feed;
use enfeed::domain::key::{DiagnosisKey, ReportType};
use enfeed::ports::{NewKeys, Origin, StoredKey};
use enfeed_tests::{NOW, TestRegion, day_start, person_keys};
use serde_json::Value;

fn key_set(keys: &[Value]) -> BTreeSet<String> {
    keys.iter()
        .map(|k| k["key"].as_str().unwrap().to_string())
        .collect()
}

fn union(sets: &[&BTreeSet<String>]) -> BTreeSet<String> {
    sets.iter().flat_map(|s| s.iter().cloned()).collect()
}

fn region(r: &str) -> Feed {
    Feed::Region(r.parse().unwrap())
}

/// Stores keys as if the consumer had pulled them from a peer.
async fn store_remote_keys(region: &TestRegion, seed: u8, count: u8) -> BTreeSet<String> {
    let keys: Vec<StoredKey> = (0..count)
        .map(|i| StoredKey {
            key: DiagnosisKey {
                key_data: [seed.wrapping_add(i); 16],
                rolling_start: day_start(2),
                rolling_period: 144,
                transmission_risk: 0,
                report_type: ReportType::ConfirmedTest,
                days_since_onset: None,
            },
            origin: Origin::Remote,
            regions: vec![],
            publish_at: NOW,
            expires_at: NOW + 30 * 86_400,
            revision: false,
            peer: None,
        })
        .collect();
    let set = keys.iter().map(|k| BASE64.encode(k.key.key_data)).collect();
    region
        .backend
        .keys
        .insert(NewKeys {
            keys,
            claim: None,
            now: NOW,
            ..NewKeys::default()
        })
        .await
        .unwrap();
    set
}

#[tokio::test]
async fn each_feed_carries_exactly_the_keys_it_should() {
    let ch = TestRegion::start("CH").await;
    let alice = person_keys(1, 5); // stays home
    let bob = person_keys(2, 4); // declared Germany and France too
    let carol = person_keys(3, 3); // declared only Germany
    ch.upload(&alice, &["CH"]).await;
    ch.upload(&bob, &["CH", "DE", "FR"]).await;
    ch.upload(&carol, &["DE"]).await;
    let remote = store_remote_keys(&ch, 200, 4).await;
    ch.clock.advance(60);
    ch.dataprep().await;

    let (alice, bob, carol) = (key_set(&alice), key_set(&bob), key_set(&carol));
    let feed = async |feed| {
        ch.feed_keys(feed)
            .await
            .into_iter()
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        feed(Feed::Public).await,
        union(&[&alice, &bob, &carol, &remote])
    );
    assert_eq!(feed(Feed::AllToAll).await, union(&[&alice, &bob, &carol]));
    assert_eq!(feed(region("DE")).await, union(&[&bob, &carol]));
    assert_eq!(feed(region("FR")).await, bob);
    // No feed for the own region, none for a region nobody declared.
    assert!(feed(region("CH")).await.is_empty());
    assert!(feed(region("IT")).await.is_empty());

    // Every file names the producer only: nothing says which region a key was declared with.
    for f in [Feed::Public, Feed::AllToAll, region("DE"), region("FR")] {
        let (index, files) = ch.download_feed(f).await;
        assert_eq!(index.region.as_str(), "CH");
        assert_eq!(index.chunks, vec![1]);
        for file in files {
            assert_eq!(file.header.region, "CH");
            assert_eq!((file.header.batch_num, file.header.batch_size), (1, 1));
            let keys: Vec<_> = file.keys.iter().map(|k| k.key_data).collect();
            assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys are sorted");
        }
    }
}

#[tokio::test]
async fn chunk_numbers_only_grow_and_a_published_chunk_never_changes() {
    let ch = TestRegion::start("CH").await;
    ch.upload(&person_keys(1, 2), &["CH", "DE"]).await;
    ch.clock.advance(60);
    ch.dataprep().await;
    let first = ch.get_as_admin("v1/keys/1").await.bytes().await.unwrap();

    ch.clock.advance(3600);
    assert!(
        ch.dataprep().await["chunks"].as_array().unwrap().is_empty(),
        "nothing new, no chunk"
    );
    ch.upload(&person_keys(2, 2), &["CH"]).await;
    ch.clock.advance(60);
    ch.dataprep().await;

    let (public, _) = ch.download_feed(Feed::Public).await;
    let (de, _) = ch.download_feed(region("DE")).await;
    assert_eq!(public.chunks, vec![1, 2]);
    assert_eq!(de.chunks, vec![1], "the second upload did not declare DE");
    assert_eq!(
        ch.get_as_admin("v1/keys/1").await.bytes().await.unwrap(),
        first
    );
    assert_eq!(ch.feed_keys(Feed::Public).await.len(), 4);
    assert!(public.recommended_next_poll_time > NOW);
}

#[tokio::test]
async fn chunks_are_cached_long_and_indexes_revalidated() {
    let ch = TestRegion::start("CH").await;
    ch.upload(&person_keys(1, 1), &["CH"]).await;
    ch.clock.advance(60);
    ch.dataprep().await;
    let chunk = ch.http.get(ch.url("v1/keys/1")).send().await.unwrap();
    assert_eq!(chunk.headers()["content-type"], "application/zip");
    assert!(
        chunk.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("max-age=86400")
    );
    let index = ch.http.get(ch.url("v1/keys")).send().await.unwrap();
    assert_eq!(index.headers()["content-type"], "application/json");
    assert_eq!(index.headers()["cache-control"], "no-cache, max-age=0");

    // Near the end of its keys' T days, a chunk may be cached only until it may leave its
    // index, never past (SP3): the time left, not a day.
    let interval = ch.backend.config.dataprep_interval;
    let fresh_until = NOW + ch.backend.config.retention() - interval;
    ch.clock.set(fresh_until - 600);
    let late = ch.http.get(ch.url("v1/keys/1")).send().await.unwrap();
    assert_eq!(
        late.headers()["cache-control"],
        "public, max-age=600, immutable"
    );
    ch.clock.set(fresh_until + 1);
    let later = ch.http.get(ch.url("v1/keys/1")).send().await.unwrap();
    assert_eq!(
        later.headers()["cache-control"],
        "public, max-age=0, immutable"
    );
    assert_eq!(
        ch.http
            .get(ch.url("v1/keys/2"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
    assert_eq!(
        ch.http
            .get(ch.url("v1/keys/zero"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );
}

#[tokio::test]
async fn backend_feeds_are_not_public() {
    let ch = TestRegion::start("CH").await;
    for path in ["v1/a2a/keys", "v1/DE/keys", "v1/a2a/keys/1", "v1/DE/keys/1"] {
        let response = ch.http.get(ch.url(path)).send().await.unwrap();
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(
            response.json::<Value>().await.unwrap()["code"],
            "unauthenticated"
        );
    }
    assert_eq!(
        ch.http
            .get(ch.url("v1/keys"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
}

#[tokio::test]
async fn same_day_keys_are_published_after_the_embargo() {
    let ch = TestRegion::start("CH").await;
    let today = serde_json::json!({
        "key": BASE64.encode([9u8; 16]),
        "rollingStartNumber": day_start(0),
        "rollingPeriod": 144,
        "transmissionRisk": 2,
    });
    ch.upload(&[today], &["CH", "DE"]).await;
    ch.clock.advance(60);
    ch.dataprep().await;
    assert!(
        ch.feed_keys(Feed::Public).await.is_empty(),
        "published while still in use"
    );
    // The key's day ends at the next midnight; two hours later it may go out.
    let midnight = enfeed::domain::key::seconds_of(day_start(0) + 144);
    ch.clock.set(midnight + 7200);
    ch.dataprep().await;
    assert_eq!(
        ch.feed_keys(Feed::Public).await,
        vec![BASE64.encode([9u8; 16])]
    );
    assert_eq!(ch.feed_keys(region("DE")).await.len(), 1);
}

#[tokio::test]
async fn public_chunks_are_padded_backend_chunks_are_not() {
    let ch = TestRegion::with_config(Config::new("CH".parse().unwrap())).await;
    let keys = person_keys(1, 3);
    ch.upload(&keys, &["CH", "DE"]).await;
    ch.clock.advance(60);
    ch.dataprep().await;
    let public = ch.feed_keys(Feed::Public).await;
    assert!(
        (1000..1100).contains(&public.len()),
        "{} keys",
        public.len()
    );
    assert!(key_set(&keys).iter().all(|k| public.contains(k)));
    assert_eq!(ch.feed_keys(Feed::AllToAll).await.len(), 3);
    assert_eq!(ch.feed_keys(region("DE")).await.len(), 3);
}

#[tokio::test]
async fn every_signing_key_signs_and_each_alone_verifies() {
    let ch = TestRegion::start_with_signing_keys("CH", 2).await;
    ch.upload(&person_keys(1, 1), &["CH"]).await;
    ch.clock.advance(60);
    ch.dataprep().await;
    let keys = ch.verification_keys().await;
    assert_eq!(keys.len(), 2);
    assert_eq!(keys[0].info.key_version, "v2", "newest first");
    let (_, files) = ch.download_feed(Feed::Public).await;
    assert_eq!(files[0].signatures.len(), 2);
    for key in &keys {
        files[0].verify(std::slice::from_ref(key)).unwrap();
    }
}
