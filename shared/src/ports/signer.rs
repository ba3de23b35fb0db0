//! The signer: the region's export signing keys, and how a signed export file is made with
//! them ([`write_export`]).

use std::borrow::Borrow;

use async_trait::async_trait;

use crate::domain::export::{
    ExportError, ExportHeader, encode_export_bin, encode_export_sig, zip_export,
};
use crate::domain::key::DiagnosisKey;
use crate::domain::signature::{SignatureInfo, SigningError, VerificationKey};

/// Signs export files with the region's keys. Async, so that an adapter may sign remotely (a
/// key management service).
#[async_trait]
pub trait Signer: Send + Sync {
    /// One entry per signing key, newest key first (at most
    /// [`MAX_SIGNING_KEYS`](crate::domain::signature::MAX_SIGNING_KEYS)).
    fn signature_infos(&self) -> Vec<SignatureInfo>;

    /// Signs `message` with every key, in the order of [`Signer::signature_infos`]; each
    /// signature is ASN.1 DER ECDSA P-256 over SHA-256(message).
    async fn sign(&self, message: &[u8]) -> Result<Vec<Vec<u8>>, SigningError>;

    /// The public keys that verify the signatures, in the same order.
    fn verification_keys(&self) -> Vec<VerificationKey>;
}

/// Writes a signed export zip of `keys` and `revised_keys`, given as keys or as references to
/// them. Keys are written in the order given (the caller sorts them).
///
/// Encodes export.bin with the signer's signature infos, signs all of it, encodes export.sig
/// (one signature per key, with the batch number and size), and zips both.
pub async fn write_export<K: Borrow<DiagnosisKey> + Sync>(
    header: &ExportHeader,
    keys: &[K],
    revised_keys: &[K],
    signer: &dyn Signer,
) -> Result<Vec<u8>, ExportError> {
    let signature_infos = signer.signature_infos();
    let export_bin = encode_export_bin(header, &signature_infos, keys, revised_keys)?;
    let signatures = signer.sign(&export_bin).await?;
    let export_sig = encode_export_sig(header, &signature_infos, signatures)?;
    zip_export(&export_bin, &export_sig)
}
