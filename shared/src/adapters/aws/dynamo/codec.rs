//! How [`DynamoStore`](super::DynamoStore) names and encodes its items: partition and sort
//! keys of each kind of item, a stored key as an item and back, and the deflated parts of the
//! publication state.

use std::io::{Read as _, Write as _};

use aws_sdk_dynamodb::types::AttributeValue;

use super::{
    BUCKET_SECONDS, EXPIRY_SHARDS, Item, KEY_SHARDS, TTL_ATTRIBUTE, b, get_b, get_n, get_s, n,
    optional_n, s,
};
use crate::domain::diagnosis::Diagnosis;
use crate::domain::key::{DiagnosisKey, KEY_LEN, RegionId, ReportType};
use crate::ports::{Origin, StoreError, StoredKey, UnixSeconds, pack_regions, unpack_regions};

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(super) fn unhex(text: &str) -> Option<Vec<u8>> {
    text.len()
        .is_multiple_of(2)
        .then(|| {
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

pub(super) fn origin_tag(origin: Origin) -> &'static str {
    match origin {
        Origin::Local => "L",
        Origin::Remote => "R",
    }
}

/// The partition of the key items of `origin` published on the day of `publish_at` in
/// `shard` (see [`key_shard`]); `None` is the day's one unsharded partition, which versions
/// before the shards wrote.
pub(super) fn key_pk(origin: Origin, publish_at: UnixSeconds, shard: Option<u16>) -> String {
    let day = format!("K#{}#{}", origin_tag(origin), publish_at / BUCKET_SECONDS);
    match shard {
        Some(shard) => format!("{day}#{shard}"),
        None => day,
    }
}

/// The shard of a key's partition: its first two bytes modulo [`KEY_SHARDS`].
pub(super) fn key_shard(key_data: &[u8]) -> u16 {
    u16::from_be_bytes([key_data[0], key_data[1]]) % KEY_SHARDS
}

/// Where partition `pk` comes in reads of key items: by origin, day, then shard (the
/// unsharded partition first).
pub(super) fn partition_place(pk: &str) -> Result<(Origin, u64, u32), StoreError> {
    let bad = || StoreError::backend(format!("{pk:?} is not a key partition"));
    let mut parts = pk.split('#').skip(2);
    let day = parts.next().and_then(|d| d.parse().ok()).ok_or_else(bad)?;
    let shard = match parts.next() {
        None => 0,
        Some(shard) => shard.parse::<u32>().map_err(|_| bad())? + 1,
    };
    Ok((origin_of(pk)?, day, shard))
}

/// Every partition of the key items of `origin` published on the day of `publish_at`: the
/// unsharded one of earlier versions, then the shards, in the order reads go through them.
pub(super) fn key_partitions(origin: Origin, publish_at: UnixSeconds) -> Vec<String> {
    std::iter::once(None)
        .chain((0..KEY_SHARDS).map(Some))
        .map(|shard| key_pk(origin, publish_at, shard))
        .collect()
}

/// The origin of the keys of partition `pk` (see [`key_pk`]).
pub(super) fn origin_of(pk: &str) -> Result<Origin, StoreError> {
    match pk.split('#').nth(1) {
        Some("L") => Ok(Origin::Local),
        Some("R") => Ok(Origin::Remote),
        _ => Err(StoreError::backend(format!(
            "{pk:?} is not a key partition"
        ))),
    }
}

pub(super) fn key_sk(publish_at: UnixSeconds, key_data: &[u8]) -> String {
    format!("{publish_at:020}#{}", hex(key_data))
}

pub(super) fn seen_pk(key_data: &[u8]) -> String {
    format!("T#{}", hex(key_data))
}

/// The seen-marker of the key whose item has sort key `sk` (`<publish_at>#<key hex>`).
pub(super) fn seen_pk_of_sk(sk: &str) -> String {
    format!("T#{}", sk.split_once('#').map_or("", |(_, hex)| hex))
}

/// The attempt counter of `client` in the window starting at `window_start`.
pub(super) fn attempt_pk(client: &str, window_start: UnixSeconds) -> String {
    format!("A#{client}#{window_start}")
}

pub(super) fn code_pk(hash: &[u8; 32]) -> String {
    format!("C#{}", hex(hash))
}

/// The sort key of the code issuer `name` (in partition [`ISSUER_PK`](super::ISSUER_PK)).
pub(super) fn issuer_sk(name: &str) -> String {
    format!("I#{name}")
}

/// The partition of the codes that the issuer `name` issued.
pub(super) fn issued_pk(name: &str) -> String {
    format!("IB#{name}")
}

/// The sort key of a code an issuer issued: by time of issue, then the code's hash.
pub(super) fn issued_sk(issued_at: UnixSeconds, code_hash: &[u8; 32]) -> String {
    format!("{issued_at:020}#{}", hex(code_hash))
}

/// The attributes of a code (or issued code) item that hold its diagnosis: `rt` (report
/// type) and `so` (symptom onset interval), each only when given.
pub(super) fn diagnosis_attributes(diagnosis: &Diagnosis) -> Item {
    let mut item = Item::new();
    if let Some(report_type) = diagnosis.report_type {
        item.insert("rt".into(), n(report_type as i32));
    }
    if let Some(onset) = diagnosis.symptom_onset_interval {
        item.insert("so".into(), n(onset));
    }
    item
}

/// The diagnosis that [`diagnosis_attributes`] wrote into an item.
pub(super) fn diagnosis_of(item: &Item) -> Result<Diagnosis, StoreError> {
    Ok(Diagnosis {
        report_type: optional_n(item, "rt")?.map(ReportType::from_i32),
        symptom_onset_interval: optional_n(item, "so")?,
    })
}

pub(super) fn part_sk(version: u64, part: usize) -> String {
    format!("PART#{version:020}#{part:04}")
}

/// The item of a stored key, published at `publish_at` (the seal may have moved it).
pub(super) fn key_item(key: &StoredKey, publish_at: UnixSeconds) -> Item {
    let data = key.key.key_data;
    let mut item = Item::from([
        (
            "pk".into(),
            s(key_pk(key.origin, publish_at, Some(key_shard(&data)))),
        ),
        ("sk".into(), s(key_sk(publish_at, &data))),
        ("kd".into(), b(data.to_vec())),
        ("rs".into(), n(key.key.rolling_start)),
        ("rp".into(), n(key.key.rolling_period)),
        ("tr".into(), n(key.key.transmission_risk)),
        ("rt".into(), n(key.key.report_type as i32)),
        ("pa".into(), n(publish_at)),
        (TTL_ATTRIBUTE.into(), n(key.expires_at)),
        ("xs".into(), s(format!("X#{}", data[0] % EXPIRY_SHARDS))),
    ]);
    if let Some(days) = key.key.days_since_onset {
        item.insert("dso".into(), n(days));
    }
    if !key.regions.is_empty() {
        item.insert("rg".into(), s(pack_regions(&key.regions)));
    }
    if key.revision {
        item.insert("rvn".into(), AttributeValue::Bool(true));
    }
    if let Some(peer) = key.peer {
        item.insert("pr".into(), s(peer.to_string()));
    }
    item
}

/// The peer a remote key item was pulled from, if it was recorded.
pub(super) fn peer_of(item: &Item) -> Result<Option<RegionId>, StoreError> {
    item.get("pr")
        .and_then(|v| v.as_s().ok())
        .map(|peer| peer.parse().map_err(StoreError::backend))
        .transpose()
}

pub(super) fn key_from_item(item: &Item) -> Result<StoredKey, StoreError> {
    let origin = origin_of(get_s(item, "pk")?)?;
    let key_data: [u8; KEY_LEN] = get_b(item, "kd")
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| StoreError::backend("key item without 16 bytes of key data"))?;
    let regions = match item.get("rg").and_then(|v| v.as_s().ok()) {
        None => Vec::new(),
        Some(packed) => unpack_regions(packed)?,
    };
    Ok(StoredKey {
        key: DiagnosisKey {
            key_data,
            rolling_start: get_n(item, "rs")?,
            rolling_period: get_n(item, "rp")?,
            transmission_risk: get_n(item, "tr")?,
            report_type: ReportType::from_i32(get_n(item, "rt")?),
            days_since_onset: item
                .get("dso")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok()),
        },
        origin,
        regions,
        publish_at: get_n(item, "pa")?,
        expires_at: get_n(item, TTL_ATTRIBUTE)?,
        revision: item.get("rvn").is_some_and(|v| v.as_bool() == Ok(&true)),
        peer: peer_of(item)?,
    })
}

pub(super) fn deflate(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).map_err(StoreError::backend)?;
    encoder.finish().map_err(StoreError::backend)
}

pub(super) fn inflate(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(StoreError::backend)?;
    Ok(out)
}

/// Whether `text` is a valid hex rendering of 16 bytes of key data (for tooling that reads
/// the table's `T#` items).
pub fn parse_key_hex(text: &str) -> Option<[u8; KEY_LEN]> {
    unhex(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_by_publication_time_then_key() {
        let a = key_sk(99, &[0xff; 16]);
        let b = key_sk(100, &[0; 16]);
        assert!(a < b);
        assert!(b <= format!("{:020}#~", 100));
        assert!(b >= format!("{:020}", 100));
        assert_eq!(parse_key_hex(&hex(&[7; 16])), Some([7; 16]));
        assert_eq!(key_pk(Origin::Remote, 86_400 * 3 + 5, None), "K#R#3");
        assert_eq!(key_pk(Origin::Local, 86_400 * 3 + 5, Some(7)), "K#L#3#7");
        assert_eq!(key_shard(&[0, 17, 9]), 1);
        let partitions = key_partitions(Origin::Local, 0);
        assert_eq!(partitions.len(), 1 + KEY_SHARDS as usize);
        assert_eq!(partitions[..2], ["K#L#0", "K#L#0#0"]);
        let places: Vec<_> = ["K#L#3", "K#L#3#0", "K#L#3#7", "K#L#4", "K#R#0"]
            .iter()
            .map(|pk| partition_place(pk).unwrap())
            .collect();
        assert!(places.is_sorted(), "{places:?}");
        assert!(partition_place("K#L").is_err());
    }
}
