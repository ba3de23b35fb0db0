//! Revision tokens: what lets a device revise the keys it uploaded earlier (a likely diagnosis
//! that turned out confirmed, or negative) with no lookup of the token on the server. A token
//! lists the keys it covers, each with the report type it was stored with and when it expires;
//! it is sealed with AES-256-GCM under a key only the region has, so a phone can neither read
//! it nor forge or alter one. It is padded to a fixed number of entries, so its size does not
//! tell how many keys a person uploaded.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::key::{DiagnosisKey, KEY_LEN, RegionId, ReportType, UnixSeconds};

/// Entries every token has at least (padding), as many as the reference server's.
pub const MIN_ENTRIES: usize = 28;
/// Most entries a token keeps: the newest, when revisions pile up.
pub const MAX_ENTRIES: usize = 120;

/// Bytes of one entry: key data, rolling start, rolling period, report type, expiry.
const ENTRY_LEN: usize = KEY_LEN + 4 + 4 + 1 + 8;
/// The format's version, the first byte of every sealed token's plaintext.
const VERSION: u8 = 1;

/// The region's key for sealing revision tokens.
pub struct RevisionKey(LessSafeKey);

impl RevisionKey {
    /// The key from 32 secret bytes (derived from the code pepper, see
    /// [`crate::domain::secret::Pepper::derive`]).
    pub fn new(secret: [u8; 32]) -> Self {
        Self(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &secret).expect("32 bytes make an AES-256 key"),
        ))
    }
}

/// A key a token lets its holder revise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RevisableKey {
    pub key_data: [u8; KEY_LEN],
    pub rolling_start: u32,
    pub rolling_period: u32,
    /// The report type the key was stored (or last revised) with.
    pub report_type: ReportType,
    /// When the stored key expires (SP3); the entry lapses then.
    pub expires_at: UnixSeconds,
}

impl RevisableKey {
    /// The entry of `key` as stored until `expires_at`.
    pub fn of(key: &DiagnosisKey, expires_at: UnixSeconds) -> Self {
        Self {
            key_data: key.key_data,
            rolling_start: key.rolling_start,
            rolling_period: key.rolling_period,
            report_type: key.report_type,
            expires_at,
        }
    }

    /// Whether this entry is about `key`: the same key data and validity.
    pub fn covers(&self, key: &DiagnosisKey) -> bool {
        self.key_data == key.key_data
            && self.rolling_start == key.rolling_start
            && self.rolling_period == key.rolling_period
    }
}

/// The keys one device may revise.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RevisionToken {
    pub keys: Vec<RevisableKey>,
}

/// Why a revision is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevisionError {
    #[error("the revision token is not valid: not issued by this region, altered, or expired")]
    InvalidToken,
    #[error("key {0} was revised before; a key is revised once")]
    AlreadyRevised(String),
    #[error("a key stored as {from:?} cannot become {to:?}")]
    Transition { from: ReportType, to: ReportType },
}

impl RevisionError {
    /// A short, stable, machine-readable name for the error (the reference server's).
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidToken => "invalid_revision_token",
            Self::AlreadyRevised(_) => "key_already_revised",
            Self::Transition { .. } => "invalid_report_type_transition",
        }
    }
}

/// What re-uploading a key with a new report type does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transition {
    /// The same report type: nothing to do.
    Unchanged,
    /// A likely (or unknown) diagnosis becomes confirmed, or is revoked by a negative test.
    Revise,
}

/// The report type changes a revision may make: likely (or unknown) to confirmed or to
/// negative (revoked). A confirmed diagnosis is never taken back to likely.
pub fn transition(from: ReportType, to: ReportType) -> Result<Transition, RevisionError> {
    use ReportType::{ConfirmedClinicalDiagnosis, ConfirmedTest, Revoked, Unknown};
    match (from, to) {
        _ if from == to => Ok(Transition::Unchanged),
        (ConfirmedClinicalDiagnosis | Unknown, ConfirmedTest | Revoked) => Ok(Transition::Revise),
        _ => Err(RevisionError::Transition { from, to }),
    }
}

impl RevisionToken {
    /// The entry about `key`, if the token covers it.
    pub fn entry(&self, key: &DiagnosisKey) -> Option<&RevisableKey> {
        self.keys.iter().find(|entry| entry.covers(key))
    }

    /// Adds or updates the entry of each key (newest last), keeping at most [`MAX_ENTRIES`].
    pub fn cover(&mut self, keys: impl IntoIterator<Item = RevisableKey>) {
        for key in keys {
            self.keys.retain(|entry| entry.key_data != key.key_data);
            self.keys.push(key);
        }
        let excess = self.keys.len().saturating_sub(MAX_ENTRIES);
        self.keys.drain(..excess);
    }

    /// The token as the device keeps it: base64 of a random nonce and the sealed entries, bound
    /// to `region`.
    pub fn seal(&self, key: &RevisionKey, region: RegionId) -> String {
        let entries = self.keys.len().max(MIN_ENTRIES);
        let mut plaintext = Vec::with_capacity(1 + entries * ENTRY_LEN + 16);
        plaintext.push(VERSION);
        for entry in &self.keys {
            plaintext.extend_from_slice(&entry.key_data);
            plaintext.extend_from_slice(&entry.rolling_start.to_be_bytes());
            plaintext.extend_from_slice(&entry.rolling_period.to_be_bytes());
            plaintext.push(entry.report_type as u8);
            plaintext.extend_from_slice(&entry.expires_at.to_be_bytes());
        }
        // Padding entries are all zeros: an expiry of 0 has always lapsed.
        plaintext.resize(1 + entries * ENTRY_LEN, 0);
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .expect("the system random source works");
        key.0
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                aad(region),
                &mut plaintext,
            )
            .expect("a token fits AES-GCM's limits");
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(&plaintext);
        BASE64.encode(sealed)
    }

    /// Opens a token that this region sealed, keeping the entries that have not lapsed at
    /// `now`. A token that does not open, or whose every entry lapsed, is invalid.
    pub fn open(
        token: &str,
        key: &RevisionKey,
        region: RegionId,
        now: UnixSeconds,
    ) -> Result<Self, RevisionError> {
        let invalid = || RevisionError::InvalidToken;
        let mut sealed = BASE64.decode(token.trim()).map_err(|_| invalid())?;
        if sealed.len() < NONCE_LEN {
            return Err(invalid());
        }
        let mut ciphertext = sealed.split_off(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(&sealed).map_err(|_| invalid())?;
        let plaintext = key
            .0
            .open_in_place(nonce, aad(region), &mut ciphertext)
            .map_err(|_| invalid())?;
        let (&version, entries) = plaintext.split_first().ok_or_else(invalid)?;
        if version != VERSION || !entries.len().is_multiple_of(ENTRY_LEN) {
            return Err(invalid());
        }
        let keys: Vec<RevisableKey> = entries
            .chunks_exact(ENTRY_LEN)
            .map(|entry| {
                let (key_data, rest) = entry.split_at(KEY_LEN);
                let (start, rest) = rest.split_at(4);
                let (period, rest) = rest.split_at(4);
                let (report_type, expires_at) = rest.split_at(1);
                RevisableKey {
                    key_data: key_data.try_into().expect("16 bytes"),
                    rolling_start: u32::from_be_bytes(start.try_into().expect("4 bytes")),
                    rolling_period: u32::from_be_bytes(period.try_into().expect("4 bytes")),
                    report_type: ReportType::from_i32(i32::from(report_type[0])),
                    expires_at: u64::from_be_bytes(expires_at.try_into().expect("8 bytes")),
                }
            })
            .filter(|entry| entry.expires_at > now)
            .collect();
        if keys.is_empty() {
            return Err(invalid());
        }
        Ok(Self { keys })
    }
}

/// What a token is bound to besides its content: the format and the region that sealed it.
fn aad(region: RegionId) -> Aad<Vec<u8>> {
    Aad::from(format!("enfeed revision token v{VERSION} {region}").into_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: UnixSeconds = 1_700_000_000;

    fn entry(byte: u8, report_type: ReportType) -> RevisableKey {
        RevisableKey {
            key_data: [byte; KEY_LEN],
            rolling_start: 2_833_200 + u32::from(byte) * 144,
            rolling_period: 144,
            report_type,
            expires_at: NOW + 86_400,
        }
    }

    fn region(id: &str) -> RegionId {
        id.parse().unwrap()
    }

    #[test]
    fn a_token_opens_only_where_it_was_sealed_and_only_unaltered() {
        let key = RevisionKey::new([7; 32]);
        let mut token = RevisionToken::default();
        token.cover([
            entry(1, ReportType::ConfirmedClinicalDiagnosis),
            entry(2, ReportType::ConfirmedTest),
        ]);
        let sealed = token.seal(&key, region("CH"));
        assert_eq!(
            RevisionToken::open(&sealed, &key, region("CH"), NOW),
            Ok(token.clone())
        );
        // Two seals of the same keys differ, and are as long as any other token.
        let again = token.seal(&key, region("CH"));
        assert_ne!(sealed, again);
        assert_eq!(sealed.len(), again.len());
        assert_eq!(
            RevisionToken::default().seal(&key, region("CH")).len(),
            sealed.len()
        );

        let invalid = Err(RevisionError::InvalidToken);
        assert_eq!(
            RevisionToken::open(&sealed, &key, region("DE"), NOW),
            invalid
        );
        assert_eq!(
            RevisionToken::open(&sealed, &RevisionKey::new([8; 32]), region("CH"), NOW),
            invalid
        );
        let mut altered = BASE64.decode(&sealed).unwrap();
        altered[20] ^= 1;
        assert_eq!(
            RevisionToken::open(&BASE64.encode(altered), &key, region("CH"), NOW),
            invalid
        );
        assert_eq!(
            RevisionToken::open("not a token", &key, region("CH"), NOW),
            invalid
        );
        // Once every key it covers expired, the token is worth nothing.
        assert_eq!(
            RevisionToken::open(&sealed, &key, region("CH"), NOW + 86_400),
            invalid
        );
    }

    #[test]
    fn likely_becomes_confirmed_or_negative_and_confirmed_stays() {
        use ReportType::*;
        assert_eq!(
            transition(ConfirmedClinicalDiagnosis, ConfirmedTest),
            Ok(Transition::Revise)
        );
        assert_eq!(
            transition(ConfirmedClinicalDiagnosis, Revoked),
            Ok(Transition::Revise)
        );
        assert_eq!(
            transition(ConfirmedTest, ConfirmedTest),
            Ok(Transition::Unchanged)
        );
        assert_eq!(
            transition(ConfirmedTest, ConfirmedClinicalDiagnosis)
                .unwrap_err()
                .code(),
            "invalid_report_type_transition"
        );
        assert!(transition(Revoked, ConfirmedTest).is_err());
    }

    #[test]
    fn covering_again_updates_an_entry_and_keeps_the_newest() {
        let mut token = RevisionToken::default();
        token.cover([entry(1, ReportType::ConfirmedClinicalDiagnosis)]);
        token.cover([entry(1, ReportType::ConfirmedTest)]);
        assert_eq!(token.keys, vec![entry(1, ReportType::ConfirmedTest)]);
        token.cover((0..=MAX_ENTRIES as u8).map(|b| entry(b, ReportType::ConfirmedTest)));
        assert_eq!(token.keys.len(), MAX_ENTRIES);
        assert_eq!(token.keys[0].key_data, [1; KEY_LEN]);
    }
}
