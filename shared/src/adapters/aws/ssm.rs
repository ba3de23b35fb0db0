//! The region's secrets from SSM Parameter Store, each a SecureString that only the functions
//! needing it may read:
//!
//! - the export signing keys: one parameter per key version under a path, `<path>/v1`,
//!   `<path>/v2`, ..., each holding a PKCS#8 ECDSA P-256 private key PEM. The highest version
//!   signs first; older versions keep signing alongside it (at most ten) until their parameters
//!   are deleted, which is how keys rotate ([`load_signer`]);
//! - single secrets such as the code pepper ([`load_parameter`]).
//!
//! Also [`NoSigningKeys`], the signer of functions that never sign (codes, feed gateway,
//! consumer), so that they need no access to the keys at all.

use aws_sdk_ssm::Client;
use aws_sdk_ssm::error::DisplayErrorContext;

use crate::adapters::ecdsa::EcdsaSigner;
use crate::domain::signature::{
    KeyError, MAX_SIGNING_KEYS, SignatureInfo, SigningError, VerificationKey,
};
use crate::ports::Signer;

#[derive(Debug, thiserror::Error)]
pub enum SigningKeysError {
    #[error("cannot read the signing keys under {path}: {reason}")]
    Read { path: String, reason: String },
    #[error(
        "no signing key under {path}: create the SecureString parameter {path}/v1 holding a \
         PKCS#8 P-256 private key PEM (see docs/deploy.md)"
    )]
    Missing { path: String },
    #[error(transparent)]
    Key(#[from] KeyError),
}

/// Why a single secret could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read the SSM parameter {name}: {reason}")]
pub struct ParameterError {
    pub name: String,
    pub reason: String,
}

/// The value of the (SecureString) parameter `name`, decrypted.
pub async fn load_parameter(ssm: &Client, name: &str) -> Result<String, ParameterError> {
    let error = |reason: String| ParameterError {
        name: name.to_string(),
        reason,
    };
    let out = ssm
        .get_parameter()
        .name(name)
        .with_decryption(true)
        .send()
        .await
        .map_err(|e| error(DisplayErrorContext(e).to_string()))?;
    out.parameter
        .and_then(|p| p.value)
        .ok_or_else(|| error("it has no value".into()))
}

/// The version number of a parameter named `<path>/v<N>`.
fn version_of(name: &str) -> Option<u32> {
    let version: u32 = name.rsplit('/').next()?.strip_prefix('v')?.parse().ok()?;
    (version > 0 && name.ends_with(&format!("/v{version}"))).then_some(version)
}

/// Loads every key version under `path` (decrypted), newest first, as a signer that names
/// `key_id` in its signatures.
pub async fn load_signer(
    ssm: &Client,
    path: &str,
    key_id: &str,
) -> Result<EcdsaSigner, SigningKeysError> {
    let path = path.trim_end_matches('/');
    let read_error = |reason: String| SigningKeysError::Read {
        path: path.to_string(),
        reason,
    };
    let mut versions = Vec::new();
    let mut pages = ssm
        .get_parameters_by_path()
        .path(path)
        .recursive(false)
        .with_decryption(true)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| read_error(DisplayErrorContext(e).to_string()))?;
        for parameter in page.parameters() {
            let (Some(name), Some(value)) = (parameter.name(), parameter.value()) else {
                continue;
            };
            if let Some(version) = version_of(name) {
                versions.push((version, value.to_string()));
            }
        }
    }
    if versions.is_empty() {
        return Err(SigningKeysError::Missing {
            path: path.to_string(),
        });
    }
    versions.sort_unstable_by_key(|(version, _)| std::cmp::Reverse(*version));
    versions.truncate(MAX_SIGNING_KEYS);
    let pems: Vec<(String, String)> = versions
        .into_iter()
        .map(|(version, pem)| (format!("v{version}"), pem))
        .collect();
    Ok(EcdsaSigner::from_pems(key_id, &pems)?)
}

/// The signer of a function that is deployed without access to the signing keys: it names no
/// key and refuses to sign.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoSigningKeys;

#[async_trait::async_trait]
impl Signer for NoSigningKeys {
    fn signature_infos(&self) -> Vec<SignatureInfo> {
        Vec::new()
    }

    async fn sign(&self, _message: &[u8]) -> Result<Vec<Vec<u8>>, SigningError> {
        Err(SigningError::KeyFailed(SignatureInfo::ecdsa_p256(
            "none",
            "this function has no signing keys",
        )))
    }

    fn verification_keys(&self) -> Vec<VerificationKey> {
        Vec::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameter_names_give_versions() {
        assert_eq!(version_of("/enfeed/CH/signing-keys/v2"), Some(2));
        assert_eq!(version_of("/enfeed/CH/signing-keys/v12"), Some(12));
        for bad in ["/p/v0", "/p/v01", "/p/x1", "/p/v"] {
            assert_eq!(version_of(bad), None, "{bad}");
        }
    }
}
