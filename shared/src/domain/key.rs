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

/// A two-letter region ID (a country or an enterprise site), upper case, as Google and Apple
/// use them: `CH`, `DE`, `US`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RegionId([u8; 2]);

impl RegionId {
    pub fn as_str(&self) -> &str {
        // Only ever built from two ASCII upper-case letters.
        std::str::from_utf8(&self.0).expect("region IDs are ASCII")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("region ID {0:?} is not two upper-case letters (for example \"CH\")")]
pub struct BadRegionId(pub String);

impl FromStr for RegionId {
    type Err = BadRegionId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            &[a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(RegionId([a, b])),
            _ => Err(BadRegionId(s.to_string())),
        }
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
    fn region_ids_are_two_upper_case_letters() {
        assert_eq!("CH".parse::<RegionId>().unwrap().to_string(), "CH");
        for bad in ["", "C", "ch", "CHE", "C1", "É"] {
            assert!(bad.parse::<RegionId>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn intervals_are_ten_minutes() {
        assert_eq!(interval_of(1_590_159_600), 2_650_266);
        assert_eq!(seconds_of(2_650_266), 1_590_159_600);
    }
}
