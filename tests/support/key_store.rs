//! Promises of the key store port that every adapter must keep, as one test run against each
//! (the embedded store, and DynamoDB on moto): revisions, declared regions dropped, and reads
//! in bounded pages.

use enfeed::domain::key::{DiagnosisKey, ReportType, interval_of};
use enfeed::ports::{
    IfRevised, Inserted, KeyStore, NewKeys, Origin, PublishedRange, StoreError, StoredKey,
};

use crate::NOW;

const DAY: u64 = 86_400;

fn key(byte: u8, report_type: ReportType) -> DiagnosisKey {
    DiagnosisKey {
        key_data: [byte; 16],
        rolling_start: 2_900_000,
        rolling_period: 144,
        transmission_risk: 4,
        report_type,
        days_since_onset: None,
    }
}

fn local(byte: u8, report_type: ReportType, publish_at: u64) -> StoredKey {
    StoredKey {
        key: key(byte, report_type),
        origin: Origin::Local,
        regions: vec!["CH".parse().unwrap(), "DE".parse().unwrap()],
        publish_at,
        expires_at: NOW + 30 * DAY,
        revision: false,
        peer: None,
    }
}

fn revisions(revisions: Vec<StoredKey>, if_revised: IfRevised) -> NewKeys {
    NewKeys {
        revisions: revisions.into_iter().map(StoredKey::as_revision).collect(),
        if_revised,
        now: NOW,
        ..NewKeys::default()
    }
}

async fn all(store: &dyn KeyStore) -> Vec<StoredKey> {
    let mut keys = store
        .published_between(NOW - DAY, NOW + DAY, NOW)
        .await
        .unwrap();
    keys.sort_by_key(|k| (k.key.key_data, k.publish_at));
    keys
}

/// A key is revised once, by an entry of its own published after it; a revision of a key not
/// held is a new key; and declared regions go when asked, keys and revisions staying.
pub async fn revisions_and_declared_regions(store: &dyn KeyStore) {
    use ReportType::{ConfirmedClinicalDiagnosis as Likely, ConfirmedTest as Confirmed};
    let original = NewKeys {
        keys: vec![local(1, Likely, NOW)],
        now: NOW,
        ..NewKeys::default()
    };
    assert_eq!(store.insert(original).await.unwrap(), Inserted::Stored(1));
    // Revised in the same second it was stored: still published after it.
    let first = revisions(
        vec![local(1, Confirmed, NOW), local(2, Confirmed, NOW)],
        IfRevised::Refuse,
    );
    assert_eq!(store.insert(first).await.unwrap(), Inserted::Stored(2));
    let keys = all(store).await;
    assert_eq!(keys.len(), 3, "{keys:?}");
    let (revised, revision, new) = (&keys[0], &keys[1], &keys[2]);
    assert!(!revised.revision && revised.key.report_type == Likely);
    assert!(revision.revision && revision.key.report_type == Confirmed);
    assert!(revision.publish_at > revised.publish_at);
    assert_eq!(revision.expires_at, revised.expires_at);
    assert!(!new.revision, "a revision of a key not held is a new key");
    assert_eq!(store.count().await.unwrap().local, 2, "keys, not entries");

    // Once: refused as a phone's, skipped as a peer's file read again.
    let again = revisions(vec![local(1, ReportType::Revoked, NOW)], IfRevised::Refuse);
    assert!(matches!(
        store.insert(again).await,
        Err(StoreError::AlreadyRevised(_))
    ));
    let mut mixed = revisions(vec![local(1, ReportType::Revoked, NOW)], IfRevised::Skip);
    mixed.keys.push(local(3, Confirmed, NOW));
    assert_eq!(store.insert(mixed).await.unwrap(), Inserted::Stored(1));
    assert_eq!(all(store).await.len(), 4);

    // A peer's file revises the keys pulled from that peer only: never a key uploaded here,
    // nor another peer's.
    let (de, fr) = ("DE".parse().unwrap(), "FR".parse().unwrap());
    // Used yesterday: a remote key is kept from its rolling start.
    let recent = |report_type| DiagnosisKey {
        rolling_start: interval_of(NOW - DAY),
        ..key(9, report_type)
    };
    let pulled = NewKeys {
        keys: vec![StoredKey::remote(recent(Likely), de, NOW, 30 * DAY)],
        now: NOW,
        ..NewKeys::default()
    };
    assert_eq!(store.insert(pulled).await.unwrap(), Inserted::Stored(1));
    for (key, peer) in [
        (key(1, ReportType::Revoked), de),
        (recent(ReportType::Revoked), fr),
    ] {
        let foreign = StoredKey::remote(key, peer, NOW, 30 * DAY);
        let foreign = revisions(vec![foreign], IfRevised::Skip);
        assert_eq!(store.insert(foreign).await.unwrap(), Inserted::Stored(0));
    }
    let own = StoredKey::remote(recent(ReportType::Revoked), de, NOW, 30 * DAY);
    let own = revisions(vec![own], IfRevised::Skip);
    assert_eq!(store.insert(own).await.unwrap(), Inserted::Stored(1));
    let remote: Vec<StoredKey> = all(store)
        .await
        .into_iter()
        .filter(|k| k.origin == Origin::Remote)
        .collect();
    assert_eq!(remote.len(), 2);
    assert!(remote.iter().all(|k| k.peer == Some(de)));
    assert!(remote[1].revision && remote[1].key.report_type == ReportType::Revoked);
    assert_eq!(store.count().await.unwrap().remote, 1);
    assert_eq!(all(store).await.len(), 6);

    // Declared regions go for the range asked, and only there.
    let dropped = store.forget_regions(0, NOW).await.unwrap();
    assert_eq!(dropped, 3, "the local keys published at NOW");
    for key in all(store).await {
        let remote = key.origin == Origin::Remote;
        assert_eq!(
            key.regions.is_empty(),
            remote || key.publish_at <= NOW,
            "{key:?}"
        );
    }
    assert_eq!(store.forget_regions(0, NOW).await.unwrap(), 0);
    assert_eq!(store.forget_regions(NOW, NOW + DAY).await.unwrap(), 1);
    assert!(all(store).await.iter().all(|k| k.regions.is_empty()));

    // And a revision goes with its key.
    assert_eq!(store.purge_expired(NOW + 30 * DAY).await.unwrap(), 6);
    assert_eq!(store.count().await.unwrap(), Default::default());
}

/// Reads in pages of at most `max_keys` take every key of a range once, in the store's order,
/// and a read repeated from the same place takes the same keys: data-prep's bounded runs, and
/// the repeat of a run that crashed, rest on it.
pub async fn paged_reads(store: &dyn KeyStore) {
    // Keys over three days and both origins, some expired.
    let mut keys = Vec::new();
    for byte in 0..60u8 {
        let mut key = local(
            byte,
            ReportType::ConfirmedTest,
            NOW - DAY + u64::from(byte) * 1800,
        );
        key.origin = if byte % 3 == 0 {
            Origin::Remote
        } else {
            Origin::Local
        };
        if key.origin == Origin::Remote {
            key.regions.clear();
            key.peer = Some("DE".parse().unwrap());
        }
        if byte % 7 == 0 {
            key.expires_at = NOW;
        }
        keys.push(key);
    }
    let stored = NewKeys {
        keys: keys.clone(),
        now: NOW - DAY,
        ..NewKeys::default()
    };
    assert_eq!(store.insert(stored).await.unwrap(), Inserted::Stored(60));
    let range = PublishedRange {
        after: NOW - DAY,
        through: NOW + 2 * DAY,
        now: NOW,
    };
    let whole = store.read_published(range, None, usize::MAX).await.unwrap();
    assert!(whole.next.is_none());
    // Not the first key (published at the range's start), nor the expired ones.
    let expected = keys
        .iter()
        .filter(|k| k.publish_at > range.after && k.expires_at > NOW)
        .count();
    assert_eq!(whole.keys.len(), expected);

    let mut paged = Vec::new();
    let mut from = None;
    loop {
        let page = store
            .read_published(range, from.as_ref(), 11)
            .await
            .unwrap();
        assert!(page.keys.len() <= 11);
        let again = store
            .read_published(range, from.as_ref(), 11)
            .await
            .unwrap();
        assert_eq!(again, page, "a repeated read takes the same keys");
        paged.extend(page.keys);
        match page.next {
            Some(next) => from = Some(next),
            None => break,
        }
    }
    assert_eq!(
        paged, whole.keys,
        "pages are the whole read, in order, each key once"
    );
    // A read that takes exactly what is left says nothing more waits.
    let exact = store.read_published(range, None, expected).await.unwrap();
    assert!(exact.next.is_none());
    assert_eq!(exact.keys.len(), expected);
}
