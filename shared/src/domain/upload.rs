//! The upload of Diagnosis Keys (`POST /v1/publish`): the request as phones send it (the v1
//! protocol of Google's reference server, field names matched as its decoder matches them) and
//! every rule a request must pass before anything is stored. A key that breaks a rule of its
//! own is left out and named (a partial success); a request whose keys break a rule together,
//! or that keeps no key at all, is refused.

use std::collections::{BTreeSet, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::domain::config::Config;
use crate::domain::digest::sha256;
use crate::domain::key::UnixSeconds;
use crate::domain::key::{
    DiagnosisKey, INTERVALS_PER_DAY, KEY_LEN, RegionId, ReportType, interval_of, seconds_of,
};

/// Largest accepted request body, in bytes (413 above).
pub const MAX_BODY_BYTES: usize = 64_000;
/// Most keys one upload may carry.
pub const MAX_KEYS: usize = 30;
/// Most keys that may share one rolling start interval.
pub const MAX_SAME_START: usize = 3;
/// Oldest a key may be: its last interval ended no more than this many days ago.
pub const MAX_KEY_AGE_DAYS: u32 = 15;
/// Most regions an uploader may declare.
pub const MAX_REGIONS: usize = 50;

/// The JSON body of `POST /v1/publish`. Field names match case-insensitively when no field
/// has the exact name, as Go's decoder in the reference server matches them (so the published
/// requirements' `hmackey` is `hmacKey`); unknown fields are refused.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PublishRequest {
    pub temporary_exposure_keys: Vec<ExposureKeyJson>,
    /// The uploader's declared base and roaming regions S.
    #[serde(default)]
    pub regions: Vec<String>,
    #[serde(default)]
    pub verification_payload: String,
    /// Base64 key of the HMAC that binds a verification certificate to these keys.
    pub hmac_key: Option<String>,
    pub symptom_onset_interval: Option<u32>,
    pub report_type: Option<String>,
    /// Random bytes that hide the request's size; ignored.
    pub padding: Option<String>,
    /// The health authority the app belongs to; the certificate's issuer decides instead.
    #[serde(rename = "healthAuthorityID")]
    pub health_authority_id: Option<String>,
    /// The uploader travelled: without `regions`, the keys go to the traveller regions.
    pub traveler: Option<bool>,
    /// The token of an earlier upload of the same device, to revise keys it covers.
    pub revision_token: Option<String>,
}

/// The request's field names, as [`PublishRequest`] spells them.
const REQUEST_FIELDS: [&str; 10] = [
    "temporaryExposureKeys",
    "regions",
    "verificationPayload",
    "hmacKey",
    "symptomOnsetInterval",
    "reportType",
    "padding",
    "healthAuthorityID",
    "traveler",
    "revisionToken",
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ExposureKeyJson {
    /// Base64 of the 16 key bytes.
    pub key: String,
    pub rolling_start_number: u32,
    pub rolling_period: u32,
    #[serde(default)]
    pub transmission_risk: i32,
}

/// A key's field names, as [`ExposureKeyJson`] spells them.
const KEY_FIELDS: [&str; 4] = [
    "key",
    "rollingStartNumber",
    "rollingPeriod",
    "transmissionRisk",
];

/// An upload that passed every rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    /// The keys kept.
    pub keys: Vec<DiagnosisKey>,
    /// The keys left out, each error naming its key by its place in the request (from 0).
    pub dropped: Vec<UploadError>,
    /// The declared regions, sorted and without duplicates; the own region when none were
    /// declared (or the traveller regions, for a traveller).
    pub regions: Vec<RegionId>,
    pub verification_payload: String,
    pub hmac_key: Option<Vec<u8>>,
    /// Every key as sent, dropped ones too, as a certificate's `tekmac` covers them.
    pub tekmac_message: String,
    /// The revision token the upload carries, not yet checked.
    pub revision_token: Option<String>,
}

/// Why an upload was refused. Each variant has a stable [`code`](UploadError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    #[error("request body is larger than {MAX_BODY_BYTES} bytes")]
    BodyTooLarge,
    #[error("request body is not a valid upload: {0}")]
    BadJson(String),
    #[error("no keys in temporaryExposureKeys")]
    NoKeys,
    #[error("{0} keys uploaded; at most {MAX_KEYS} are allowed")]
    TooManyKeys(usize),
    #[error("key {0} is not valid base64")]
    BadBase64(usize),
    #[error("key {index} is {len} bytes long; keys are {KEY_LEN} bytes")]
    BadKeyLength { index: usize, len: usize },
    #[error("key {0} appears twice in the upload")]
    DuplicateKey(usize),
    #[error("key {index} has rollingPeriod {period}; it must be 1 to {INTERVALS_PER_DAY}")]
    BadRollingPeriod { index: usize, period: u32 },
    #[error("key {index} has transmissionRisk {risk}; it must be 0 to 8")]
    BadTransmissionRisk { index: usize, risk: i32 },
    #[error("key {0} starts in the future")]
    KeyInFuture(usize),
    #[error("key {0} ended more than {MAX_KEY_AGE_DAYS} days ago")]
    KeyTooOld(usize),
    #[error("more than {MAX_SAME_START} keys start at interval {0}")]
    TooManySameStart(u32),
    #[error("keys starting at intervals {0} and {1} overlap")]
    OverlappingKeys(u32, u32),
    #[error("{0}")]
    BadRegion(String),
    #[error("{0} regions declared; at most {MAX_REGIONS} are allowed")]
    TooManyRegions(usize),
    #[error("symptomOnsetInterval is in the future")]
    OnsetInFuture,
    #[error("reportType {0:?} is not one of confirmed, likely, user-report")]
    BadReportType(String),
    #[error("hmacKey is not valid base64")]
    BadHmacKey,
    #[error("verificationPayload is missing")]
    MissingVerification,
}

impl UploadError {
    /// A short, stable, machine-readable name for the error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BodyTooLarge => "body_too_large",
            Self::BadJson(_) => "bad_json",
            Self::NoKeys => "no_keys",
            Self::TooManyKeys(_) => "too_many_keys",
            Self::BadBase64(_) => "bad_base64",
            Self::BadKeyLength { .. } => "bad_key_length",
            Self::DuplicateKey(_) => "duplicate_key",
            Self::BadRollingPeriod { .. } => "bad_rolling_period",
            Self::BadTransmissionRisk { .. } => "bad_transmission_risk",
            Self::KeyInFuture(_) => "key_in_future",
            Self::KeyTooOld(_) => "key_too_old",
            Self::TooManySameStart(_) => "too_many_same_start",
            Self::OverlappingKeys(..) => "overlapping_keys",
            Self::BadRegion(_) => "bad_region",
            Self::TooManyRegions(_) => "too_many_regions",
            Self::OnsetInFuture => "onset_in_future",
            Self::BadReportType(_) => "bad_report_type",
            Self::BadHmacKey => "bad_hmac_key",
            Self::MissingVerification => "missing_verification",
        }
    }
}

impl PublishRequest {
    /// Parses a request body, refusing oversize bodies and unknown fields.
    pub fn from_json(body: &[u8]) -> Result<Self, UploadError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(UploadError::BodyTooLarge);
        }
        // Most bodies spell every name as the struct does: read them straight into it. Any
        // other body (or one this reads wrongly) goes the long way, which decides for all.
        if no_array_as_object(body)
            && let Ok(request) = serde_json::from_slice(body)
        {
            return Ok(request);
        }
        let bad_json = |e: serde_json::Error| UploadError::BadJson(e.to_string());
        let mut value: Value = serde_json::from_slice(body).map_err(bad_json)?;
        // An object and objects only: serde would also read a struct from an array of its
        // fields in order.
        let not_object = |what: &str| UploadError::BadJson(format!("{what} is not a JSON object"));
        let Value::Object(request) = &mut value else {
            return Err(not_object("the body"));
        };
        canonical_names(request, &REQUEST_FIELDS)?;
        if let Some(Value::Array(keys)) = request.get_mut(REQUEST_FIELDS[0]) {
            for (index, key) in keys.iter_mut().enumerate() {
                let Value::Object(key) = key else {
                    return Err(not_object(&format!("key {index}")));
                };
                canonical_names(key, &KEY_FIELDS)?;
            }
        }
        serde_json::from_value(value).map_err(bad_json)
    }

    /// Applies every upload rule at time `now` for a backend configured by `config`.
    pub fn validate(self, config: &Config, now: UnixSeconds) -> Result<Upload, UploadError> {
        if self.verification_payload.trim().is_empty() {
            return Err(UploadError::MissingVerification);
        }
        let report_type = parse_report_type(self.report_type.as_deref())?;
        let now_interval = interval_of(now);
        if self
            .symptom_onset_interval
            .is_some_and(|onset| onset > now_interval)
        {
            return Err(UploadError::OnsetInFuture);
        }
        let (keys, dropped) = validate_keys(&self.temporary_exposure_keys, now_interval)?;
        let hmac_key = self
            .hmac_key
            .map(|k| BASE64.decode(k).map_err(|_| UploadError::BadHmacKey))
            .transpose()?;
        let regions = if self.regions.is_empty() && self.traveler == Some(true) {
            let mut regions = config.traveler_regions.clone();
            regions.push(config.region);
            regions.sort();
            regions.dedup();
            regions
        } else {
            parse_regions(&self.regions, config.region)?
        };
        let mut upload = Upload {
            keys,
            dropped,
            regions,
            verification_payload: self.verification_payload,
            hmac_key,
            tekmac_message: tekmac_message(self.temporary_exposure_keys.iter().map(|k| {
                render_for_tekmac(
                    &k.key,
                    k.rolling_start_number,
                    k.rolling_period,
                    k.transmission_risk,
                )
            })),
            revision_token: self.revision_token.filter(|t| !t.is_empty()),
        };
        upload.certify(Some(report_type), self.symptom_onset_interval);
        Ok(upload)
    }
}

/// Whether `body` gives no object as an array: serde reads a struct from an array of its fields
/// in order, which the request's rules refuse. The request's objects are the body and its keys,
/// so such an array would open the body or stand first or after a comma in the keys' array.
/// Strings are not told apart: a bracket in one only sends the body the long way.
fn no_array_as_object(body: &[u8]) -> bool {
    let mut before = None;
    for &byte in body.iter().filter(|b| !b.is_ascii_whitespace()) {
        if byte == b'[' && matches!(before, None | Some(b'[' | b',')) {
            return false;
        }
        before = Some(byte);
    }
    true
}

/// Renames the fields of `object` that match one of `fields` only case-insensitively to that
/// field's spelling. Other names stay, for the decoder to refuse.
fn canonical_names(object: &mut Map<String, Value>, fields: &[&str]) -> Result<(), UploadError> {
    if object.keys().all(|name| fields.contains(&name.as_str())) {
        return Ok(());
    }
    let mut canonical = Map::with_capacity(object.len());
    for (name, value) in std::mem::take(object) {
        let name = match fields
            .iter()
            .find(|field| field.eq_ignore_ascii_case(&name))
        {
            Some(field) if !fields.contains(&name.as_str()) => (*field).to_string(),
            _ => name,
        };
        if canonical.contains_key(&name) {
            return Err(UploadError::BadJson(format!("field {name} is given twice")));
        }
        canonical.insert(name, value);
    }
    *object = canonical;
    Ok(())
}

impl Upload {
    /// An upload of `keys`, all kept, as a phone that follows every rule sends them.
    pub fn of_keys(
        keys: Vec<DiagnosisKey>,
        regions: Vec<RegionId>,
        verification_payload: String,
        hmac_key: Option<Vec<u8>>,
    ) -> Self {
        Self {
            tekmac_message: tekmac_message(keys.iter().map(|k| {
                render_for_tekmac(
                    &BASE64.encode(k.key_data),
                    k.rolling_start,
                    k.rolling_period,
                    k.transmission_risk,
                )
            })),
            keys,
            dropped: Vec::new(),
            regions,
            verification_payload,
            hmac_key,
            revision_token: None,
        }
    }

    /// Sets the diagnosis of every key: its report type, and its days since symptom onset.
    /// `None` leaves what is there; a health authority's certificate overrides the upload.
    pub fn certify(&mut self, report_type: Option<ReportType>, onset: Option<u32>) {
        for key in &mut self.keys {
            if let Some(report_type) = report_type {
                key.report_type = report_type;
            }
            if let Some(onset) = onset {
                key.days_since_onset = days_since_onset(key.rolling_start, onset);
            }
        }
    }

    /// Gives keys sent without a transmission risk the one the health authority's diagnosis
    /// implies, as the reference server does.
    pub fn derive_transmission_risk(&mut self, report_type: ReportType) {
        let risk = match report_type {
            ReportType::ConfirmedTest => 2,
            ReportType::ConfirmedClinicalDiagnosis => 4,
            ReportType::SelfReport => 5,
            ReportType::Revoked => 6,
            ReportType::Unknown | ReportType::Recursive => return,
        };
        for key in self.keys.iter_mut().filter(|k| k.transmission_risk == 0) {
            key.transmission_risk = risk;
        }
    }
}

/// One key as a certificate's `tekmac` renders it: `base64key.rollingStart.rollingPeriod.risk`.
pub fn render_for_tekmac(key: &str, rolling_start: u32, rolling_period: u32, risk: i32) -> String {
    format!("{key}.{rolling_start}.{rolling_period}.{risk}")
}

/// What a certificate's `tekmac` is the HMAC of: the rendered keys, sorted as strings, joined
/// with commas.
pub fn tekmac_message(rendered: impl Iterator<Item = String>) -> String {
    let mut rendered: Vec<String> = rendered.collect();
    rendered.sort_unstable();
    rendered.join(",")
}

/// The upload's own report type: confirmed unless it says otherwise; a phone cannot declare
/// a negative test.
fn parse_report_type(label: Option<&str>) -> Result<ReportType, UploadError> {
    let Some(label) = label else {
        return Ok(ReportType::ConfirmedTest);
    };
    match ReportType::from_label(label) {
        Some(ReportType::Revoked) | None => Err(UploadError::BadReportType(label.to_string())),
        Some(report_type) => Ok(report_type),
    }
}

/// Days from symptom onset (rounded down to its UTC day) to the key's first interval, rounded
/// to the nearest day, if within GAEN's -14..=14.
fn days_since_onset(rolling_start: u32, onset: u32) -> Option<i32> {
    let day = i64::from(INTERVALS_PER_DAY);
    let onset_day = i64::from(onset) / day * day;
    let diff = i64::from(rolling_start) - onset_day;
    let days = diff / day + (diff % day).signum() * i64::from((diff % day).abs() > day / 2);
    (-14..=14).contains(&days).then_some(days as i32)
}

fn parse_regions(declared: &[String], own: RegionId) -> Result<Vec<RegionId>, UploadError> {
    if declared.len() > MAX_REGIONS {
        return Err(UploadError::TooManyRegions(declared.len()));
    }
    let mut regions = declared
        .iter()
        .map(|r| {
            r.parse::<RegionId>()
                .map_err(|e| UploadError::BadRegion(e.to_string()))
        })
        .collect::<Result<BTreeSet<_>, _>>()?;
    if regions.is_empty() {
        regions.insert(own);
    }
    Ok(regions.into_iter().collect())
}

/// The keys that pass their own rules, and the errors of those that do not. A request with no
/// key, too many, a key twice, keys that break a rule together (after the bad ones are left
/// out), or no good key is refused with the (first) reason.
fn validate_keys(
    keys: &[ExposureKeyJson],
    now_interval: u32,
) -> Result<(Vec<DiagnosisKey>, Vec<UploadError>), UploadError> {
    if keys.is_empty() {
        return Err(UploadError::NoKeys);
    }
    if keys.len() > MAX_KEYS {
        return Err(UploadError::TooManyKeys(keys.len()));
    }
    let mut seen = HashSet::with_capacity(keys.len());
    let mut valid = Vec::with_capacity(keys.len());
    let mut dropped = Vec::new();
    for (index, k) in keys.iter().enumerate() {
        let key = match parse_key(index, k, now_interval) {
            Ok(key) => key,
            Err(error) => {
                dropped.push(error);
                continue;
            }
        };
        if !seen.insert(key.key_data) {
            return Err(UploadError::DuplicateKey(index));
        }
        valid.push(key);
    }
    if valid.is_empty() {
        return Err(dropped.swap_remove(0));
    }
    check_intervals(&valid)?;
    Ok((valid, dropped))
}

/// One key of a request, if it passes the rules of a single key.
fn parse_key(
    index: usize,
    k: &ExposureKeyJson,
    now_interval: u32,
) -> Result<DiagnosisKey, UploadError> {
    let bytes = BASE64
        .decode(&k.key)
        .map_err(|_| UploadError::BadBase64(index))?;
    let key_data: [u8; KEY_LEN] =
        bytes
            .as_slice()
            .try_into()
            .map_err(|_| UploadError::BadKeyLength {
                index,
                len: bytes.len(),
            })?;
    let key = DiagnosisKey {
        key_data,
        rolling_start: k.rolling_start_number,
        rolling_period: k.rolling_period,
        transmission_risk: k.transmission_risk,
        report_type: ReportType::Unknown,
        days_since_onset: None,
    };
    check_key(&key, now_interval).map_err(|problem| problem.at(index))?;
    Ok(key)
}

/// Why one key breaks the rules, whoever sent it (a phone, or a peer backend's feed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyProblem {
    #[error("rollingPeriod {0} is not 1 to {INTERVALS_PER_DAY}")]
    BadRollingPeriod(u32),
    #[error("transmissionRisk {0} is not 0 to 8")]
    BadTransmissionRisk(i32),
    #[error("the key starts in the future")]
    InFuture,
    #[error("the key ended more than {MAX_KEY_AGE_DAYS} days ago")]
    TooOld,
}

impl KeyProblem {
    /// A short name of the problem, to count refused keys by (the upload error's code).
    pub fn code(&self) -> &'static str {
        self.at(0).code()
    }

    /// The upload error for key number `index` of a request.
    fn at(&self, index: usize) -> UploadError {
        match *self {
            Self::BadRollingPeriod(period) => UploadError::BadRollingPeriod { index, period },
            Self::BadTransmissionRisk(risk) => UploadError::BadTransmissionRisk { index, risk },
            Self::InFuture => UploadError::KeyInFuture(index),
            Self::TooOld => UploadError::KeyTooOld(index),
        }
    }
}

/// The rules every single key must pass at interval `now_interval`.
pub fn check_key(key: &DiagnosisKey, now_interval: u32) -> Result<(), KeyProblem> {
    if !(1..=INTERVALS_PER_DAY).contains(&key.rolling_period) {
        return Err(KeyProblem::BadRollingPeriod(key.rolling_period));
    }
    if !(0..=8).contains(&key.transmission_risk) {
        return Err(KeyProblem::BadTransmissionRisk(key.transmission_risk));
    }
    if key.rolling_start > now_interval {
        return Err(KeyProblem::InFuture);
    }
    let oldest_end = now_interval.saturating_sub(MAX_KEY_AGE_DAYS * INTERVALS_PER_DAY);
    if key.rolling_end() < oldest_end {
        return Err(KeyProblem::TooOld);
    }
    Ok(())
}

/// At most [`MAX_SAME_START`] keys per start interval, and keys with different starts must not
/// overlap in time.
fn check_intervals(keys: &[DiagnosisKey]) -> Result<(), UploadError> {
    let mut by_start: Vec<&DiagnosisKey> = keys.iter().collect();
    by_start.sort_by_key(|k| (k.rolling_start, k.rolling_period));
    for same_start in by_start.chunk_by(|a, b| a.rolling_start == b.rolling_start) {
        if same_start.len() > MAX_SAME_START {
            return Err(UploadError::TooManySameStart(same_start[0].rolling_start));
        }
    }
    let mut previous: Option<&DiagnosisKey> = None;
    for key in by_start {
        if let Some(prev) = previous.filter(|p| p.rolling_start != key.rolling_start)
            && prev.rolling_end() > key.rolling_start
        {
            return Err(UploadError::OverlappingKeys(
                prev.rolling_start,
                key.rolling_start,
            ));
        }
        // Among keys with one start, the longest decides what may follow.
        if previous.is_none_or(|p| {
            p.rolling_start != key.rolling_start || p.rolling_end() < key.rolling_end()
        }) {
            previous = Some(key);
        }
    }
    Ok(())
}

/// The moment a key may be published: on arrival, unless the key was still in use when it
/// arrived (a same-day key), which waits until `embargo` seconds after its last interval.
pub fn publish_at(key: &DiagnosisKey, received_at: UnixSeconds, embargo: u64) -> UnixSeconds {
    let ends = seconds_of(key.rolling_end());
    if ends > received_at {
        ends + embargo
    } else {
        received_at
    }
}

/// SHA-256 over an upload's keys in a canonical order: the identity of an upload, so that a
/// retry is recognised.
pub fn upload_digest(keys: &[DiagnosisKey]) -> [u8; 32] {
    let mut sorted: Vec<&DiagnosisKey> = keys.iter().collect();
    sorted.sort_by_key(|k| k.key_data);
    let mut bytes = Vec::with_capacity(sorted.len() * (KEY_LEN + 12));
    for k in sorted {
        bytes.extend_from_slice(&k.key_data);
        bytes.extend_from_slice(&k.rolling_start.to_be_bytes());
        bytes.extend_from_slice(&k.rolling_period.to_be_bytes());
        bytes.extend_from_slice(&k.transmission_risk.to_be_bytes());
    }
    sha256(&[&bytes])
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_700_000_000;

    fn own() -> RegionId {
        "CH".parse().unwrap()
    }

    fn key(byte: u8, start: u32, period: u32) -> ExposureKeyJson {
        ExposureKeyJson {
            key: BASE64.encode([byte; 16]),
            rolling_start_number: start,
            rolling_period: period,
            transmission_risk: 4,
        }
    }

    fn request(keys: Vec<ExposureKeyJson>) -> PublishRequest {
        PublishRequest {
            temporary_exposure_keys: keys,
            regions: vec!["DE".into(), "CH".into(), "DE".into()],
            verification_payload: "123456".into(),
            hmac_key: None,
            symptom_onset_interval: None,
            report_type: None,
            padding: None,
            health_authority_id: None,
            traveler: None,
            revision_token: None,
        }
    }

    fn config() -> Config {
        let mut config = Config::new(own());
        config.traveler_regions = vec!["IT".parse().unwrap(), "AT".parse().unwrap()];
        config
    }

    fn today() -> u32 {
        interval_of(NOW) / 144 * 144
    }

    fn refused(req: PublishRequest) -> &'static str {
        req.validate(&config(), NOW).unwrap_err().code()
    }

    #[test]
    fn only_json_objects_are_requests() {
        let key =
            r#"{"key": "AAECAwQFBgcICQoLDA0ODw==", "rollingStartNumber": 1, "rollingPeriod": 144}"#;
        let body = format!(r#"{{"temporaryExposureKeys": [{key}], "verificationPayload": "1"}}"#);
        assert!(PublishRequest::from_json(body.as_bytes()).is_ok());
        // serde would read a struct from an array of its fields in order.
        for bad in [
            format!(r#"[[{key}], [], "1"]"#),
            r#"{"temporaryExposureKeys": [["AAECAwQFBgcICQoLDA0ODw==", 1, 144, 0]], "verificationPayload": "1"}"#.to_string(),
            format!(
                r#"{{"temporaryExposureKeys": [{key} ,
                    ["AAECAwQFBgcICQoLDA0ODw==", 1, 144, 0]], "verificationPayload": "1"}}"#
            ),
        ] {
            let refused = PublishRequest::from_json(bad.as_bytes()).unwrap_err();
            assert_eq!(refused.code(), "bad_json", "{bad}");
        }
    }

    #[test]
    fn names_match_case_insensitively_and_once() {
        let body = |names: [&str; 3]| {
            format!(
                r#"{{"{}": [{{"{}": "AAECAwQFBgcICQoLDA0ODw==", "rollingStartNumber": 1, "rollingPeriod": 144}}], "{}": "[1]"}}"#,
                names[0], names[1], names[2]
            )
        };
        for names in [
            ["temporaryExposureKeys", "key", "verificationPayload"],
            ["temporaryexposurekeys", "KEY", "VerificationPayload"],
        ] {
            let read = PublishRequest::from_json(body(names).as_bytes()).unwrap();
            assert_eq!(read.verification_payload, "[1]", "{names:?}");
            assert_eq!(read.temporary_exposure_keys[0].rolling_start_number, 1);
        }
        let twice = r#"{"temporaryExposureKeys": [], "TemporaryExposureKeys": []}"#;
        let refused = PublishRequest::from_json(twice.as_bytes()).unwrap_err();
        assert_eq!(refused.code(), "bad_json");
        let unknown = body(["temporaryExposureKeys", "key", "verification"]);
        let refused = PublishRequest::from_json(unknown.as_bytes()).unwrap_err();
        assert_eq!(refused.code(), "bad_json");
    }

    #[test]
    fn a_fortnight_of_daily_keys_is_accepted() {
        let keys = (1..=14)
            .map(|d| key(d as u8, today() - d * 144, 144))
            .collect();
        let upload = request(keys).validate(&config(), NOW).unwrap();
        assert_eq!(upload.keys.len(), 14);
        assert_eq!(
            upload.regions,
            vec!["CH".parse().unwrap(), "DE".parse().unwrap()]
        );
        assert!(
            upload
                .keys
                .iter()
                .all(|k| k.report_type == ReportType::ConfirmedTest)
        );
    }

    #[test]
    fn no_declared_regions_means_the_own_region() {
        let mut req = request(vec![key(1, today() - 144, 144)]);
        req.regions.clear();
        assert_eq!(req.validate(&config(), NOW).unwrap().regions, vec![own()]);
    }

    #[test]
    fn each_rule_has_its_own_refusal() {
        let t = today();
        assert_eq!(refused(request(vec![])), "no_keys");
        assert_eq!(
            refused(request(
                (0..31).map(|i| key(i, t - 144 - i as u32, 1)).collect()
            )),
            "too_many_keys"
        );
        let mut bad = key(1, t, 1);
        bad.key = "not base64!".into();
        assert_eq!(refused(request(vec![bad])), "bad_base64");
        let mut short = key(1, t, 1);
        short.key = BASE64.encode([1u8; 15]);
        assert_eq!(refused(request(vec![short])), "bad_key_length");
        assert_eq!(
            refused(request(vec![key(1, t - 144, 144), key(1, t, 1)])),
            "duplicate_key"
        );
        assert_eq!(refused(request(vec![key(1, t, 0)])), "bad_rolling_period");
        assert_eq!(refused(request(vec![key(1, t, 145)])), "bad_rolling_period");
        let mut risky = key(1, t, 1);
        risky.transmission_risk = 9;
        assert_eq!(refused(request(vec![risky])), "bad_transmission_risk");
        assert_eq!(
            refused(request(vec![key(1, interval_of(NOW) + 1, 1)])),
            "key_in_future"
        );
        assert_eq!(
            refused(request(vec![key(1, t - 17 * 144, 144)])),
            "key_too_old"
        );
        assert_eq!(
            refused(request((1..=4).map(|i| key(i, t - 144, 144)).collect())),
            "too_many_same_start"
        );
        assert_eq!(
            refused(request(vec![key(1, t - 144, 144), key(2, t - 100, 10)])),
            "overlapping_keys"
        );
        let mut regions = request(vec![key(1, t, 1)]);
        regions.regions = vec!["ch".into()];
        assert_eq!(refused(regions), "bad_region");
        let mut many = request(vec![key(1, t, 1)]);
        many.regions = (0..51)
            .map(|i| format!("A{}", (b'A' + (i % 26) as u8) as char))
            .collect();
        assert_eq!(refused(many), "too_many_regions");
        let mut onset = request(vec![key(1, t, 1)]);
        onset.symptom_onset_interval = Some(interval_of(NOW) + 1);
        assert_eq!(refused(onset), "onset_in_future");
        let mut report = request(vec![key(1, t, 1)]);
        report.report_type = Some("negative".into());
        assert_eq!(refused(report), "bad_report_type");
        let mut unverified = request(vec![key(1, t, 1)]);
        unverified.verification_payload.clear();
        assert_eq!(refused(unverified), "missing_verification");
    }

    #[test]
    fn same_start_keys_may_differ_in_length_but_not_overlap_the_next() {
        let t = today();
        let ok = vec![key(1, t - 144, 144), key(2, t - 144, 72), key(3, t, 10)];
        assert!(request(ok).validate(&config(), NOW).is_ok());
        let overlap = vec![
            key(1, t - 144, 72),
            key(2, t - 144, 145 - 1),
            key(3, t - 100, 10),
        ];
        assert_eq!(refused(request(overlap)), "overlapping_keys");
    }

    #[test]
    fn bodies_are_bounded_and_unknown_fields_refused() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            PublishRequest::from_json(&big).unwrap_err().code(),
            "body_too_large"
        );
        let unknown = br#"{"temporaryExposureKeys":[],"surprise":1}"#;
        let err = PublishRequest::from_json(unknown).unwrap_err();
        assert_eq!(err.code(), "bad_json");
        assert!(err.to_string().contains("surprise"), "{err}");
    }

    #[test]
    fn symptom_onset_sets_days_since_onset_within_fourteen_days() {
        let t = today();
        let mut req = request(vec![key(1, t - 2 * 144, 144), key(2, t, 144)]);
        req.symptom_onset_interval = Some(t - 144);
        let upload = req.validate(&config(), NOW).unwrap();
        let days: Vec<_> = upload.keys.iter().map(|k| k.days_since_onset).collect();
        assert_eq!(days, vec![Some(-1), Some(1)]);
    }

    #[test]
    fn keys_that_break_a_rule_of_their_own_are_left_out_and_named() {
        let t = today();
        let mut bad = key(2, t - 2 * 144, 144);
        bad.key = "not base64!".into();
        let mut risky = key(3, t - 3 * 144, 144);
        risky.transmission_risk = 9;
        let req = request(vec![key(1, t - 144, 144), bad, risky]);
        let upload = req.validate(&config(), NOW).unwrap();
        assert_eq!(upload.keys.len(), 1);
        assert_eq!(
            upload.dropped,
            vec![
                UploadError::BadBase64(1),
                UploadError::BadTransmissionRisk { index: 2, risk: 9 }
            ]
        );
        // The certificate's tekmac covers what was sent, dropped keys too.
        assert!(upload.tekmac_message.contains("not base64!"));
        assert_eq!(upload.tekmac_message.matches(',').count(), 2);
        // Rules about keys together apply to the keys kept.
        let overlap = vec![key(1, t - 144, 144), key(2, t - 100, 10), key(3, t, 145)];
        assert_eq!(refused(request(overlap)), "overlapping_keys");
    }

    #[test]
    fn field_names_match_as_the_reference_decoder_matches_them() {
        let t = today();
        let body = format!(
            r#"{{"TemporaryExposureKeys":[{{"KEY":"{}","rollingstartnumber":{},"RollingPeriod":144}}],
                "hmackey":"aGVsbG8=","verificationPayload":"123","healthAuthorityID":"ch.admin",
                "padding":"AAAA","symptomOnsetInterval":{},"traveler":false}}"#,
            BASE64.encode([1u8; 16]),
            t - 144,
            t - 144
        );
        let upload = PublishRequest::from_json(body.as_bytes())
            .unwrap()
            .validate(&config(), NOW)
            .unwrap();
        assert_eq!(upload.hmac_key.as_deref(), Some(&b"hello"[..]));
        assert_eq!(upload.keys[0].days_since_onset, Some(0));
        for refused in [
            r#"{"temporaryExposureKeys":[],"surprise":1}"#,
            r#"{"temporaryExposureKeys":[],"hmacKey":"a","HMACKEY":"b"}"#,
            r#"{"temporaryExposureKeys":[{"key":"a","keys":"b"}]}"#,
        ] {
            let err = PublishRequest::from_json(refused.as_bytes()).unwrap_err();
            assert_eq!(err.code(), "bad_json", "{refused}: {err}");
        }
    }

    #[test]
    fn travellers_without_regions_go_to_the_traveller_regions() {
        let t = today();
        let mut traveller = request(vec![key(1, t - 144, 144)]);
        traveller.regions.clear();
        traveller.traveler = Some(true);
        let regions: Vec<String> = traveller
            .validate(&config(), NOW)
            .unwrap()
            .regions
            .iter()
            .map(|r| r.to_string())
            .collect();
        assert_eq!(regions, ["AT", "CH", "IT"]);
        // Declared regions win.
        let mut declared = request(vec![key(1, t - 144, 144)]);
        declared.traveler = Some(true);
        assert_eq!(declared.validate(&config(), NOW).unwrap().regions.len(), 2);
    }

    #[test]
    fn onset_is_its_day_and_days_since_onset_round_to_the_nearest_day() {
        let t = today();
        // An onset in the middle of a day counts from that day's start.
        assert_eq!(days_since_onset(t, t - 144 + 100), Some(1));
        // 1 day and 80 intervals is nearer 2 days; 1 day and 60 nearer 1.
        assert_eq!(days_since_onset(t + 144 + 80, t), Some(2));
        assert_eq!(days_since_onset(t + 144 + 60, t), Some(1));
        assert_eq!(days_since_onset(t - 144 - 80, t), Some(-2));
        assert_eq!(days_since_onset(t + 15 * 144, t), None);
    }

    #[test]
    fn a_health_authority_diagnosis_sets_a_missing_transmission_risk() {
        let t = today();
        let mut keys = vec![key(1, t - 144, 144), key(2, t - 288, 144)];
        keys[0].transmission_risk = 0;
        keys[1].transmission_risk = 7;
        let mut upload = request(keys).validate(&config(), NOW).unwrap();
        upload.derive_transmission_risk(ReportType::ConfirmedClinicalDiagnosis);
        let risks: Vec<i32> = upload.keys.iter().map(|k| k.transmission_risk).collect();
        assert_eq!(risks, [4, 7], "only a missing risk is derived");
    }

    #[test]
    fn same_day_keys_wait_for_the_embargo() {
        let k = DiagnosisKey {
            key_data: [1; 16],
            rolling_start: today(),
            rolling_period: 144,
            transmission_risk: 0,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        };
        assert_eq!(publish_at(&k, NOW, 7200), seconds_of(today() + 144) + 7200);
        let old = DiagnosisKey {
            rolling_start: today() - 144,
            ..k
        };
        assert_eq!(publish_at(&old, NOW, 7200), NOW);
    }
}
