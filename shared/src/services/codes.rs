//! One-time codes, the first [`UploadVerifier`]: issued by the health authority, each
//! authorises one upload. A code is single use (consumed in the transaction that stores the
//! keys), expires, is stored only as a hash, and wrong codes are rate limited per client with an
//! atomic counter, so parallel guesses cannot slip past the limit.

use std::sync::Arc;

use async_trait::async_trait;
use ring::rand::{SecureRandom, SystemRandom};

use crate::domain::digest::sha256;
use crate::domain::upload::{Upload, upload_digest};
use crate::ports::{
    Authorization, CodeClaim, CodeRecord, CodeStore, StoreError, UnixSeconds, UploadVerifier,
    VerifyError,
};

/// Digits in a one-time code.
pub const CODE_DIGITS: usize = 10;

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
    /// How long a code stays valid.
    pub lifetime: u64,
    /// Wrong codes a client may send per window before it is refused.
    pub max_wrong: u32,
    /// Length of the rate-limit window.
    pub window: u64,
}

impl OneTimeCodes {
    pub fn new(store: Arc<dyn CodeStore>, lifetime: u64) -> Self {
        Self {
            store,
            lifetime,
            max_wrong: 10,
            window: 3600,
        }
    }

    /// Issues a new random code valid for [`lifetime`](Self::lifetime) seconds.
    pub async fn issue(&self, now: UnixSeconds) -> Result<IssuedCode, StoreError> {
        let code = random_code();
        let expires_at = now + self.lifetime;
        self.store
            .add_code(CodeRecord {
                code_hash: hash_code(&code),
                issued_at: now,
                expires_at,
            })
            .await?;
        Ok(IssuedCode { code, expires_at })
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
        // Count first, check after: an attempt is counted before anyone learns its outcome.
        if self.store.count_attempt(client, window_start).await? > self.max_wrong {
            return Err(VerifyError::RateLimited);
        }
        let claim = CodeClaim {
            code_hash: hash_code(upload.verification_payload.trim()),
            upload_digest: upload_digest(&upload.keys),
        };
        self.store.check_code(&claim, now).await?;
        self.store.forgive_attempt(client, window_start).await?;
        Ok(Authorization {
            claim: Some(claim),
            ..Authorization::default()
        })
    }
}

/// SHA-256 of a code: what the store keeps instead of the code.
pub fn hash_code(code: &str) -> [u8; 32] {
    sha256(&[code.as_bytes()])
}

/// A random secret of 32 hexadecimal digits (for admin tokens).
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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
