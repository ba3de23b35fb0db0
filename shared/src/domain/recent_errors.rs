//! The newest warnings and errors a region logged, kept in memory for the operator
//! (`GET /v1/admin/errors` and the console's status page): whatever sets up logging records
//! them here.

use std::collections::VecDeque;
use std::sync::Mutex;

use serde::Serialize;

use crate::domain::key::UnixSeconds;

/// A warning or error the region logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LoggedError {
    pub at: UnixSeconds,
    pub level: String,
    pub message: String,
}

/// Most log lines [`RecentErrors`] keeps.
pub const RECENT_ERRORS: usize = 50;

/// The newest warnings and errors, [`RECENT_ERRORS`] at most: whatever logs them (the command
/// line's log set-up) records them here.
#[derive(Debug, Default)]
pub struct RecentErrors(Mutex<VecDeque<LoggedError>>);

impl RecentErrors {
    pub fn record(&self, error: LoggedError) {
        let mut errors = self.0.lock().expect("no panic while logging");
        if errors.len() == RECENT_ERRORS {
            errors.pop_front();
        }
        errors.push_back(error);
    }

    /// The newest first.
    pub fn newest_first(&self) -> Vec<LoggedError> {
        let errors = self.0.lock().expect("no panic while logging");
        errors.iter().rev().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recent_errors_keep_the_newest() {
        let errors = RecentErrors::default();
        for at in 0..(RECENT_ERRORS as u64 + 5) {
            errors.record(LoggedError {
                at,
                level: "WARN".into(),
                message: format!("problem {at}"),
            });
        }
        let newest = errors.newest_first();
        assert_eq!(newest.len(), RECENT_ERRORS);
        assert_eq!(newest[0].at, RECENT_ERRORS as u64 + 4);
        assert_eq!(newest.last().unwrap().at, 5);
    }
}
