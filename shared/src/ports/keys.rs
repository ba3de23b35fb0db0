//! The key store: Diagnosis Keys by the time they may be published, local or remote, each
//! with the time it must be gone (SP3), and the seal that data-prep reads up to.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{CodeClaim, StoreError};
use std::collections::{HashMap, HashSet};

use crate::domain::key::{DiagnosisKey, KEY_LEN, RegionId, UnixSeconds};
pub use crate::domain::publication::KeyCursor;
use crate::domain::retention;

/// Where a stored key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Origin {
    /// Uploaded to this backend by a phone.
    Local,
    /// Pulled from a peer backend's feed.
    Remote,
}

/// A Diagnosis Key as this backend keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredKey {
    pub key: DiagnosisKey,
    pub origin: Origin,
    /// The uploader's declared base and roaming regions S (local keys only; empty for remote
    /// keys). Used to route the key to per-region feeds and never written to any file.
    pub regions: Vec<RegionId>,
    /// When the key may first be published: arrival, or the end of the same-day embargo.
    pub publish_at: UnixSeconds,
    /// When the key must be gone (SP3): arrival plus the retention period T.
    pub expires_at: UnixSeconds,
    /// Whether this is a *revision*: a new report type for a key stored (and maybe published)
    /// before. Revisions go into the `revised_keys` of export files, keys into their `keys`.
    pub revision: bool,
    /// For a remote key, the peer it was pulled from: only that peer's files revise it.
    pub peer: Option<RegionId>,
}

impl StoredKey {
    /// A key uploaded here at `now` by a person who declared `regions`, publishable from
    /// `publish_at` (its arrival, or the end of an embargo), kept to the hour (SP2) and for
    /// `retention` seconds (SP3).
    pub fn local(
        key: DiagnosisKey,
        regions: Vec<RegionId>,
        publish_at: UnixSeconds,
        now: UnixSeconds,
        retention_period: u64,
    ) -> Self {
        Self {
            key,
            origin: Origin::Local,
            regions,
            publish_at: retention::stored_publish_at(publish_at, now),
            expires_at: retention::local_expiry(now, retention_period),
            revision: false,
            peer: None,
        }
    }

    /// A key pulled from `peer` at `now`: publishable from the hour it came, and kept as
    /// [`retention::remote_expiry`] says.
    pub fn remote(
        key: DiagnosisKey,
        peer: RegionId,
        now: UnixSeconds,
        retention_period: u64,
    ) -> Self {
        Self {
            expires_at: retention::remote_expiry(&key, now, retention_period),
            key,
            origin: Origin::Remote,
            regions: Vec::new(),
            publish_at: retention::hour_of(now),
            revision: false,
            peer: Some(peer),
        }
    }

    /// Whether this revision may revise `original`, stored with `origin` from `peer`: a
    /// phone's upload revises keys uploaded here, a peer's file the keys pulled from it.
    pub fn may_revise(&self, origin: Origin, peer: Option<RegionId>) -> bool {
        self.origin == origin && self.peer == peer
    }

    /// This key as a revision of the stored key with its key data.
    pub fn as_revision(mut self) -> Self {
        self.revision = true;
        self
    }
}

/// What storing a revision does when its key was revised before.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum IfRevised {
    /// Refuse the whole batch with [`StoreError::AlreadyRevised`]: a phone revises a key once.
    #[default]
    Refuse,
    /// Leave that revision out: a peer's file read again revises nothing twice.
    Skip,
}

/// Keys to store together, atomically.
#[derive(Clone, Debug, Default)]
pub struct NewKeys {
    pub keys: Vec<StoredKey>,
    /// New report types for keys stored before (each with `revision` set). A revision of a
    /// key the store does not hold is stored as a new key.
    pub revisions: Vec<StoredKey>,
    pub if_revised: IfRevised,
    pub claim: Option<CodeClaim>,
    pub now: UnixSeconds,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// `n` keys were new and stored, or revised; the others were already known (deduplicated).
    Stored(u32),
    /// The claim's code had already authorised this very upload: nothing was stored again,
    /// and `n` is what the first attempt stored.
    Replayed(u32),
}

/// Stored Diagnosis Keys, ordered by the time they may be published.
///
/// A revision is stored as an entry of its own, published after the key it revises (never in
/// the same file, never before), and the revised key is marked so that it is revised once. A
/// revision revises a key of its own origin only ([`StoredKey::may_revise`]): a peer's file
/// revises only the keys pulled from that peer, never a key uploaded here or another peer's, and
/// a phone's upload never a key pulled from a peer (such a revision is left out).
///
/// The store keeps a *seal*: a time up to which data-prep has taken keys. A key is never stored
/// with a `publish_at` at or before the seal (the store moves it just past it, in the same
/// transaction), so a data-prep run that read up to the seal can never miss a late writer.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores new keys, skipping keys already known (by key data), and the revisions, and
    /// consumes the claim in the same transaction. Fails with [`StoreError::Code`] if the
    /// claim's code is unknown, expired or used for a different upload, and with
    /// [`StoreError::AlreadyRevised`] as [`IfRevised::Refuse`] says.
    async fn insert(&self, batch: NewKeys) -> Result<Inserted, StoreError>;

    /// Moves the seal forward to `through` (never back) and returns the seal in force.
    async fn seal(&self, through: UnixSeconds) -> Result<UnixSeconds, StoreError>;

    /// Keys with `after < publish_at <= through` that have not expired at `now`, in the
    /// store's order, starting past `from` (where an earlier page stopped): at most `max_keys`
    /// of them. With the same bounds, and nothing stored in the range meanwhile (the seal sees
    /// to that), a read returns the same keys.
    async fn read_published(
        &self,
        range: PublishedRange,
        from: Option<&KeyCursor>,
        max_keys: usize,
    ) -> Result<KeyPage, StoreError>;

    /// Every key with `after < publish_at <= through` that has not expired at `now`.
    async fn published_between(
        &self,
        after: UnixSeconds,
        through: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let range = PublishedRange {
            after,
            through,
            now,
        };
        Ok(self.read_published(range, None, usize::MAX).await?.keys)
    }

    /// Drops the declared regions of the keys with `after < publish_at <= through`: data-prep
    /// has written the per-region files that needed them, and nothing else does (SP2). Returns
    /// how many keys had regions to drop.
    async fn forget_regions(
        &self,
        after: UnixSeconds,
        through: UnixSeconds,
    ) -> Result<u64, StoreError>;

    /// Physically removes every key expired at `now` (SP3). Returns how many went.
    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64, StoreError>;

    /// How many keys are stored (expired or not), by origin: for reports and tests.
    async fn count(&self) -> Result<KeyCounts, StoreError>;
}

/// Which keys a read of the store takes: those with `after < publish_at <= through` that have
/// not expired at `now`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublishedRange {
    pub after: UnixSeconds,
    pub through: UnixSeconds,
    pub now: UnixSeconds,
}

/// Keys read from the store, and where the read stopped if keys of its range remain.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KeyPage {
    pub keys: Vec<StoredKey>,
    pub next: Option<KeyCursor>,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyCounts {
    pub local: u64,
    pub remote: u64,
}

/// Folds each revision that comes together with the key it revises (read in one data-prep run,
/// or in one peer's file) into that key: the key is stored or published once, as revised.
pub fn fold_revisions(mut keys: Vec<StoredKey>) -> Vec<StoredKey> {
    let revised: HashMap<[u8; KEY_LEN], DiagnosisKey> = keys
        .iter()
        .filter(|k| k.revision)
        .map(|k| (k.key.key_data, k.key.clone()))
        .collect();
    if revised.is_empty() {
        return keys;
    }
    let mut folded = HashSet::new();
    for key in keys.iter_mut().filter(|k| !k.revision) {
        if let Some(revision) = revised.get(&key.key.key_data) {
            key.key = revision.clone();
            folded.insert(key.key.key_data);
        }
    }
    keys.retain(|k| !(k.revision && folded.contains(&k.key.key_data)));
    keys
}

/// Ends each region ID in the packed form that allows IDs of any length.
const REGION_END: char = ',';

/// The declared regions of a key as stores keep them. Two forms, both read back by
/// [`unpack_regions`]:
///
/// - when every ID has two letters, the IDs one after the other (`CHDE`): the form written
///   before longer IDs existed, so stored data reads back and stays as it was;
/// - otherwise each ID followed by a comma (`EUR,222,CH,`).
pub fn pack_regions(regions: &[RegionId]) -> String {
    if regions.iter().all(|region| region.as_str().len() == 2) {
        regions.iter().map(RegionId::as_str).collect()
    } else {
        regions
            .iter()
            .flat_map(|region| [region.as_str(), ","])
            .collect()
    }
}

/// The regions [`pack_regions`] packed, in either form.
pub fn unpack_regions(packed: &str) -> Result<Vec<RegionId>, StoreError> {
    let parse = |region: &str| region.parse().map_err(StoreError::backend);
    if packed.contains(REGION_END) {
        match packed.strip_suffix(REGION_END) {
            Some(ids) => ids.split(REGION_END).map(parse).collect(),
            None => Err(StoreError::Backend(format!(
                "packed regions {packed:?} do not end with {REGION_END:?}"
            ))),
        }
    } else {
        packed
            .as_bytes()
            .chunks(2)
            .map(|region| parse(std::str::from_utf8(region).map_err(StoreError::backend)?))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::key::ReportType;

    fn regions(ids: &[&str]) -> Vec<RegionId> {
        ids.iter().map(|id| id.parse().unwrap()).collect()
    }

    #[test]
    fn a_revision_that_comes_with_its_key_is_folded_into_it() {
        let key = StoredKey::local(
            DiagnosisKey {
                key_data: [7; 16],
                rolling_start: 2_900_000,
                rolling_period: 144,
                transmission_risk: 0,
                report_type: ReportType::ConfirmedClinicalDiagnosis,
                days_since_onset: None,
            },
            regions(&["DE"]),
            3600,
            3600,
            86_400,
        );
        let mut revision = key.clone().as_revision();
        revision.key.report_type = ReportType::Revoked;
        let mut other = revision.clone();
        other.key.key_data = [8; 16];
        let folded = fold_revisions(vec![key.clone(), revision.clone(), other.clone()]);
        let revised = StoredKey {
            key: revision.key,
            ..key
        };
        assert_eq!(folded, vec![revised, other], "a lone revision stays one");
    }

    #[test]
    fn two_letter_regions_pack_as_before() {
        assert_eq!(pack_regions(&regions(&["CH", "DE"])), "CHDE");
        assert_eq!(pack_regions(&[]), "");
        // What earlier versions stored reads back.
        assert_eq!(
            unpack_regions("CHDEAT").unwrap(),
            regions(&["CH", "DE", "AT"])
        );
        assert_eq!(unpack_regions("").unwrap(), vec![]);
    }

    #[test]
    fn longer_regions_round_trip() {
        for ids in [&["EUR"][..], &["222", "CH"], &["CH", "EUR", "DE"], &["222"]] {
            let packed = pack_regions(&regions(ids));
            assert!(packed.ends_with(REGION_END), "{packed}");
            assert_eq!(unpack_regions(&packed).unwrap(), regions(ids));
        }
        for broken in ["EUR", "EUR,22", "CHD", "ch,"] {
            assert!(unpack_regions(broken).is_err(), "{broken:?} read");
        }
    }
}
