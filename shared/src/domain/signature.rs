//! The identities and public keys of export signing: [`SignatureInfo`] (how an export file
//! names a signing key) and [`VerificationKey`] (an ECDSA P-256 public key that checks export
//! signatures), with their PEM forms.

use std::fmt;
use std::io;

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use ring::error::KeyRejected;

use crate::domain::digest::sha256;

/// Algorithm OID string used in SignatureInfo for ECDSA P-256 SHA-256.
pub const ECDSA_P256_SHA256_OID: &str = "1.2.840.10045.4.3.2";

/// Most signing keys one export file may name (GAEN).
pub const MAX_SIGNING_KEYS: usize = 10;

pub(crate) const PUBLIC_KEY_PEM_LABEL: &str = "PUBLIC KEY";
pub(crate) const PRIVATE_KEY_PEM_LABEL: &str = "PRIVATE KEY";

/// DER of a P-256 SubjectPublicKeyInfo up to its point:
/// `SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING }`. DER is canonical, so every
/// P-256 public key with an uncompressed point is exactly these 26 bytes followed by the point;
/// any other key type, curve or point encoding differs from them.
#[rustfmt::skip]
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, // SEQUENCE, 89 bytes
    0x30, 0x13, // SEQUENCE, 19 bytes: AlgorithmIdentifier
    0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, // OID 1.2.840.10045.2.1 id-ecPublicKey
    0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, // OID 1.2.840.10045.3.1.7 prime256v1
    0x03, 0x42, 0x00, // BIT STRING, 66 bytes, no unused bits
];
/// An uncompressed SEC1 point: `04 ‖ x ‖ y`.
const UNCOMPRESSED_POINT_TAG: u8 = 0x04;
const UNCOMPRESSED_POINT_LEN: usize = 65;

/// The identity of a signing key, as export files name it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatureInfo {
    pub key_version: String,
    pub key_id: String,
    pub algorithm: String,
}

impl SignatureInfo {
    /// The info of an ECDSA P-256 SHA-256 key, the only algorithm GAEN uses.
    pub fn ecdsa_p256(key_id: &str, key_version: &str) -> Self {
        Self {
            key_version: key_version.to_owned(),
            key_id: key_id.to_owned(),
            algorithm: ECDSA_P256_SHA256_OID.to_owned(),
        }
    }
}

impl fmt::Display for SignatureInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "key {:?} version {:?}", self.key_id, self.key_version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot access {path}: {source}")]
    Io { path: String, source: io::Error },
    #[error("{key} is not valid PEM: {source}")]
    Pem { key: String, source: pem::PemError },
    #[error("{key} holds a PEM {found:?} block, expected {expected:?}")]
    WrongPemLabel {
        key: String,
        found: String,
        expected: &'static str,
    },
    #[error(
        "{key} is not a PKCS#8 ECDSA P-256 private key that includes its public key ({reason}); \
         generate one with `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`"
    )]
    NotP256PrivateKey { key: String, reason: KeyRejected },
    #[error(
        "{key} is not an ECDSA P-256 public key (expected a SubjectPublicKeyInfo with \
         id-ecPublicKey, curve prime256v1 and an uncompressed point)"
    )]
    NotP256PublicKey { key: String },
    #[error("cannot generate an ECDSA P-256 key")]
    Generate,
    #[error("{count} signing keys given, expected 1 to {MAX_SIGNING_KEYS}")]
    KeyCount { count: usize },
}

/// When a verification key may verify files: from `not_before` to `not_after` (Unix
/// seconds, both included), either end open when absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct KeyWindow {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
}

impl KeyWindow {
    /// Valid at every time.
    pub const ALWAYS: Self = Self {
        not_before: None,
        not_after: None,
    };

    pub fn contains(&self, now: u64) -> bool {
        self.not_before.is_none_or(|start| start <= now)
            && self.not_after.is_none_or(|end| now <= end)
    }
}

/// A public key that verifies exports: a P-256 point plus the identity of its signing key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerificationKey {
    pub info: SignatureInfo,
    /// Uncompressed SEC1 point.
    point: Vec<u8>,
}

impl VerificationKey {
    /// Reads a SubjectPublicKeyInfo PEM (`PUBLIC KEY`), such as Google's `public.pem`.
    pub fn from_pem(pem_text: &str, key_id: &str, key_version: &str) -> Result<Self, KeyError> {
        let info = SignatureInfo::ecdsa_p256(key_id, key_version);
        let der = pem_contents(pem_text, PUBLIC_KEY_PEM_LABEL, &info.to_string())?;
        let point = der
            .strip_prefix(&P256_SPKI_PREFIX)
            .filter(|point| {
                point.len() == UNCOMPRESSED_POINT_LEN && point[0] == UNCOMPRESSED_POINT_TAG
            })
            .ok_or_else(|| KeyError::NotP256PublicKey {
                key: info.to_string(),
            })?;
        Ok(Self {
            info,
            point: point.to_vec(),
        })
    }

    /// A key from its uncompressed P-256 point (65 bytes, starting with 4).
    pub fn from_point(point: &[u8], key_id: &str, key_version: &str) -> Result<Self, KeyError> {
        let info = SignatureInfo::ecdsa_p256(key_id, key_version);
        if point.len() != UNCOMPRESSED_POINT_LEN || point[0] != UNCOMPRESSED_POINT_TAG {
            return Err(KeyError::NotP256PublicKey {
                key: info.to_string(),
            });
        }
        Ok(Self {
            info,
            point: point.to_vec(),
        })
    }

    /// The uncompressed P-256 point (65 bytes).
    pub(crate) fn point(&self) -> &[u8] {
        &self.point
    }

    /// The key as SubjectPublicKeyInfo PEM; [`VerificationKey::from_pem`] reads it back.
    pub fn to_pem(&self) -> String {
        let der = [&P256_SPKI_PREFIX[..], &self.point].concat();
        encode_pem(PUBLIC_KEY_PEM_LABEL, der)
    }

    /// Whether `der_signature` is this key's ECDSA P-256 SHA-256 signature of `message`.
    pub fn verify(&self, message: &[u8], der_signature: &[u8]) -> bool {
        self.verify_digest(&sha256(&[message]), der_signature)
    }

    /// Whether `der_signature` is this key's ECDSA P-256 signature of the message whose
    /// SHA-256 is `digest`: how a file is verified while it is streamed, before it is kept.
    pub fn verify_digest(&self, digest: &[u8; 32], der_signature: &[u8]) -> bool {
        let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(&self.point) else {
            return false;
        };
        p256::ecdsa::Signature::from_der(der_signature)
            .is_ok_and(|signature| key.verify_prehash(digest, &signature).is_ok())
    }
}

/// The DER inside the single PEM block of `pem_text`, which must be labelled `expected`.
pub(crate) fn pem_contents(
    pem_text: &str,
    expected: &'static str,
    key: &str,
) -> Result<Vec<u8>, KeyError> {
    let block = pem::parse(pem_text).map_err(|source| KeyError::Pem {
        key: key.to_owned(),
        source,
    })?;
    if block.tag() != expected {
        return Err(KeyError::WrongPemLabel {
            key: key.to_owned(),
            found: block.tag().to_owned(),
            expected,
        });
    }
    Ok(block.into_contents())
}

pub(crate) fn encode_pem(label: &str, der: impl Into<Vec<u8>>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), config)
}

/// Why a signer could not sign.
#[derive(Debug, thiserror::Error)]
pub enum SigningError {
    #[error("signing with {0} failed")]
    KeyFailed(SignatureInfo),
}
