//! The key store: Diagnosis Keys by the time they may be published, local or remote, each
//! with the time it must be gone (SP3), and the seal that data-prep reads up to.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use super::{CodeClaim, StoreError};
use crate::domain::key::{DiagnosisKey, RegionId, UnixSeconds};

/// Where a stored key came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
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
}

/// Keys to store together, atomically.
#[derive(Clone, Debug)]
pub struct NewKeys {
    pub keys: Vec<StoredKey>,
    pub claim: Option<CodeClaim>,
    pub now: UnixSeconds,
}

/// What an insert did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Inserted {
    /// `n` keys were new and stored; the others were already known (deduplicated).
    Stored(u32),
    /// The claim's code had already authorised this very upload: nothing was stored again,
    /// and `n` is what the first attempt stored.
    Replayed(u32),
}

/// Stored Diagnosis Keys, ordered by the time they may be published.
///
/// The store keeps a *seal*: a time up to which data-prep has taken keys. A key is never stored
/// with a `publish_at` at or before the seal (the store moves it just past it, in the same
/// transaction), so a data-prep run that read up to the seal can never miss a late writer.
#[async_trait]
pub trait KeyStore: Send + Sync {
    /// Stores new keys, skipping keys already known (by key data), and consumes the claim in the
    /// same transaction. Fails with [`StoreError::Code`] if the claim's code is unknown,
    /// expired or used for a different upload.
    async fn insert(&self, batch: NewKeys) -> Result<Inserted, StoreError>;

    /// Moves the seal forward to `through` (never back) and returns the seal in force.
    async fn seal(&self, through: UnixSeconds) -> Result<UnixSeconds, StoreError>;

    /// Keys with `after < publish_at <= through` that have not expired at `now`.
    async fn published_between(
        &self,
        after: UnixSeconds,
        through: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Vec<StoredKey>, StoreError>;

    /// Physically removes every key expired at `now` (SP3). Returns how many went.
    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64, StoreError>;

    /// How many keys are stored (expired or not), by origin: for reports and tests.
    async fn count(&self) -> Result<KeyCounts, StoreError>;
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KeyCounts {
    pub local: u64,
    pub remote: u64,
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

    fn regions(ids: &[&str]) -> Vec<RegionId> {
        ids.iter().map(|id| id.parse().unwrap()).collect()
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
