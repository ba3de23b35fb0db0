//! One-time codes, the first [`UploadVerifier`]: issued by the health authority, each
//! authorises one upload. A code is single use (consumed in the transaction that stores the
//! keys), expires, and is stored only as an HMAC under the region's secret pepper, so that a
//! copy of the store yields no code: the whole space of ten-digit codes is hashed in seconds,
//! but not without the pepper.
//!
//! Wrong codes are rate limited per client: a client that sent [`OneTimeCodes::max_wrong`]
//! wrong codes in the current window gets no code checked until the next one. Only wrong codes
//! count. A client's uploads are checked one at a time (in this process), so parallel guesses
//! cannot slip past the limit while parallel uploads with valid codes all go through. Across all
//! clients, wrong codes past [`OneTimeCodes::alarm_threshold`] in a window raise an alarm: a
//! guessing attack spread over many addresses.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::diagnosis::Diagnosis;
use crate::domain::metrics::Metrics;
use crate::domain::secret::Pepper;
use crate::domain::upload::{Upload, upload_digest};
use crate::ports::{
    Authorization, CodeClaim, CodeRecord, CodeStore, StoreError, UnixSeconds, UploadVerifier,
    VerifyError,
};

/// Digits in a one-time code.
pub const CODE_DIGITS: usize = 10;
/// Fresh codes tried when a new code collides with a live one.
const ISSUE_ATTEMPTS: usize = 8;

/// A freshly issued code, to hand to the person who tested positive.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssuedCode {
    pub code: String,
    pub expires_at: UnixSeconds,
}

/// One-time codes: issued by the health authority, checked on upload.
#[derive(Clone)]
pub struct OneTimeCodes {
    store: Arc<dyn CodeStore>,
    /// Without one, codes can be neither issued nor checked (a function deployed without the
    /// pepper).
    pepper: Option<Pepper>,
    metrics: Arc<Metrics>,
    /// How long a code stays valid.
    pub lifetime: u64,
    /// Wrong codes a client may send per window before it is refused.
    pub max_wrong: u32,
    /// Length of the rate-limit window.
    pub window: u64,
    /// Wrong codes from all clients in one window that raise the guessing alarm.
    pub alarm_threshold: u64,
    turns: Arc<Turns>,
    all_wrong: Arc<WrongInWindow>,
}

impl OneTimeCodes {
    pub fn new(
        store: Arc<dyn CodeStore>,
        pepper: Option<Pepper>,
        metrics: Arc<Metrics>,
        lifetime: u64,
    ) -> Self {
        Self {
            store,
            pepper,
            metrics,
            lifetime,
            max_wrong: 10,
            window: 3600,
            alarm_threshold: 1000,
            turns: Arc::default(),
            all_wrong: Arc::default(),
        }
    }

    /// Issues a new random code valid for [`lifetime`](Self::lifetime) seconds, carrying the
    /// health authority's `diagnosis` to the upload it authorises, recorded as issued by the
    /// code issuer `issued_by` (none: the operator). A code that happens to equal a live one is
    /// drawn again.
    pub async fn issue(
        &self,
        now: UnixSeconds,
        diagnosis: Diagnosis,
        issued_by: Option<&str>,
    ) -> Result<IssuedCode, StoreError> {
        let pepper = self.pepper()?;
        let expires_at = now + self.lifetime;
        for _ in 0..ISSUE_ATTEMPTS {
            let code = random_code();
            let added = self
                .store
                .add_code(CodeRecord {
                    code_hash: pepper.hash(&code),
                    issued_at: now,
                    expires_at,
                    diagnosis,
                    issued_by: issued_by.map(str::to_string),
                })
                .await;
            match added {
                Ok(()) => {
                    self.metrics.codes_issued.inc(&[]);
                    return Ok(IssuedCode { code, expires_at });
                }
                Err(StoreError::Conflict(_)) => {
                    tracing::info!("a new one-time code collided with a live one; drawing again");
                }
                Err(e) => {
                    self.metrics.storage_errors.inc(&["codes"]);
                    return Err(e);
                }
            }
        }
        Err(StoreError::Conflict(format!(
            "{ISSUE_ATTEMPTS} random codes in a row collided with live ones"
        )))
    }

    fn pepper(&self) -> Result<&Pepper, StoreError> {
        self.pepper.as_ref().ok_or_else(|| {
            StoreError::Backend("no code pepper is configured: codes cannot be used".into())
        })
    }

    /// Counts a wrong code of `client`, and across all clients for the guessing alarm.
    async fn wrong(&self, client: &str, window_start: UnixSeconds) -> Result<(), StoreError> {
        self.store.count_wrong_attempt(client, window_start).await?;
        self.metrics.wrong_codes.inc(&[]);
        if self.all_wrong.count(window_start) == self.alarm_threshold {
            self.metrics.guessing_alarms.inc(&[]);
            tracing::warn!(
                window_start,
                threshold = self.alarm_threshold,
                "wrong one-time codes from all clients passed the alarm threshold: a guessing \
                 attack from many addresses?"
            );
        }
        Ok(())
    }
}

#[async_trait]
impl UploadVerifier for OneTimeCodes {
    async fn verify(
        &self,
        upload: &Upload,
        client: &str,
        now: UnixSeconds,
    ) -> Result<Authorization, VerifyError> {
        let window_start = now - now % self.window;
        // One check at a time per client: its count of wrong codes is then exact.
        let _turn = self.turns.take(client).await;
        if self.store.wrong_attempts(client, window_start).await? >= self.max_wrong {
            // A limited client learns nothing, not even whether its code was right.
            self.metrics.rate_limited.inc(&[]);
            return Err(VerifyError::RateLimited);
        }
        let claim = CodeClaim {
            code_hash: self.pepper()?.hash(upload.verification_payload.trim()),
            upload_digest: upload_digest(&upload.keys),
        };
        match self.store.check_code(&claim, now).await {
            Ok(diagnosis) => Ok(Authorization {
                claim: Some(claim),
                report_type: diagnosis.report_type,
                symptom_onset_interval: diagnosis.symptom_onset_interval,
            }),
            Err(StoreError::Code(refused)) => {
                self.wrong(client, window_start).await?;
                Err(refused.into())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Whose checks are running: one at a time per client. A client's entry goes when its last
/// check ends, so that honest clients take no memory.
#[derive(Default)]
struct Turns(Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>);

/// A client's turn; the next check of the client waits until it is dropped.
struct Turn {
    turns: Arc<Turns>,
    client: String,
    held: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Turns {
    async fn take(self: &Arc<Self>, client: &str) -> Turn {
        let lock = self
            .0
            .lock()
            .expect("no panic while taking turns")
            .entry(client.to_string())
            .or_default()
            .clone();
        Turn {
            held: Some(lock.lock_owned().await),
            turns: self.clone(),
            client: client.to_string(),
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let mut turns = self.turns.0.lock().expect("no panic while taking turns");
        self.held = None;
        // Nobody else holds or waits for the lock: the entry may go.
        if turns
            .get(&self.client)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            turns.remove(&self.client);
        }
    }
}

/// Wrong codes from all clients in the newest window.
#[derive(Default)]
struct WrongInWindow(Mutex<(UnixSeconds, u64)>);

impl WrongInWindow {
    /// Counts one in the window starting at `window_start`; returns the window's count.
    fn count(&self, window_start: UnixSeconds) -> u64 {
        let mut window = self.0.lock().expect("no panic while counting");
        if window_start > window.0 {
            *window = (window_start, 0);
        }
        window.1 += 1;
        window.1
    }
}

fn random_code() -> String {
    let rng = SystemRandom::new();
    let mut bytes = [0u8; CODE_DIGITS];
    // Rejection sampling keeps every digit uniform.
    let mut code = String::with_capacity(CODE_DIGITS);
    while code.len() < CODE_DIGITS {
        rng.fill(&mut bytes)
            .expect("the system random source works");
        code.extend(
            bytes
                .iter()
                .filter(|b| **b < 250)
                .map(|b| char::from(b'0' + b % 10)),
        );
    }
    code.truncate(CODE_DIGITS);
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_ten_uniform_digits() {
        let codes: Vec<String> = (0..200).map(|_| random_code()).collect();
        assert!(
            codes
                .iter()
                .all(|c| c.len() == CODE_DIGITS && c.bytes().all(|b| b.is_ascii_digit()))
        );
        let distinct: std::collections::HashSet<_> = codes.iter().collect();
        assert_eq!(distinct.len(), codes.len());
    }
}
