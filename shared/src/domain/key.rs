//! Diagnosis Keys and the small value types around them: regions, report types, Unix time, and
//! the Exposure Notification interval clock (one interval = 10 minutes).

use std::fmt;
use std::str::FromStr;

/// Unix seconds. Every timestamp in the core is one.
pub type UnixSeconds = u64;

/// Length of a Temporary Exposure Key in bytes.
pub const KEY_LEN: usize = 16;
/// Seconds in one Exposure Notification interval.
pub const INTERVAL_SECONDS: u64 = 600;
/// Intervals in one day, and the longest rolling period a key may have.
pub const INTERVALS_PER_DAY: u32 = 144;

/// The interval number that contains `unix_seconds`.
pub fn interval_of(unix_seconds: u64) -> u32 {
    (unix_seconds / INTERVAL_SECONDS) as u32
}

/// The first second of interval `interval`.
pub fn seconds_of(interval: u32) -> u64 {
    u64::from(interval) * INTERVAL_SECONDS
}

/// A region ID as real export files and backends use them (a country, a group of countries or
/// an enterprise site). The rule:
///
/// - 2 upper-case ASCII letters: an ISO 3166-1 alpha-2 country code or a site (`CH`, `DE`);
/// - 3 upper-case ASCII letters: a group or an alpha-3 code (`EUR`, the EU gateway's region);
/// - 3 ASCII digits: a mobile country code (`222`, Italy's region in its export files).
///
/// Nothing else: no lower case, no other lengths, no mixes of letters and digits. It stays a
/// small `Copy` value: at most [`RegionId::MAX_LEN`] bytes, kept inline.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId {
    /// The ID's bytes, padded with zeros (so IDs order as their strings do).
    bytes: [u8; RegionId::MAX_LEN],
    len: u8,
}

impl RegionId {
    /// The longest region ID, in bytes.
    pub const MAX_LEN: usize = 3;

    pub fn as_str(&self) -> &str {
        // Only ever built from ASCII letters or digits.
        std::str::from_utf8(&self.bytes[..usize::from(self.len)]).expect("region IDs are ASCII")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "region ID {0:?} is not 2 or 3 upper-case letters or 3 digits (for example \"CH\", \"EUR\" \
     or the mobile country code \"222\")"
)]
pub struct BadRegionId(pub String);

impl FromStr for RegionId {
    type Err = BadRegionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        let letters = (2..=3).contains(&b.len()) && b.iter().all(u8::is_ascii_uppercase);
        let digits = b.len() == 3 && b.iter().all(u8::is_ascii_digit);
        if !(letters || digits) {
            return Err(BadRegionId(s.to_string()));
        }
        let mut bytes = [0; Self::MAX_LEN];
        bytes[..b.len()].copy_from_slice(b);
        Ok(RegionId {
            bytes,
            len: b.len() as u8,
        })
    }
}

impl fmt::Display for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for RegionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RegionId({})", self.as_str())
    }
}

impl serde::Serialize for RegionId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for RegionId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// How the health authority classified the diagnosis (GAEN `ReportType`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[repr(i32)]
pub enum ReportType {
    #[default]
    Unknown = 0,
    ConfirmedTest = 1,
    ConfirmedClinicalDiagnosis = 2,
    SelfReport = 3,
    Recursive = 4,
    Revoked = 5,
}

impl ReportType {
    /// The wire value; unknown numbers read as [`ReportType::Unknown`].
    pub fn from_i32(value: i32) -> Self {
        match value {
            1 => Self::ConfirmedTest,
            2 => Self::ConfirmedClinicalDiagnosis,
            3 => Self::SelfReport,
            4 => Self::Recursive,
            5 => Self::Revoked,
            _ => Self::Unknown,
        }
    }

    /// The report type a health authority's label names, as verification servers and phones
    /// spell it: `confirmed`, `likely`, `user-report`, `negative`.
    pub fn from_label(label: &str) -> Option<Self> {
        match label {
            "confirmed" => Some(Self::ConfirmedTest),
            "likely" => Some(Self::ConfirmedClinicalDiagnosis),
            "user-report" => Some(Self::SelfReport),
            "negative" => Some(Self::Revoked),
            _ => None,
        }
    }

    /// The label [`from_label`](Self::from_label) reads, if the type has one.
    pub fn label(self) -> Option<&'static str> {
        match self {
            Self::ConfirmedTest => Some("confirmed"),
            Self::ConfirmedClinicalDiagnosis => Some("likely"),
            Self::SelfReport => Some("user-report"),
            Self::Revoked => Some("negative"),
            _ => None,
        }
    }
}

/// A Diagnosis Key: a Temporary Exposure Key of a person who tested positive, with the metadata
/// that phones need to match it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DiagnosisKey {
    pub key_data: [u8; KEY_LEN],
    /// First interval in which the key was used.
    pub rolling_start: u32,
    /// Number of intervals the key was used for (1..=144).
    pub rolling_period: u32,
    /// Deprecated by GAEN but still carried (0..=8).
    pub transmission_risk: i32,
    pub report_type: ReportType,
    /// Days between symptom onset and this key's day (-14..=14), when known.
    pub days_since_onset: Option<i32>,
}

impl DiagnosisKey {
    /// The first interval after the key stopped being used.
    pub fn rolling_end(&self) -> u32 {
        self.rolling_start + self.rolling_period
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_ids_follow_the_documented_rule() {
        for good in ["CH", "EUR", "222", "US"] {
            assert_eq!(good.parse::<RegionId>().unwrap().to_string(), good);
        }
        for bad in [
            "", "C", "ch", "CHEE", "C1", "É", "22", "2222", "E2R", "eur", " CH", "a2a",
        ] {
            assert!(bad.parse::<RegionId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn region_ids_order_as_their_strings() {
        let mut ids: Vec<RegionId> = ["EUR", "CH", "222", "CHE", "DE"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        ids.sort();
        let names: Vec<_> = ids.iter().map(RegionId::as_str).collect();
        assert_eq!(names, ["222", "CH", "CHE", "DE", "EUR"]);
    }

    #[test]
    fn intervals_are_ten_minutes() {
        assert_eq!(interval_of(1_590_159_600), 2_650_266);
        assert_eq!(seconds_of(2_650_266), 1_590_159_600);
    }
}
