//! [`CodeStore`] on the embedded store, and the wrong-code counters it keeps in memory.

use async_trait::async_trait;
use prost::Message as _;
use redb::ReadableTable;

use super::codec::{CodeRow, IssuedRow};
use super::staging::StagedCodeRows;
use super::{CODES, LocalStore};
use crate::domain::diagnosis::Diagnosis;
use crate::ports::{self, CodeClaim, CodeRecord, CodeStore, StoreError, UnixSeconds};

/// Wrong codes per client in the newest rate-limit window. They live in memory: one process
/// serves the embedded store, a count under a lock is atomic, and an upload costs the writer no
/// extra write. A restart forgives what was counted.
#[derive(Default)]
pub(super) struct Attempts(std::sync::Mutex<Window>);

/// The newest window: a request that began in the window before is counted in this one.
#[derive(Default)]
struct Window {
    start: UnixSeconds,
    by_client: std::collections::HashMap<String, u32>,
}

impl Attempts {
    fn window(&self, start: UnixSeconds) -> std::sync::MutexGuard<'_, Window> {
        let mut window = self.0.lock().expect("no panic while counting");
        if start > window.start {
            *window = Window {
                start,
                by_client: Default::default(),
            };
        }
        window
    }

    /// Counts one more wrong code and returns the client's count in the window.
    fn count(&self, client: &str, window_start: UnixSeconds) -> u32 {
        let mut window = self.window(window_start);
        let count = window.by_client.entry(client.to_string()).or_default();
        *count += 1;
        *count
    }

    /// The client's count in the window; clients with none take no memory.
    fn get(&self, client: &str, window_start: UnixSeconds) -> u32 {
        self.window(window_start)
            .by_client
            .get(client)
            .copied()
            .unwrap_or(0)
    }
}

/// A code's row as the last commit left it: staged (`staged`, see
/// [`staging`](super::staging)), or in [`CODES`] (`table`). A reader holds the staged rows'
/// lock from before it begins its read of [`CODES`]: a staged row is forgotten only after it
/// is committed into [`CODES`], so the reader finds each change in one or the other.
pub(super) fn read_code(
    staged: &StagedCodeRows,
    table: &impl ReadableTable<[u8; 32], &'static [u8]>,
    hash: &[u8; 32],
) -> Result<Option<CodeRow>, StoreError> {
    if let Some((_, row)) = staged.get(hash) {
        return CodeRow::decode(row.as_slice())
            .map(Some)
            .map_err(StoreError::backend);
    }
    read_stored_code(table, hash)
}

/// A code's row as [`CODES`] holds it, without the staged rows.
pub(super) fn read_stored_code(
    table: &impl ReadableTable<[u8; 32], &'static [u8]>,
    hash: &[u8; 32],
) -> Result<Option<CodeRow>, StoreError> {
    table
        .get(hash)
        .map_err(StoreError::backend)?
        .map(|v| CodeRow::decode(v.value()).map_err(StoreError::backend))
        .transpose()
}

#[async_trait]
impl CodeStore for LocalStore {
    async fn add_code(&self, code: CodeRecord) -> Result<(), StoreError> {
        self.write(move |tables| {
            let codes = &mut tables.codes;
            let row = CodeRow {
                issued_at: code.issued_at,
                expires_at: code.expires_at,
                used_by: None,
                inserted: 0,
                report_type: code.diagnosis.report_type.map(|r| r as i32),
                symptom_onset: code.diagnosis.symptom_onset_interval,
            };
            if codes
                .get(&code.code_hash)
                .map_err(StoreError::backend)?
                .is_some()
            {
                return Err(StoreError::Conflict("a code with this value exists".into()));
            }
            codes
                .insert(code.code_hash, row.encode_to_vec().as_slice())
                .map_err(StoreError::backend)?;
            if let Some(issuer) = &code.issued_by {
                let issued = IssuedRow {
                    expires_at: code.expires_at,
                    report_type: row.report_type,
                    symptom_onset: row.symptom_onset,
                };
                tables
                    .issued
                    .insert(
                        (issuer.as_str(), code.issued_at, code.code_hash),
                        issued.encode_to_vec().as_slice(),
                    )
                    .map_err(StoreError::backend)?;
            }
            Ok(())
        })
        .await
    }

    async fn wrong_attempts(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<u32, StoreError> {
        Ok(self.attempts.get(client, window_start))
    }

    async fn count_wrong_attempt(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<u32, StoreError> {
        Ok(self.attempts.count(client, window_start))
    }

    async fn check_code(
        &self,
        claim: &CodeClaim,
        now: UnixSeconds,
    ) -> Result<Diagnosis, StoreError> {
        let staged = self
            .staged_codes
            .read()
            .expect("no panic while staging codes");
        self.read_now(|txn| {
            let codes = txn.open_table(CODES).map_err(StoreError::backend)?;
            let code = read_code(&staged, &codes, &claim.code_hash)?.map(|row| row.code_use());
            ports::check_claim(code.as_ref(), claim, now)?;
            Ok(code.map(|code| code.diagnosis).unwrap_or_default())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attempts_count_per_client_and_start_again_in_a_new_window() {
        let attempts = Attempts::default();
        assert_eq!(attempts.count("192.0.2.1", 3600), 1);
        assert_eq!(attempts.count("192.0.2.1", 3600), 2);
        assert_eq!(attempts.count("198.51.100.1", 3600), 1);
        assert_eq!(attempts.get("192.0.2.1", 3600), 2);
        // A request that began in the window before counts in the newest one.
        assert_eq!(attempts.count("192.0.2.1", 0), 3);
        assert_eq!(attempts.count("192.0.2.1", 7200), 1);
        assert_eq!(attempts.get("198.51.100.1", 7200), 0);
        // Reading takes no memory for clients without wrong codes.
        assert_eq!(attempts.get("203.0.113.5", 7200), 0);
        assert_eq!(attempts.0.lock().unwrap().by_client.len(), 1);
    }
}
