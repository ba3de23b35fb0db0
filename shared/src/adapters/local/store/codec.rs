//! How [`LocalStore`](super::LocalStore) encodes its rows: stored keys, one-time codes and code
//! issuers as protobuf records, and the keys of one write that expire together.

use crate::domain::diagnosis::Diagnosis;
use crate::domain::key::{DiagnosisKey, KEY_LEN, RegionId, ReportType};
use crate::ports::{CodeUse, Origin, StoreError, StoredKey, pack_regions, unpack_regions};

pub(super) type Tek = [u8; KEY_LEN];

/// The name of a [`KEYS`](super::KEYS) row: the key's `publish_at`, and its number among the
/// rows of that `publish_at`, in the order they were written.
pub(super) type Row = (u64, u64);

/// A [`KEYS`](super::KEYS) row's value: the key data, then the encoded [`KeyRecord`].
pub(super) fn key_row(tek: &Tek, record: &[u8]) -> Vec<u8> {
    [tek.as_slice(), record].concat()
}

/// The key data and the record of a [`KEYS`](super::KEYS) row's value.
pub(super) fn read_key_row(value: &[u8]) -> Result<(Tek, KeyRecord), StoreError> {
    use prost::Message as _;
    let (tek, record) = value
        .split_first_chunk::<KEY_LEN>()
        .ok_or_else(|| StoreError::backend("a key row is cut short"))?;
    Ok((
        *tek,
        KeyRecord::decode(record).map_err(StoreError::backend)?,
    ))
}

/// The keys of one write that expire at the same time, as [`EXPIRING`](super::EXPIRING) keeps
/// them: each key's row (publish_at and number, 8 bytes each, big endian) and key data.
#[derive(Default)]
pub(super) struct Expiring(pub(super) Vec<u8>);

impl Expiring {
    const ENTRY: usize = 8 + 8 + KEY_LEN;

    pub(super) fn push(&mut self, (publish_at, number): Row, tek: Tek) {
        self.0.extend_from_slice(&publish_at.to_be_bytes());
        self.0.extend_from_slice(&number.to_be_bytes());
        self.0.extend_from_slice(&tek);
    }

    /// The key data of the first key: with the expiry time, it names the row.
    pub(super) fn first(&self) -> Tek {
        self.0[16..Self::ENTRY].try_into().expect("a whole entry")
    }

    pub(super) fn keys(row: &[u8]) -> impl Iterator<Item = (Row, Tek)> + '_ {
        row.chunks_exact(Self::ENTRY).map(|entry| {
            let number =
                |at: usize| u64::from_be_bytes(entry[at..at + 8].try_into().expect("8 bytes"));
            let tek = entry[16..].try_into().expect("a key's length");
            ((number(0), number(8)), tek)
        })
    }
}

/// How a stored key is encoded in the database.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct KeyRecord {
    #[prost(int32, tag = "1")]
    pub(super) rolling_start: i32,
    #[prost(int32, tag = "2")]
    pub(super) rolling_period: i32,
    #[prost(int32, tag = "3")]
    pub(super) transmission_risk: i32,
    #[prost(int32, tag = "4")]
    pub(super) report_type: i32,
    #[prost(sint32, optional, tag = "5")]
    pub(super) days_since_onset: Option<i32>,
    #[prost(bool, tag = "6")]
    pub(super) remote: bool,
    #[prost(bytes = "vec", tag = "7")]
    pub(super) regions: Vec<u8>,
    #[prost(uint64, tag = "8")]
    pub(super) expires_at: u64,
    /// This row is a revision of a key stored before.
    #[prost(bool, tag = "9")]
    pub(super) revision: bool,
    /// This key has been revised (a row of its revision follows): it is revised once.
    #[prost(bool, tag = "10")]
    pub(super) revised: bool,
    /// The peer a remote key was pulled from.
    #[prost(string, optional, tag = "11")]
    pub(super) peer: Option<String>,
}

impl KeyRecord {
    /// The peer a remote key was pulled from, if it was recorded.
    pub(super) fn peer_region(&self) -> Result<Option<RegionId>, StoreError> {
        self.peer
            .as_deref()
            .map(|peer| peer.parse().map_err(StoreError::backend))
            .transpose()
    }

    pub(super) fn origin(&self) -> Origin {
        match self.remote {
            true => Origin::Remote,
            false => Origin::Local,
        }
    }

    pub(super) fn from_key(k: &StoredKey) -> Self {
        Self {
            rolling_start: k.key.rolling_start as i32,
            rolling_period: k.key.rolling_period as i32,
            transmission_risk: k.key.transmission_risk,
            report_type: k.key.report_type as i32,
            days_since_onset: k.key.days_since_onset,
            remote: k.origin == Origin::Remote,
            regions: pack_regions(&k.regions).into_bytes(),
            expires_at: k.expires_at,
            revision: k.revision,
            revised: false,
            peer: k.peer.map(|peer| peer.to_string()),
        }
    }

    pub(super) fn into_key(self, key_data: Tek, publish_at: u64) -> Result<StoredKey, StoreError> {
        let regions =
            unpack_regions(std::str::from_utf8(&self.regions).map_err(StoreError::backend)?)?;
        Ok(StoredKey {
            key: DiagnosisKey {
                key_data,
                rolling_start: self.rolling_start as u32,
                rolling_period: self.rolling_period as u32,
                transmission_risk: self.transmission_risk,
                report_type: ReportType::from_i32(self.report_type),
                days_since_onset: self.days_since_onset,
            },
            origin: self.origin(),
            regions,
            publish_at,
            expires_at: self.expires_at,
            revision: self.revision,
            peer: self.peer_region()?,
        })
    }
}

/// How a one-time code is encoded in the database.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct CodeRow {
    #[prost(uint64, tag = "1")]
    pub(super) issued_at: u64,
    #[prost(uint64, tag = "2")]
    pub(super) expires_at: u64,
    /// The upload it authorised, once used.
    #[prost(bytes = "vec", optional, tag = "3")]
    pub(super) used_by: Option<Vec<u8>>,
    #[prost(uint32, tag = "4")]
    pub(super) inserted: u32,
    /// The report type of the diagnosis it was issued with (GAEN numbering).
    #[prost(int32, optional, tag = "5")]
    pub(super) report_type: Option<i32>,
    /// The first interval of the symptom onset day it was issued with.
    #[prost(uint32, optional, tag = "6")]
    pub(super) symptom_onset: Option<u32>,
}

/// A code issuer, as [`ISSUERS`](super::ISSUERS) keeps it under its name.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct IssuerRow {
    #[prost(bytes = "vec", tag = "1")]
    pub(super) token_hash: Vec<u8>,
    #[prost(uint64, tag = "2")]
    pub(super) created_at: u64,
    #[prost(uint64, optional, tag = "3")]
    pub(super) revoked_at: Option<u64>,
}

/// What [`ISSUED`](super::ISSUED) keeps of a code an issuer issued: enough to list it once
/// the code itself is purged.
#[derive(Clone, PartialEq, prost::Message)]
pub(super) struct IssuedRow {
    #[prost(uint64, tag = "1")]
    pub(super) expires_at: u64,
    #[prost(int32, optional, tag = "2")]
    pub(super) report_type: Option<i32>,
    #[prost(uint32, optional, tag = "3")]
    pub(super) symptom_onset: Option<u32>,
}

impl IssuedRow {
    pub(super) fn diagnosis(&self) -> Diagnosis {
        Diagnosis {
            report_type: self.report_type.map(ReportType::from_i32),
            symptom_onset_interval: self.symptom_onset,
        }
    }
}

impl CodeRow {
    /// What [`ports::check_claim`] judges a claim by.
    pub(super) fn code_use(&self) -> CodeUse {
        CodeUse {
            expires_at: self.expires_at,
            used_by: self.used_by.clone(),
            inserted: self.inserted,
            diagnosis: Diagnosis {
                report_type: self.report_type.map(ReportType::from_i32),
                symptom_onset_interval: self.symptom_onset,
            },
        }
    }
}
