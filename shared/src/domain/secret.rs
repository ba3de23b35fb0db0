//! The region's secrets, as values: the pepper that one-time codes are hashed under (and that
//! other keys derive from), and the admin token with the rule it must meet. Where they are
//! kept is the adapters' business.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// Bytes of a pepper.
pub const PEPPER_LEN: usize = 32;
/// Fewest characters of an admin token.
pub const MIN_ADMIN_TOKEN_LEN: usize = 32;

/// The region's secret key for code hashes.
#[derive(Clone)]
pub struct Pepper(hmac::Key);

impl Pepper {
    /// A pepper of [`PEPPER_LEN`] bytes (or more).
    pub fn new(secret: &[u8]) -> Result<Self, PepperError> {
        if secret.len() < PEPPER_LEN {
            return Err(PepperError::TooShort(secret.len()));
        }
        Ok(Self(hmac::Key::new(hmac::HMAC_SHA256, secret)))
    }

    /// A pepper written in hexadecimal, as it is kept (surrounding white space is ignored).
    pub fn from_hex(text: &str) -> Result<Self, PepperError> {
        let text = text.trim();
        if !text.len().is_multiple_of(2) {
            return Err(PepperError::NotHex);
        }
        let bytes: Option<Vec<u8>> = (0..text.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
            .collect();
        Self::new(&bytes.ok_or(PepperError::NotHex)?)
    }

    /// What the store keeps of `code`: HMAC-SHA-256 of it under the pepper.
    pub fn hash(&self, code: &str) -> [u8; 32] {
        hmac::sign(&self.0, code.as_bytes())
            .as_ref()
            .try_into()
            .expect("HMAC-SHA-256 is 32 bytes")
    }
}

impl Pepper {
    /// A 32-byte key for `purpose`, derived from the pepper (HMAC-SHA-256 of a label no code
    /// can equal), so that one kept secret serves every keyed job of the region.
    pub fn derive(&self, purpose: &str) -> [u8; 32] {
        self.hash(&format!("enfeed key for {purpose}"))
    }
}

/// Why a pepper cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PepperError {
    #[error("the code pepper is {0} bytes; it needs {PEPPER_LEN}")]
    TooShort(usize),
    #[error("the code pepper is not hexadecimal")]
    NotHex,
}

/// A new random pepper, in hexadecimal.
pub fn new_pepper_hex() -> String {
    let mut pepper = [0u8; PEPPER_LEN];
    SystemRandom::new()
        .fill(&mut pepper)
        .expect("the system random source works");
    pepper.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random secret of 32 hexadecimal digits (for admin tokens).
pub fn random_token() -> String {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source works");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether a presented secret (a bearer token, an origin token) is the expected one. Digests
/// are compared, so the comparison's timing tells nothing about the secret; an empty expected
/// secret matches nothing.
pub fn same_secret(presented: &str, expected: &str) -> bool {
    let digest = |s: &str| crate::domain::digest::sha256(&[s.as_bytes()]);
    !expected.is_empty() && digest(presented) == digest(expected)
}

/// Why a token may not guard the admin routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "the admin token has {0} characters; it needs at least {MIN_ADMIN_TOKEN_LEN} (printable \
     ASCII, no spaces)"
)]
pub struct AdminTokenError(pub usize);

/// Checks an admin token: at least [`MIN_ADMIN_TOKEN_LEN`] printable ASCII characters.
pub fn check_admin_token(token: &str) -> Result<(), AdminTokenError> {
    let printable = token.bytes().all(|b| b.is_ascii_graphic());
    if token.len() < MIN_ADMIN_TOKEN_LEN || !printable {
        return Err(AdminTokenError(token.chars().count()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_tokens_are_long_and_printable_and_peppers_key_the_hash() {
        assert!(check_admin_token(&random_token()).is_ok());
        assert_eq!(check_admin_token("x"), Err(AdminTokenError(1)));
        assert!(check_admin_token(&format!("{} ", random_token())).is_err());
        let a = Pepper::from_hex(&new_pepper_hex()).unwrap();
        let b = Pepper::from_hex(&format!("{}\n", new_pepper_hex())).unwrap();
        assert_ne!(a.hash("0123456789"), b.hash("0123456789"));
        assert_eq!(a.hash("0123456789"), a.hash("0123456789"));
        assert_eq!(Pepper::new(&[0; 31]).err(), Some(PepperError::TooShort(31)));
        assert_eq!(Pepper::from_hex("0g").err(), Some(PepperError::NotHex));
        assert_eq!(Pepper::from_hex("abc").err(), Some(PepperError::NotHex));
    }
}
