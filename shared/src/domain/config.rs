//! A region's settings. Every setting is an environment variable, `ENFEED_` followed by the
//! field's name in capitals (the Lambda functions read them so), and, with the `clap` feature,
//! also a command line flag of `enfeed`; the defaults are the constants here.

use serde::Deserialize;

use crate::domain::key::RegionId;

pub const RETENTION_DAYS: u32 = 30;
pub const DATAPREP_INTERVAL: u64 = 3600;
pub const DATAPREP_MAX_KEYS: usize = 500_000;
pub const PADDING_MIN: usize = 1000;
pub const EMBARGO: u64 = 7200;
pub const CODE_LIFETIME: u64 = 86_400;
/// The longest a verification certificate may be valid, from `iat` to `exp`: a verification
/// server issues them for one upload, minutes before it.
pub const CERTIFICATE_MAX_LIFETIME: u64 = 3600;
pub const WRONG_CODE_ALARM: u64 = 1000;
pub const ISSUERS_REFRESH: u64 = 300;
pub const PEER_DEADLINE: u64 = 60;

#[derive(Clone, Debug, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct Config {
    /// This backend's region ID (written into every chunk): 2 or 3 upper-case letters, or a
    /// 3-digit mobile country code.
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_REGION"))]
    pub region: RegionId,

    /// Days a key is kept after it arrived (T of requirement SP3).
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_RETENTION_DAYS", default_value_t = RETENTION_DAYS))]
    #[serde(default = "defaults::retention_days")]
    pub retention_days: u32,

    /// Seconds between scheduled data-prep runs; also the poll interval advertised in indexes.
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_DATAPREP_INTERVAL", default_value_t = DATAPREP_INTERVAL))]
    #[serde(default = "defaults::dataprep_interval")]
    pub dataprep_interval: u64,

    /// Most keys one data-prep run reads from the store (its memory and time grow with them);
    /// a larger backlog is published over several runs, in the store's order.
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_DATAPREP_MAX_KEYS", default_value_t = DATAPREP_MAX_KEYS))]
    #[serde(default = "defaults::dataprep_max_keys")]
    pub dataprep_max_keys: usize,

    /// Smallest number of keys in a public chunk: fewer real keys are padded with random keys
    /// up to this (plus up to 99 more). 0 turns padding off.
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_PADDING_MIN", default_value_t = PADDING_MIN))]
    #[serde(default = "defaults::padding_min")]
    pub padding_min: usize,

    /// Seconds after a same-day key's last interval before it may be published.
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_EMBARGO", default_value_t = EMBARGO))]
    #[serde(default = "defaults::embargo")]
    pub embargo: u64,

    /// Seconds a one-time verification code stays valid.
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_CODE_LIFETIME", default_value_t = CODE_LIFETIME))]
    #[serde(default = "defaults::code_lifetime")]
    pub code_lifetime: u64,

    /// Wrong one-time codes from all clients within one hour that raise the guessing alarm (a
    /// warning in the log, and the metric `enfeed_guessing_alarms_total`).
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_WRONG_CODE_ALARM", default_value_t = WRONG_CODE_ALARM))]
    #[serde(default = "defaults::wrong_code_alarm")]
    pub wrong_code_alarm: u64,

    /// The longest validity (`exp` minus `iat`, seconds) of a verification certificate that is
    /// accepted.
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_CERTIFICATE_MAX_LIFETIME", default_value_t = CERTIFICATE_MAX_LIFETIME))]
    #[serde(default = "defaults::certificate_max_lifetime")]
    pub certificate_max_lifetime: u64,
    /// Seconds the consumer may spend on one peer in a run (its index and files); a peer that
    /// takes longer is left until the next run, and the consumer moves on to the next peer.
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_PEER_DEADLINE", default_value_t = PEER_DEADLINE))]
    #[serde(default = "defaults::peer_deadline")]
    pub peer_deadline: u64,

    /// Seconds between reads of the trusted issuers (the file, and their key sets), so that
    /// a new issuer or key is trusted, and a removed one no longer, that much later.
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_ISSUERS_REFRESH", default_value_t = ISSUERS_REFRESH))]
    #[serde(default = "defaults::issuers_refresh")]
    pub issuers_refresh: u64,

    /// Regions that receive the keys of a traveller who declares no regions (`traveler: true`
    /// without `regions`, as Google's v1 apps upload), comma-separated: the peers that take
    /// travellers' keys. The own region always does.
    #[cfg_attr(
        feature = "clap",
        arg(long, env = "ENFEED_TRAVELER_REGIONS", value_delimiter = ',')
    )]
    #[serde(default)]
    pub traveler_regions: Vec<RegionId>,

    /// Verification key ID written into signatures (Apple asks for the region's mobile country
    /// code); defaults to the region ID.
    #[cfg_attr(feature = "clap", arg(long, env = "ENFEED_SIGNING_KEY_ID"))]
    pub signing_key_id: Option<String>,
}

/// The defaults as serde wants them: functions.
mod defaults {
    pub fn retention_days() -> u32 {
        super::RETENTION_DAYS
    }
    pub fn dataprep_interval() -> u64 {
        super::DATAPREP_INTERVAL
    }
    pub fn dataprep_max_keys() -> usize {
        super::DATAPREP_MAX_KEYS
    }
    pub fn padding_min() -> usize {
        super::PADDING_MIN
    }
    pub fn embargo() -> u64 {
        super::EMBARGO
    }
    pub fn code_lifetime() -> u64 {
        super::CODE_LIFETIME
    }
    pub fn certificate_max_lifetime() -> u64 {
        super::CERTIFICATE_MAX_LIFETIME
    }
    pub fn wrong_code_alarm() -> u64 {
        super::WRONG_CODE_ALARM
    }
    pub fn issuers_refresh() -> u64 {
        super::ISSUERS_REFRESH
    }
    pub fn peer_deadline() -> u64 {
        super::PEER_DEADLINE
    }
}

impl Config {
    /// Settings with every default, for a region.
    pub fn new(region: RegionId) -> Self {
        Self {
            region,
            retention_days: RETENTION_DAYS,
            dataprep_interval: DATAPREP_INTERVAL,
            dataprep_max_keys: DATAPREP_MAX_KEYS,
            padding_min: PADDING_MIN,
            embargo: EMBARGO,
            code_lifetime: CODE_LIFETIME,
            certificate_max_lifetime: CERTIFICATE_MAX_LIFETIME,
            wrong_code_alarm: WRONG_CODE_ALARM,
            issuers_refresh: ISSUERS_REFRESH,
            traveler_regions: Vec::new(),
            peer_deadline: PEER_DEADLINE,
            signing_key_id: None,
        }
    }

    /// Retention T in seconds.
    pub fn retention(&self) -> u64 {
        u64::from(self.retention_days) * 86_400
    }

    pub fn signing_key_id(&self) -> String {
        self.signing_key_id
            .clone()
            .unwrap_or_else(|| self.region.to_string())
    }
}
