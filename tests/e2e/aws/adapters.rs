//! The DynamoDB, S3 and SSM adapters against moto: each promise of the ports.

use std::collections::BTreeMap;
use std::sync::Arc;

use enfeed::adapters::aws::{DynamoConsumerState, DynamoStore, S3BlobStore, load_signer};
use enfeed::domain::diagnosis::Diagnosis;
use enfeed::domain::feed::Feed;
use enfeed::domain::key::{DiagnosisKey, ReportType};
use enfeed::domain::publication::{ChunkRecord, FeedRecord, Publication};
use enfeed::ports::Signer as _;
use enfeed::ports::{
    BlobKind, BlobStore, CodeClaim, CodeRecord, CodeRefused, CodeStore, ConsumerStateStore,
    Inserted, KeyStore, NewKeys, Origin, PeerState, PublicationStore, Put, StoreError, StoredKey,
};
use enfeed_tests::NOW;

use super::{BUCKET, CONSUMER_TABLE, Cloud, KEYS_PATH, TABLE};

const DAY: u64 = 86_400;

fn store(cloud: &Cloud) -> DynamoStore {
    DynamoStore::new(cloud.dynamo.clone(), TABLE, 30 * DAY)
}

fn stored(byte: u8, origin: Origin, publish_at: u64) -> StoredKey {
    StoredKey {
        key: DiagnosisKey {
            key_data: [byte; 16],
            rolling_start: 2_900_000,
            rolling_period: 144,
            transmission_risk: 4,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: Some(-2),
        },
        origin,
        regions: match origin {
            Origin::Local => vec!["CH".parse().unwrap(), "DE".parse().unwrap()],
            Origin::Remote => Vec::new(),
        },
        publish_at,
        expires_at: NOW + 30 * DAY,
        revision: false,
        peer: None,
    }
}

fn batch(keys: Vec<StoredKey>, claim: Option<CodeClaim>) -> NewKeys {
    NewKeys {
        keys,
        claim,
        now: NOW,
        ..NewKeys::default()
    }
}

fn claim(code: u8, upload: u8) -> CodeClaim {
    CodeClaim {
        code_hash: [code; 32],
        upload_digest: [upload; 32],
    }
}

async fn add_code(store: &DynamoStore, code: u8, expires_at: u64) {
    store
        .add_code(CodeRecord {
            code_hash: [code; 32],
            issued_at: NOW - 60,
            expires_at,
            diagnosis: Diagnosis::default(),
            issued_by: None,
        })
        .await
        .unwrap();
}

#[tokio::test]
async fn chunks_are_written_once_and_never_overwritten_and_indexes_are_replaced() {
    let cloud = Cloud::start().await;
    let blobs = S3BlobStore::new(cloud.s3.clone(), BUCKET);
    let chunk = BlobKind::Chunk {
        fresh_until: NOW + 20 * DAY,
    };
    let put = blobs.put_new("v1/keys/1", chunk, b"first".to_vec());
    assert_eq!(put.await.unwrap(), Put::Created);
    let again = blobs.put_new("v1/keys/1", chunk, b"second".to_vec());
    assert_eq!(again.await.unwrap(), Put::AlreadyExists);
    let (bytes, content_type, cache_control) = cloud.object("v1/keys/1").await.unwrap();
    assert_eq!(bytes, b"first");
    assert_eq!(content_type, "application/zip");
    assert_eq!(cache_control, enfeed::adapters::aws::CHUNK_CACHE_CONTROL);
    // Caches keep it until an absolute time, its fresh_until: whenever they fetch it.
    let head = cloud
        .s3
        .head_object()
        .bucket(BUCKET)
        .key("v1/keys/1")
        .send()
        .await
        .unwrap();
    assert_eq!(
        head.expires_string(),
        Some(
            aws_sdk_s3::primitives::DateTime::from_secs((NOW + 20 * DAY) as i64)
                .fmt(aws_sdk_s3::primitives::DateTimeFormat::HttpDate)
                .unwrap()
                .as_str()
        )
    );
    let tags = cloud
        .s3
        .get_object_tagging()
        .bucket(BUCKET)
        .key("v1/keys/1")
        .send()
        .await
        .unwrap();
    let tags: Vec<_> = tags
        .tag_set()
        .iter()
        .map(|t| (t.key(), t.value()))
        .collect();
    assert_eq!(tags, [("enfeed-kind", "chunk")], "the lifecycle rule's tag");
    assert_eq!(cloud.chunk_versions().await["v1/keys/1"], 1);

    for index in [&b"[1]"[..], b"[1,2]"] {
        blobs
            .put("v1/a2a/keys", BlobKind::Index, index.to_vec())
            .await
            .unwrap();
    }
    let (bytes, content_type, cache_control) = cloud.object("v1/a2a/keys").await.unwrap();
    assert_eq!(bytes, b"[1,2]");
    assert_eq!(content_type, "application/json");
    assert_eq!(cache_control, "no-cache, max-age=0");

    let blob = blobs.get("v1/keys/1").await.unwrap().unwrap();
    assert_eq!((blob.kind, blob.bytes), (chunk, b"first".to_vec()));
    assert_eq!(
        blobs.get("v1/a2a/keys").await.unwrap().unwrap().kind,
        BlobKind::Index
    );
    assert_eq!(blobs.get("v1/keys/2").await.unwrap(), None);
    blobs.delete("v1/keys/1").await.unwrap();
    blobs.delete("v1/keys/1").await.unwrap();
    assert_eq!(blobs.get("v1/keys/1").await.unwrap(), None);
    assert!(blobs.get("v1/../keys/1").await.is_err());
}

#[tokio::test]
async fn keys_are_deduplicated_by_key_data_and_read_by_publication_time() {
    let cloud = Cloud::start().await;
    let store = store(&cloud);
    let first = vec![
        stored(1, Origin::Local, NOW),
        stored(2, Origin::Local, NOW + 10),
        stored(2, Origin::Local, NOW + 10),
    ];
    assert_eq!(
        store.insert(batch(first, None)).await.unwrap(),
        Inserted::Stored(2)
    );
    let second = vec![
        stored(2, Origin::Local, NOW + 20),
        stored(3, Origin::Remote, NOW + 20),
    ];
    assert_eq!(
        store.insert(batch(second, None)).await.unwrap(),
        Inserted::Stored(1)
    );
    let counts = store.count().await.unwrap();
    assert_eq!((counts.local, counts.remote), (2, 1));

    let read = store
        .published_between(NOW - 1, NOW + 20, NOW)
        .await
        .unwrap();
    let mut found: Vec<_> = read
        .iter()
        .map(|k| (k.key.key_data[0], k.publish_at))
        .collect();
    found.sort();
    assert_eq!(found, [(1, NOW), (2, NOW + 10), (3, NOW + 20)]);
    let local = read.iter().find(|k| k.key.key_data[0] == 2).unwrap();
    assert_eq!(
        local,
        &stored(2, Origin::Local, NOW + 10),
        "every field round-trips"
    );
    let remote = read.iter().find(|k| k.key.key_data[0] == 3).unwrap();
    assert_eq!(remote, &stored(3, Origin::Remote, NOW + 20));
    // Bounds: after is exclusive, through inclusive; ranges span day partitions.
    let later = store.published_between(NOW, NOW + 10, NOW).await.unwrap();
    assert_eq!(later.len(), 1);
    assert!(
        store
            .published_between(NOW + 20, NOW + 5 * DAY, NOW)
            .await
            .unwrap()
            .is_empty()
    );
    let wide = store.published_between(NOW - 3 * DAY, NOW + 3 * DAY, NOW);
    assert_eq!(wide.await.unwrap().len(), 3);

    // Past 60 keys (no code), the store works in transactions of at most 48 keys.
    let many: Vec<_> = (10..110)
        .map(|b| stored(b, Origin::Remote, NOW + 30))
        .collect();
    assert_eq!(
        store.insert(batch(many.clone(), None)).await.unwrap(),
        Inserted::Stored(100)
    );
    assert_eq!(
        store.insert(batch(many, None)).await.unwrap(),
        Inserted::Stored(0)
    );
}

#[tokio::test]
async fn a_code_is_consumed_with_its_keys_and_a_retry_is_recognised() {
    let cloud = Cloud::start().await;
    let store = store(&cloud);
    add_code(&store, 1, NOW + 3600).await;
    assert!(matches!(
        store
            .add_code(CodeRecord {
                code_hash: [1; 32],
                issued_at: NOW,
                expires_at: NOW + 60,
                diagnosis: Diagnosis::default(),
                issued_by: None,
            })
            .await,
        Err(StoreError::Conflict(_))
    ));
    store.check_code(&claim(1, 7), NOW).await.unwrap();
    let keys = vec![stored(1, Origin::Local, NOW), stored(2, Origin::Local, NOW)];
    assert_eq!(
        store
            .insert(batch(keys.clone(), Some(claim(1, 7))))
            .await
            .unwrap(),
        Inserted::Stored(2)
    );
    // The same upload again (a phone that lost the answer): nothing new, same answer.
    assert_eq!(
        store
            .insert(batch(keys.clone(), Some(claim(1, 7))))
            .await
            .unwrap(),
        Inserted::Replayed(2)
    );
    store.check_code(&claim(1, 7), NOW).await.unwrap();
    // Another upload with the used code is refused, and stores nothing.
    let other = vec![stored(9, Origin::Local, NOW)];
    assert!(matches!(
        store.insert(batch(other.clone(), Some(claim(1, 8)))).await,
        Err(StoreError::Code(CodeRefused::Used))
    ));
    assert!(matches!(
        store.check_code(&claim(1, 8), NOW).await,
        Err(StoreError::Code(CodeRefused::Used))
    ));
    assert!(matches!(
        store.insert(batch(other.clone(), Some(claim(2, 8)))).await,
        Err(StoreError::Code(CodeRefused::Unknown))
    ));
    add_code(&store, 3, NOW - 1).await;
    assert!(matches!(
        store.insert(batch(other, Some(claim(3, 8)))).await,
        Err(StoreError::Code(CodeRefused::Expired))
    ));
    assert_eq!(store.count().await.unwrap().local, 2);

    // Two different uploads racing for one code: exactly one wins.
    add_code(&store, 4, NOW + 3600).await;
    let (a, b) = tokio::join!(
        store.insert(batch(
            vec![stored(20, Origin::Local, NOW)],
            Some(claim(4, 20))
        )),
        store.insert(batch(
            vec![stored(21, Origin::Local, NOW)],
            Some(claim(4, 21))
        )),
    );
    let outcomes = [a, b];
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Ok(Inserted::Stored(1))))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes
            .iter()
            .filter(|o| matches!(o, Err(StoreError::Code(CodeRefused::Used))))
            .count(),
        1,
        "{outcomes:?}"
    );
    assert_eq!(store.count().await.unwrap().local, 3);
}

#[tokio::test]
async fn keys_written_behind_the_seal_are_moved_past_it() {
    let cloud = Cloud::start().await;
    let store = store(&cloud);
    assert_eq!(store.seal(NOW).await.unwrap(), NOW);
    assert_eq!(store.seal(NOW - 100).await.unwrap(), NOW, "never back");
    assert_eq!(store.seal(NOW + 5).await.unwrap(), NOW + 5);
    // A late writer whose keys would be published before the seal.
    let late = vec![
        stored(1, Origin::Local, NOW - 50),
        stored(2, Origin::Local, NOW + 500),
    ];
    assert_eq!(
        store.insert(batch(late, None)).await.unwrap(),
        Inserted::Stored(2)
    );
    assert!(
        store
            .published_between(0, NOW + 5, NOW)
            .await
            .unwrap()
            .is_empty()
    );
    let mut read = store
        .published_between(NOW + 5, NOW + 500, NOW)
        .await
        .unwrap();
    read.sort_by_key(|k| k.publish_at);
    let placed: Vec<_> = read
        .iter()
        .map(|k| (k.key.key_data[0], k.publish_at))
        .collect();
    assert_eq!(placed, [(1, NOW + 6), (2, NOW + 500)]);

    // Writers racing a moving seal: every key lands after the seal that was in force when it
    // was written, so a reader that read up to any seal never misses one.
    let sealer = async {
        let mut seals = Vec::new();
        for step in 1..=10 {
            seals.push(store.seal(NOW + 5 + step).await.unwrap());
        }
        seals
    };
    let writers = async {
        for byte in 100..110u8 {
            store
                .insert(batch(vec![stored(byte, Origin::Local, NOW)], None))
                .await
                .unwrap();
        }
    };
    let (seals, ()) = tokio::join!(sealer, writers);
    assert_eq!(*seals.last().unwrap(), NOW + 15);
    let after_seals = store
        .published_between(NOW + 5, NOW + DAY, NOW)
        .await
        .unwrap();
    assert_eq!(after_seals.len(), 12);
}

#[tokio::test]
async fn expired_keys_are_never_read_and_are_purged_with_their_markers() {
    let cloud = Cloud::start().await;
    let store = store(&cloud);
    let mut old = stored(1, Origin::Local, NOW - 40 * DAY);
    old.expires_at = NOW - 10 * DAY;
    let mut expiring = stored(2, Origin::Remote, NOW - 29 * DAY);
    expiring.expires_at = NOW + 60;
    let fresh = stored(3, Origin::Local, NOW);
    store
        .insert(NewKeys {
            keys: vec![old.clone(), expiring, fresh],
            claim: None,
            now: NOW - 40 * DAY,
            ..NewKeys::default()
        })
        .await
        .unwrap();
    let read = store
        .published_between(NOW - 41 * DAY, NOW, NOW)
        .await
        .unwrap();
    assert_eq!(read.len(), 2, "moto never expires items: the store filters");
    assert_eq!(store.purge_expired(NOW).await.unwrap(), 1);
    assert_eq!(store.purge_expired(NOW).await.unwrap(), 0);
    let counts = store.count().await.unwrap();
    assert_eq!((counts.local, counts.remote), (1, 1));
    assert_eq!(store.purge_expired(NOW + 61).await.unwrap(), 1);
    // The key data is gone with its marker: the same key is new again.
    let seen = cloud
        .dynamo
        .get_item()
        .table_name(TABLE)
        .key(
            "pk",
            aws_sdk_dynamodb::types::AttributeValue::S(format!("T#{}", "01".repeat(16))),
        )
        .key("sk", aws_sdk_dynamodb::types::AttributeValue::S("T".into()))
        .send()
        .await
        .unwrap();
    assert!(seen.item.is_none());
    let mut again = old;
    again.publish_at = NOW + 100;
    again.expires_at = NOW + 30 * DAY;
    assert_eq!(
        store.insert(batch(vec![again], None)).await.unwrap(),
        Inserted::Stored(1)
    );
}

#[tokio::test]
async fn wrong_attempts_are_counted_atomically() {
    let cloud = Cloud::start().await;
    let store = Arc::new(store(&cloud));
    let mut counting = tokio::task::JoinSet::new();
    for _ in 0..20 {
        let store = store.clone();
        counting.spawn(async move { store.count_wrong_attempt("192.0.2.1", NOW).await.unwrap() });
    }
    let mut counts: Vec<u32> = counting.join_all().await;
    counts.sort();
    assert_eq!(counts, (1..=20).collect::<Vec<_>>());
    assert_eq!(store.wrong_attempts("192.0.2.1", NOW).await.unwrap(), 20);
    assert_eq!(
        store
            .count_wrong_attempt("192.0.2.1", NOW + 3600)
            .await
            .unwrap(),
        1
    );
    assert_eq!(store.wrong_attempts("198.51.100.1", NOW).await.unwrap(), 0);
}

fn publication(chunks: u32) -> Publication {
    let records = (1..=chunks)
        .map(|number| ChunkRecord {
            number,
            published_at: NOW + u64::from(number),
            expires_at: NOW + 30 * DAY + u64::from(number) * 7919,
            keys: number * 31 % 1000,
            bytes: u64::from(number) * 104_729 % 500_000,
            unlisted_at: None,
        })
        .collect();
    let mut feeds = BTreeMap::new();
    feeds.insert(
        Feed::Public,
        FeedRecord {
            last_number: chunks,
            chunks: records,
        },
    );
    Publication {
        published_through: NOW,
        feeds,
        ..Publication::default()
    }
}

#[tokio::test]
async fn publication_state_is_saved_by_compare_and_set() {
    let cloud = Cloud::start().await;
    let store = store(&cloud);
    assert_eq!(store.load().await.unwrap(), (0, Publication::default()));
    let first = publication(3);
    store.save(0, &first).await.unwrap();
    assert!(matches!(
        store.save(0, &first).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(store.load().await.unwrap(), (1, first));
    // A state of a year of hourly chunks outgrows one item: it is split, and read back whole.
    let large = publication(60_000);
    store.save(1, &large).await.unwrap();
    assert_eq!(store.load().await.unwrap(), (2, large));
    let small = publication(1);
    assert!(matches!(
        store.save(1, &small).await,
        Err(StoreError::Conflict(_))
    ));
    store.save(2, &small).await.unwrap();
    assert_eq!(store.load().await.unwrap(), (3, small));
    // The parts of older versions are gone.
    let items = cloud
        .dynamo
        .query()
        .table_name(TABLE)
        .key_condition_expression("pk = :pk")
        .expression_attribute_values(
            ":pk",
            aws_sdk_dynamodb::types::AttributeValue::S("PUB".into()),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(items.count(), 2, "the head and one part");

    // Two saves racing from the same version: one wins.
    let (two, four) = (publication(2), publication(4));
    let (a, b) = tokio::join!(store.save(3, &two), store.save(3, &four));
    assert!(a.is_ok() != b.is_ok(), "{a:?} {b:?}");
    assert_eq!(store.load().await.unwrap().0, 4);
}

#[tokio::test]
async fn signing_keys_come_from_ssm_newest_first() {
    let cloud = Cloud::start().await;
    let keys = tempfile::tempdir().unwrap();
    enfeed::adapters::local::signing_keys::open_or_create(keys.path(), "CH").unwrap();
    enfeed::adapters::local::signing_keys::rotate(keys.path()).unwrap();
    let v2 = std::fs::read_to_string(keys.path().join("v2.pem")).unwrap();
    cloud
        .ssm
        .put_parameter()
        .name(format!("{KEYS_PATH}/v2"))
        .value(&v2)
        .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
        .send()
        .await
        .unwrap();
    let signer = load_signer(&cloud.ssm, KEYS_PATH, "228").await.unwrap();
    let versions: Vec<_> = signer
        .signature_infos()
        .into_iter()
        .map(|i| (i.key_id, i.key_version))
        .collect();
    assert_eq!(
        versions,
        [("228".into(), "v2".into()), ("228".into(), "v1".into())]
    );
    let signatures = signer.sign(b"export.bin").await.unwrap();
    for (key, signature) in signer.verification_keys().iter().zip(&signatures) {
        assert!(key.verify(b"export.bin", signature));
    }
    let missing = load_signer(&cloud.ssm, "/enfeed/XX/signing-keys", "XX").await;
    let message = missing.err().unwrap().to_string();
    assert!(message.contains("/enfeed/XX/signing-keys/v1"), "{message}");
}

#[tokio::test]
async fn the_consumer_keeps_its_place_per_peer() {
    let cloud = Cloud::start().await;
    let state = DynamoConsumerState::new(cloud.dynamo.clone(), CONSUMER_TABLE);
    let (de, at) = ("DE".parse().unwrap(), "AT".parse().unwrap());
    assert_eq!(state.load_peer(de).await.unwrap(), PeerState::default());
    let placed = PeerState {
        last_batch_id: Some("12".into()),
        recommended_next_poll_time: NOW + 3600,
    };
    state.save_peer(de, &placed).await.unwrap();
    assert_eq!(state.load_peer(de).await.unwrap(), placed);
    assert_eq!(state.load_peer(at).await.unwrap(), PeerState::default());
    let moved = PeerState {
        last_batch_id: Some("13".into()),
        recommended_next_poll_time: NOW + 7200,
    };
    state.save_peer(de, &moved).await.unwrap();
    assert_eq!(state.load_peer(de).await.unwrap(), moved);
}

/// DynamoDB keeps the key store's promises about revisions and declared regions.
#[tokio::test]
async fn declared_regions_are_dropped_once_published_and_keys_revised_once() {
    let cloud = Cloud::start().await;
    enfeed_tests::key_store::revisions_and_declared_regions(&store(&cloud)).await;
}

/// DynamoDB reads a range in bounded pages across its partitions, each key once.
#[tokio::test]
async fn keys_are_read_in_bounded_pages_across_partitions() {
    let cloud = Cloud::start().await;
    enfeed_tests::key_store::paged_reads(&store(&cloud)).await;
}
