//! What a health authority says about a person's test when it issues a one-time code: the
//! test type and the symptom onset date, named as verification servers name them
//! (`testType`, `symptomDate`). An upload with that code gets that report type and onset,
//! whatever the phone claims, as with a verification certificate.

use serde::{Deserialize, Serialize};
use time::Date;
use time::macros::format_description;

use crate::domain::key::{INTERVALS_PER_DAY, ReportType, UnixSeconds, interval_of};

/// Most days a symptom onset may lie in the past.
pub const MAX_ONSET_AGE_DAYS: u32 = 14;

/// The diagnosis a code carries; empty when the health authority gave none.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Diagnosis {
    pub report_type: Option<ReportType>,
    /// The first interval of the symptom onset day.
    pub symptom_onset_interval: Option<u32>,
}

impl Diagnosis {
    /// The request this diagnosis answers: its test type and symptom date as they were asked
    /// for.
    pub fn request(&self) -> CodeRequest {
        CodeRequest {
            test_type: self
                .report_type
                .and_then(ReportType::label)
                .map(str::to_string),
            symptom_date: self.symptom_onset_interval.map(|interval| {
                let seconds = i64::from(interval) * 600;
                let day = time::OffsetDateTime::from_unix_timestamp(seconds)
                    .map(|at| at.date())
                    .unwrap_or(Date::MIN);
                format!(
                    "{:04}-{:02}-{:02}",
                    day.year(),
                    u8::from(day.month()),
                    day.day()
                )
            }),
        }
    }
}

/// The body of `POST /v1/admin/codes` (optional).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CodeRequest {
    /// `confirmed`, `likely` or `negative`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub test_type: Option<String>,
    /// `YYYY-MM-DD`, in UTC.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symptom_date: Option<String>,
}

/// Why a code request is refused. Each variant has a stable [`code`](DiagnosisError::code).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiagnosisError {
    #[error("the request body is not a code request: {0}")]
    BadJson(String),
    #[error("testType {0:?} is not one of confirmed, likely, negative")]
    BadTestType(String),
    #[error(
        "symptomDate {0:?} is not a date (YYYY-MM-DD) within the last {MAX_ONSET_AGE_DAYS} days"
    )]
    BadSymptomDate(String),
}

impl DiagnosisError {
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson(_) => "bad_json",
            Self::BadTestType(_) => "bad_test_type",
            Self::BadSymptomDate(_) => "bad_symptom_date",
        }
    }
}

impl CodeRequest {
    /// The request in a body: JSON, or nothing for a code without a diagnosis.
    pub fn from_body(body: &[u8]) -> Result<Self, DiagnosisError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let bad_json = |e: serde_json::Error| DiagnosisError::BadJson(e.to_string());
        let value: serde_json::Value = serde_json::from_slice(body).map_err(bad_json)?;
        // serde would also read the request from an array of its fields in order.
        if !value.is_object() {
            return Err(DiagnosisError::BadJson(
                "the body is not a JSON object".into(),
            ));
        }
        serde_json::from_value(value).map_err(bad_json)
    }

    /// The diagnosis requested, checked at `now`.
    pub fn diagnosis(&self, now: UnixSeconds) -> Result<Diagnosis, DiagnosisError> {
        let report_type = match self.test_type.as_deref() {
            None => None,
            Some(label @ ("confirmed" | "likely" | "negative")) => ReportType::from_label(label),
            Some(other) => return Err(DiagnosisError::BadTestType(other.to_string())),
        };
        let symptom_onset_interval = self
            .symptom_date
            .as_deref()
            .map(|date| onset_interval(date, now))
            .transpose()?;
        Ok(Diagnosis {
            report_type,
            symptom_onset_interval,
        })
    }
}

/// The first interval of a `YYYY-MM-DD` day that is neither in the future nor more than
/// [`MAX_ONSET_AGE_DAYS`] ago.
fn onset_interval(date: &str, now: UnixSeconds) -> Result<u32, DiagnosisError> {
    let bad = || DiagnosisError::BadSymptomDate(date.to_string());
    let day = Date::parse(date, format_description!("[year]-[month]-[day]")).map_err(|_| bad())?;
    let seconds = day.midnight().assume_utc().unix_timestamp();
    let start = u64::try_from(seconds).map_err(|_| bad())?;
    let today = interval_of(now) / INTERVALS_PER_DAY * INTERVALS_PER_DAY;
    let onset = interval_of(start);
    let oldest = today.saturating_sub(MAX_ONSET_AGE_DAYS * INTERVALS_PER_DAY);
    if onset > today || onset < oldest {
        return Err(bad());
    }
    Ok(onset)
}

#[cfg(test)]
mod tests {
    use super::*;

    // 2023-11-14T22:13:20Z
    const NOW: UnixSeconds = 1_700_000_000;

    fn request(test_type: Option<&str>, date: Option<&str>) -> CodeRequest {
        CodeRequest {
            test_type: test_type.map(str::to_string),
            symptom_date: date.map(str::to_string),
        }
    }

    #[test]
    fn test_types_and_onset_dates_as_verification_servers_send_them() {
        let d = request(Some("likely"), Some("2023-11-12"))
            .diagnosis(NOW)
            .unwrap();
        assert_eq!(d.report_type, Some(ReportType::ConfirmedClinicalDiagnosis));
        assert_eq!(d.symptom_onset_interval, Some(1_699_747_200 / 600));
        assert_eq!(
            request(Some("negative"), None).diagnosis(NOW).unwrap(),
            Diagnosis {
                report_type: Some(ReportType::Revoked),
                symptom_onset_interval: None
            }
        );
        assert_eq!(request(None, None).diagnosis(NOW), Ok(Diagnosis::default()));
        let asked = request(Some("confirmed"), Some("2023-11-03"));
        let answered = asked.diagnosis(NOW).unwrap().request();
        assert_eq!(answered.test_type.as_deref(), Some("confirmed"));
        assert_eq!(answered.symptom_date.as_deref(), Some("2023-11-03"));
        assert_eq!(
            CodeRequest::from_body(b"").unwrap().diagnosis(NOW),
            Ok(Diagnosis::default())
        );
        let body = br#"{"testType": "confirmed", "symptomDate": "2023-11-14"}"#;
        assert_eq!(
            CodeRequest::from_body(body)
                .unwrap()
                .diagnosis(NOW)
                .unwrap()
                .report_type,
            Some(ReportType::ConfirmedTest)
        );
        // An array of the fields in order is no request (serde would read one from it).
        for bad in [
            &br#"{"testtype": "confirmed"}"#[..],
            b"confirmed",
            b"[]",
            b"[null, null]",
            br#"["likely", "2023-11-12"]"#,
        ] {
            assert_eq!(CodeRequest::from_body(bad).unwrap_err().code(), "bad_json");
        }
        for (test_type, date, code) in [
            (Some("user-report"), None, "bad_test_type"),
            (Some("Confirmed"), None, "bad_test_type"),
            (None, Some("2023-11-15"), "bad_symptom_date"),
            (None, Some("2023-10-01"), "bad_symptom_date"),
            (None, Some("14.11.2023"), "bad_symptom_date"),
            (None, Some("2023-02-30"), "bad_symptom_date"),
        ] {
            let refused = request(test_type, date).diagnosis(NOW).unwrap_err();
            assert_eq!(refused.code(), code, "{test_type:?} {date:?}");
        }
    }
}
