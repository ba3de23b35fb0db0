//! How long a key is kept (SP3), and how precisely its times are kept (SP2).
//!
//! - Times are stored to the hour, never to the second: a stored key tells no more about when
//!   its uploader came than the hour. Times a key must be gone by are rounded down (it goes a
//!   little early, never late); a later moment it may be published from (the end of an
//!   embargo) is rounded up (it never comes out early).
//! - A key uploaded here is kept T after its arrival. A key pulled from a peer is kept T after
//!   its own rolling start (it cannot have arrived anywhere before it was in use), never longer
//!   than a key uploaded here at the same moment: so SP3 holds across regions, however late a
//!   key was pulled.

use crate::domain::key::{DiagnosisKey, UnixSeconds, seconds_of};

/// Seconds in the unit stored times are kept in.
pub const HOUR: u64 = 3600;

/// `t` rounded down to the hour.
pub fn hour_of(t: UnixSeconds) -> UnixSeconds {
    t - t % HOUR
}

/// When a key that arrived at `arrival` may be published, as it is stored: the hour of its
/// arrival, or the later moment `at` (the end of an embargo) rounded up to the hour.
pub fn stored_publish_at(at: UnixSeconds, arrival: UnixSeconds) -> UnixSeconds {
    match at > arrival {
        true => at.next_multiple_of(HOUR),
        false => hour_of(arrival),
    }
}

/// When a key uploaded here at `arrival` must be gone.
pub fn local_expiry(arrival: UnixSeconds, retention: u64) -> UnixSeconds {
    hour_of(arrival) + retention
}

/// When a key pulled from a peer at `now` must be gone: `retention` after its rolling start,
/// never later than a key uploaded here at `now`.
pub fn remote_expiry(key: &DiagnosisKey, now: UnixSeconds, retention: u64) -> UnixSeconds {
    local_expiry(seconds_of(key.rolling_start).min(now), retention)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::key::{ReportType, interval_of};

    const DAY: u64 = 86_400;
    const T: u64 = 30 * DAY;

    fn key_started(at: UnixSeconds) -> DiagnosisKey {
        DiagnosisKey {
            key_data: [1; 16],
            rolling_start: interval_of(at),
            rolling_period: 144,
            transmission_risk: 0,
            report_type: ReportType::ConfirmedTest,
            days_since_onset: None,
        }
    }

    #[test]
    fn times_are_kept_to_the_hour_and_never_late() {
        let now = 1_750_000_000; // 15:06:40 UTC
        assert_eq!(hour_of(now), 1_749_999_600);
        assert_eq!(local_expiry(now, T), 1_749_999_600 + T);
        assert!(local_expiry(now, T) <= now + T);
        // An arrival is kept as its hour, a later moment (an embargo's end) as the next hour.
        assert_eq!(stored_publish_at(now, now), 1_749_999_600);
        assert_eq!(stored_publish_at(now + 7200, now), 1_750_010_400);
        assert_eq!(stored_publish_at(1_750_003_200, now), 1_750_003_200);
    }

    #[test]
    fn a_remote_key_expires_t_after_its_rolling_start_never_later_than_a_local_one() {
        let now = 1_750_000_000;
        // Used ten days ago, pulled now: twenty days are left, not thirty.
        let old = key_started(now - 10 * DAY);
        let expiry = remote_expiry(&old, now, T);
        assert_eq!(expiry, hour_of(seconds_of(old.rolling_start)) + T);
        assert!(expiry <= now + 20 * DAY);
        let future = key_started(now + DAY);
        assert_eq!(remote_expiry(&future, now, T), local_expiry(now, T));
    }
}
