//! Taking an upload (`POST /v1/publish`): the request parsed and checked against every upload
//! rule, its authorisation verified, and its keys stored as local keys together with the
//! consumption of its one-time code, all or nothing. Keys that break a rule of their own are
//! left out and named in the answer (`partial_failure`), as the reference server does.
//!
//! Every success answers a *revision token* (see [`crate::domain::revision`]): an upload that
//! carries it may send covered keys again with a new report type (likely to confirmed, or to
//! negative), once per key; those are stored as revisions and published in the next files'
//! `revised_keys`. Keys a token does not cover are new keys, whatever the token says.
//!
//! Apps send chaff (requests marked `X-Chaff`) so that an observer cannot tell who uploads:
//! a chaff request stores nothing and counts against nothing, and its answer is shaped like a
//! recent real success and comes after about as long. Every answer is padded to a random
//! size, so sizes tell outcomes apart no better than timing does.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use rand_chacha::ChaCha12Rng;
use rand_core::{RngCore as _, SeedableRng as _};
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

use crate::domain::config::Config;
use crate::domain::key::ReportType;
use crate::domain::metrics::Metrics;
use crate::domain::retention;
use crate::domain::revision::{
    RevisableKey, RevisionError, RevisionKey, RevisionToken, Transition, transition,
};
use crate::domain::upload::{PublishRequest, UploadError, publish_at};
use crate::ports::{
    Clock, CodeRefused, IfRevised, Inserted, KeyStore, NewKeys, StoreError, StoredKey, UnixSeconds,
    UploadVerifier, VerifyError,
};

/// The answer to a successful upload.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PublishResponse {
    pub inserted_exposures: u32,
    /// [`PARTIAL_FAILURE`] when keys were left out; absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<&'static str>,
    /// Each key left out, and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Lets the device revise the keys of this upload (and those its earlier token covered);
    /// absent where the region keeps no secret to seal tokens with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision_token: Option<String>,
}

/// The code of a success that left keys out.
pub const PARTIAL_FAILURE: &str = "partial_failure";

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Invalid(#[from] UploadError),
    #[error(transparent)]
    Unauthorized(#[from] VerifyError),
    #[error(transparent)]
    Revision(#[from] RevisionError),
    #[error(transparent)]
    Store(StoreError),
}

impl PublishError {
    /// A short, stable, machine-readable name for the error, as answers carry it.
    pub fn code(&self) -> &'static str {
        match self {
            PublishError::Invalid(invalid) => invalid.code(),
            PublishError::Unauthorized(VerifyError::RateLimited) => "rate_limited",
            PublishError::Unauthorized(VerifyError::Refused(refused)) => match refused {
                CodeRefused::Unknown => "code_unknown",
                CodeRefused::Expired => "code_expired",
                CodeRefused::Used => "code_used",
            },
            PublishError::Unauthorized(VerifyError::Certificate(refused)) => refused.code(),
            PublishError::Revision(refused) => refused.code(),
            PublishError::Unauthorized(VerifyError::Store(_)) | PublishError::Store(_) => {
                "internal"
            }
        }
    }
}

impl From<StoreError> for PublishError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Code(refused) => PublishError::Unauthorized(refused.into()),
            StoreError::AlreadyRevised(key) => RevisionError::AlreadyRevised(key).into(),
            other => PublishError::Store(other),
        }
    }
}

/// How real uploads went lately: what chaff imitates.
#[derive(Debug, Default)]
pub struct RecentUploads(Mutex<VecDeque<(Duration, u32)>>);

impl RecentUploads {
    /// How many recent successes are remembered.
    const KEEP: usize = 100;

    fn record(&self, took: Duration, inserted: u32) {
        let mut recent = self.0.lock().expect("no panic while recording");
        if recent.len() == Self::KEEP {
            recent.pop_front();
        }
        recent.push_back((took, inserted));
    }

    /// The average time real uploads took, and the keys one of them (picked at random)
    /// inserted; before the first real upload, no time and a fortnight of keys.
    fn imitation(&self) -> (Duration, u32) {
        let recent = self.0.lock().expect("no panic while recording");
        if recent.is_empty() {
            return (Duration::ZERO, 14);
        }
        let total: Duration = recent.iter().map(|(took, _)| *took).sum();
        let mut pick = [0u8; 1];
        SystemRandom::new()
            .fill(&mut pick)
            .expect("the system random source works");
        let (_, inserted) = recent[usize::from(pick[0]) % recent.len()];
        (total / recent.len() as u32, inserted)
    }
}

/// Smallest size, in bytes, an answer is padded to; the size is uniform up to twice this.
pub const PADDED_SIZE: usize = 3072;

/// `answer` (a JSON object) as the bytes of its JSON with a random `padding` added: base64 of
/// random bytes, so long that the whole answer is a random size between [`PADDED_SIZE`] and
/// twice that, whatever it says. The padding is random so that compressing the answer on its
/// way (`Content-Encoding`) would not give its size away.
pub fn padded_answer(answer: &impl Serialize) -> Vec<u8> {
    const FIELD: &[u8] = b"\"padding\":\"";
    let mut json = serde_json::to_vec(answer).expect("an answer serializes");
    debug_assert_eq!(json.last(), Some(&b'}'), "an answer is a JSON object");
    json.pop();
    if json.len() > 1 {
        json.push(b',');
    }
    PADDING_RANDOM.with_borrow_mut(|random| {
        let target = PADDED_SIZE + random.next_u32() as usize % PADDED_SIZE;
        // Base64 comes in fours, rounded up so that the answer never ends below the target.
        let unpadded = json.len() + FIELD.len() + 2;
        let chars = target.saturating_sub(unpadded).max(16).div_ceil(4) * 4;
        let mut bytes = vec![0u8; chars / 4 * 3];
        random.fill_bytes(&mut bytes);
        json.extend_from_slice(FIELD);
        let start = json.len();
        json.resize(start + chars, 0);
        BASE64
            .encode_slice(&bytes, &mut json[start..])
            .expect("room for the padding's base64");
    });
    json.extend_from_slice(b"\"}");
    json
}

thread_local! {
    /// The random source of padding, seeded from the system's: a system call per answer for a
    /// few kilobytes of random bytes was a measurable share of an upload's time.
    static PADDING_RANDOM: RefCell<ChaCha12Rng> = RefCell::new({
        let mut seed = [0u8; 32];
        SystemRandom::new()
            .fill(&mut seed)
            .expect("the system random source works");
        ChaCha12Rng::from_seed(seed)
    });
}

/// Takes uploads into the key store.
#[derive(Clone)]
pub struct Publisher {
    config: Config,
    keys: Arc<dyn KeyStore>,
    /// Seals and opens revision tokens; none where the region keeps no secret.
    revision_key: Option<Arc<RevisionKey>>,
    verifier: Arc<dyn UploadVerifier>,
    clock: Arc<dyn Clock>,
    metrics: Arc<Metrics>,
    recent: Arc<RecentUploads>,
}

impl Publisher {
    pub fn new(
        config: Config,
        keys: Arc<dyn KeyStore>,
        revision_key: Option<Arc<RevisionKey>>,
        verifier: Arc<dyn UploadVerifier>,
        clock: Arc<dyn Clock>,
        metrics: Arc<Metrics>,
        recent: Arc<RecentUploads>,
    ) -> Self {
        Self {
            config,
            keys,
            revision_key,
            verifier,
            clock,
            metrics,
            recent,
        }
    }

    /// Answers a chaff request: after about as long as real uploads take, an answer shaped
    /// like one of theirs. Nothing is read from the request, stored or counted against a limit.
    pub async fn chaff(&self, since: Instant) -> PublishResponse {
        let (took, inserted) = self.recent.imitation();
        tokio::time::sleep(took.saturating_sub(since.elapsed())).await;
        self.metrics.uploads.inc(&["chaff"]);
        PublishResponse {
            inserted_exposures: inserted,
            code: None,
            error: None,
            // As long as any real token: tokens are padded to the same size.
            revision_token: self.seal(&RevisionToken::default()),
        }
    }

    fn seal(&self, token: &RevisionToken) -> Option<String> {
        let key = self.revision_key.as_ref()?;
        Some(token.seal(key, self.config.region))
    }

    /// The token an upload carries, opened; [`RevisionError::InvalidToken`] if it is forged,
    /// altered, from another region, or every key it covers has expired.
    fn open(&self, token: &str, now: UnixSeconds) -> Result<RevisionToken, RevisionError> {
        let key = self
            .revision_key
            .as_ref()
            .ok_or(RevisionError::InvalidToken)?;
        RevisionToken::open(token, key, self.config.region, now)
    }

    /// Takes an upload: parses, validates, verifies, and stores it, all or nothing. `client`
    /// identifies the caller for rate limiting.
    pub async fn publish(
        &self,
        body: &[u8],
        client: &str,
    ) -> Result<PublishResponse, PublishError> {
        let started = Instant::now();
        let outcome = self.store_upload(body, client).await;
        match &outcome {
            Ok(answer) => {
                self.metrics
                    .uploads
                    .inc(&[answer.code.unwrap_or("accepted")]);
                if answer.code.is_none() {
                    self.metrics.history.upload_accepted(self.clock.now());
                }
                self.recent
                    .record(started.elapsed(), answer.inserted_exposures);
            }
            Err(e) => {
                self.metrics.uploads.inc(&[e.code()]);
                if matches!(
                    e,
                    PublishError::Store(_) | PublishError::Unauthorized(VerifyError::Store(_))
                ) {
                    self.metrics.storage_errors.inc(&["keys"]);
                }
            }
        }
        outcome
    }

    async fn store_upload(
        &self,
        body: &[u8],
        client: &str,
    ) -> Result<PublishResponse, PublishError> {
        let now = self.clock.now();
        let mut upload = PublishRequest::from_json(body)?.validate(&self.config, now)?;
        // Checked before the authorisation: a bad token costs no code.
        let mut token = match upload.revision_token.as_deref() {
            Some(sealed) => self.open(sealed, now)?,
            None => RevisionToken::default(),
        };
        if upload.revision_token.is_some() && !upload.keys.iter().any(|k| token.entry(k).is_some())
        {
            // A token for other keys.
            return Err(RevisionError::InvalidToken.into());
        }
        let authorization = self.verifier.verify(&upload, client, now).await?;
        upload.certify(
            authorization.report_type,
            authorization.symptom_onset_interval,
        );
        if let Some(report_type) = authorization.report_type {
            upload.derive_transmission_risk(report_type);
        }
        let dropped = std::mem::take(&mut upload.dropped);
        let retention = self.config.retention();
        let (mut keys, mut revisions, mut covered) = (Vec::new(), Vec::new(), Vec::new());
        for key in upload.keys {
            let mut expires_at = retention::local_expiry(now, retention);
            let revise = match token.entry(&key) {
                Some(entry) => {
                    expires_at = entry.expires_at;
                    transition(entry.report_type, key.report_type)? == Transition::Revise
                }
                None => false,
            };
            // A negative test publishes nothing new; it can only revise.
            if !revise && authorization.report_type == Some(ReportType::Revoked) {
                continue;
            }
            covered.push(RevisableKey::of(&key, expires_at));
            let publish_at = publish_at(&key, now, self.config.embargo);
            let stored = StoredKey::local(key, upload.regions.clone(), publish_at, now, retention);
            match revise {
                true => revisions.push(stored.as_revision()),
                false => keys.push(stored),
            }
        }
        let inserted = self
            .keys
            .insert(NewKeys {
                keys,
                revisions,
                if_revised: IfRevised::Refuse,
                claim: authorization.claim,
                now,
            })
            .await?;
        let (Inserted::Stored(n) | Inserted::Replayed(n)) = inserted;
        if let Inserted::Stored(new) = inserted {
            self.metrics.keys_stored.add(&["local"], f64::from(new));
        }
        tracing::debug!(
            inserted = n,
            dropped = dropped.len(),
            replay = matches!(inserted, Inserted::Replayed(_)),
            revision = upload.revision_token.is_some(),
            "upload stored"
        );
        token.cover(covered);
        let partial = !dropped.is_empty();
        Ok(PublishResponse {
            inserted_exposures: n,
            code: partial.then_some(PARTIAL_FAILURE),
            error: partial.then(|| {
                let reasons: Vec<String> = dropped.iter().map(|e| e.to_string()).collect();
                format!("keys left out: {}", reasons.join("; "))
            }),
            revision_token: self.seal(&token),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chaff_imitates_the_average_time_and_a_real_shape() {
        let recent = RecentUploads::default();
        assert_eq!(recent.imitation(), (Duration::ZERO, 14));
        for (millis, inserted) in [(10, 3), (30, 3)] {
            recent.record(Duration::from_millis(millis), inserted);
        }
        assert_eq!(recent.imitation(), (Duration::from_millis(20), 3));
        for _ in 0..RecentUploads::KEEP {
            recent.record(Duration::from_millis(50), 5);
        }
        assert_eq!(
            recent.imitation(),
            (Duration::from_millis(50), 5),
            "the oldest are forgotten"
        );
    }

    #[test]
    fn answers_are_padded_to_a_random_size_whatever_they_say() {
        let mut sizes = Vec::new();
        for answer in [json_answer(""), json_answer(&"x".repeat(2000))] {
            for _ in 0..20 {
                let padded = padded_answer(&answer);
                let size = padded.len();
                assert!((PADDED_SIZE..2 * PADDED_SIZE + 4).contains(&size), "{size}");
                let read: serde_json::Value = serde_json::from_slice(&padded).unwrap();
                assert_eq!(read["error"], answer["error"], "the answer is kept");
                assert!(BASE64.decode(read["padding"].as_str().unwrap()).is_ok());
                sizes.push(size);
            }
        }
        sizes.sort_unstable();
        sizes.dedup();
        assert!(sizes.len() > 20, "sizes vary: {sizes:?}");
    }

    fn json_answer(error: &str) -> serde_json::Value {
        serde_json::json!({"insertedExposures": 1, "error": error})
    }
}
