//! The GAEN export file: a zip holding `export.bin` (a 16-byte header, then the keys as a
//! `TemporaryExposureKeyExport` protobuf) and `export.sig` (a `TEKSignatureList` with one
//! signature of the whole export.bin per signing key). This module encodes exports (a
//! [`crate::ports::Signer`] signs them: [`crate::ports::write_export`]) and reads untrusted ones.
//!
//! An untrusted file is read in the order that keeps a hostile one cheap ([`OpenedExport`]):
//! export.sig is read (a few hundred bytes), export.bin is inflated through SHA-256 without
//! being kept, within [`ExportLimits`]; only once a signature verifies is export.bin inflated
//! again and decoded, key by key, up to a cap on keys. A key that cannot be read does not
//! refuse the file: it is listed in [`ExportFile::malformed`].

use std::borrow::Borrow;
use std::fmt;
use std::io::{self, Cursor, Read, Write};

use prost::Message;
use zip::result::ZipError;
use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, ZipArchive, ZipWriter};

use crate::domain::digest::sha256;
use crate::domain::key::{DiagnosisKey, INTERVALS_PER_DAY, KEY_LEN, ReportType};
use crate::domain::signature::{SignatureInfo, SigningError, VerificationKey};

pub const EXPORT_HEADER: &[u8; 16] = b"EK Export v1    ";
pub const MAX_KEYS_PER_FILE: usize = 500_000;

const EXPORT_BIN: &str = "export.bin";
const EXPORT_SIG: &str = "export.sig";

/// Deflate's default level 6. Half of export.bin is random key bytes that no level compresses,
/// but the per-key metadata does: measured on 500,000 keys (17 MB), level 1 takes 0.15 s for
/// an 11.6 MB zip, level 6 0.4 s for 9.4 MB. Every phone downloads every file, so the 19 %
/// fewer bytes are worth the quarter second of data-prep.
const DEFLATE_LEVEL: i64 = 6;

/// Field key of `TemporaryExposureKeyExport.keys` (field 7, wire type 2: length-delimited).
/// Keys are appended one by one behind the rest of the message instead of being collected into
/// it; a test checks that the result equals prost's encoding of the whole message.
const KEYS_FIELD_KEY: u8 = (7 << 3) | 2;
/// The same for a revised key (field 8, `revised_keys`).
const REVISED_KEYS_FIELD_KEY: u8 = (8 << 3) | 2;

/// Bytes one key takes in export.bin when its fields are in range (35), plus slack.
const ENCODED_KEY_LEN_ESTIMATE: usize = 36;

/// prost reports a capacity error only for fixed-size buffers; a `Vec` grows instead.
const VEC_GROWS: &str = "encoding into a Vec cannot run out of room";

/// The protobuf messages of the export format (proto2: every field optional). Private: the
/// rest of the crate uses the domain types.
mod proto {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TemporaryExposureKeyExport {
        #[prost(fixed64, optional, tag = "1")]
        pub start_timestamp: Option<u64>,
        #[prost(fixed64, optional, tag = "2")]
        pub end_timestamp: Option<u64>,
        #[prost(string, optional, tag = "3")]
        pub region: Option<String>,
        #[prost(int32, optional, tag = "4")]
        pub batch_num: Option<i32>,
        #[prost(int32, optional, tag = "5")]
        pub batch_size: Option<i32>,
        #[prost(message, repeated, tag = "6")]
        pub signature_infos: Vec<SignatureInfo>,
        #[prost(message, repeated, tag = "7")]
        pub keys: Vec<TemporaryExposureKey>,
        #[prost(message, repeated, tag = "8")]
        pub revised_keys: Vec<TemporaryExposureKey>,
    }

    /// [`TemporaryExposureKeyExport`] without its keys (fields 7 and 8), which decoding skips.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ExportEnvelope {
        #[prost(fixed64, optional, tag = "1")]
        pub start_timestamp: Option<u64>,
        #[prost(fixed64, optional, tag = "2")]
        pub end_timestamp: Option<u64>,
        #[prost(string, optional, tag = "3")]
        pub region: Option<String>,
        #[prost(int32, optional, tag = "4")]
        pub batch_num: Option<i32>,
        #[prost(int32, optional, tag = "5")]
        pub batch_size: Option<i32>,
        #[prost(message, repeated, tag = "6")]
        pub signature_infos: Vec<SignatureInfo>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct SignatureInfo {
        #[prost(string, optional, tag = "3")]
        pub verification_key_version: Option<String>,
        #[prost(string, optional, tag = "4")]
        pub verification_key_id: Option<String>,
        #[prost(string, optional, tag = "5")]
        pub signature_algorithm: Option<String>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TemporaryExposureKey {
        #[prost(bytes = "vec", optional, tag = "1")]
        pub key_data: Option<Vec<u8>>,
        #[prost(int32, optional, tag = "2")]
        pub transmission_risk_level: Option<i32>,
        #[prost(int32, optional, tag = "3")]
        pub rolling_start_interval_number: Option<i32>,
        #[prost(int32, optional, tag = "4")]
        pub rolling_period: Option<i32>,
        /// The `ReportType` enum; enums travel as int32.
        #[prost(int32, optional, tag = "5")]
        pub report_type: Option<i32>,
        #[prost(sint32, optional, tag = "6")]
        pub days_since_onset_of_symptoms: Option<i32>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TekSignatureList {
        #[prost(message, repeated, tag = "1")]
        pub signatures: Vec<TekSignature>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TekSignature {
        #[prost(message, optional, tag = "1")]
        pub signature_info: Option<SignatureInfo>,
        #[prost(int32, optional, tag = "2")]
        pub batch_num: Option<i32>,
        #[prost(int32, optional, tag = "3")]
        pub batch_size: Option<i32>,
        #[prost(bytes = "vec", optional, tag = "4")]
        pub signature: Option<Vec<u8>>,
    }
}

/// What an export file says about itself, besides keys and signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportHeader {
    pub start_timestamp: u64,
    pub end_timestamp: u64,
    pub region: String,
    pub batch_num: i32,
    pub batch_size: i32,
}

/// Most bytes export.sig may inflate to: GAEN allows 10 signatures of about 100 bytes each.
pub const MAX_SIG_BYTES: u64 = 64 << 10;

/// Size and count limits for reading untrusted export zips.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportLimits {
    pub max_zip_bytes: usize,
    /// Most bytes export.bin may inflate to: guards against zip bombs. It is inflated twice,
    /// never kept before its signature verifies.
    pub max_entry_bytes: u64,
    /// Most keys (keys and revised keys together) one file may hold.
    pub max_keys: usize,
}

impl Default for ExportLimits {
    /// 16 MiB zipped (the Apple and Google limit), 32 MiB inflated (500,000 keys take about
    /// 17 MiB), and the 500,000 keys that one file written here may hold.
    fn default() -> Self {
        Self {
            max_zip_bytes: 16 << 20,
            max_entry_bytes: 32 << 20,
            max_keys: MAX_KEYS_PER_FILE,
        }
    }
}

/// A decoded export file.
#[derive(Debug, Clone)]
pub struct ExportFile {
    pub header: ExportHeader,
    pub signature_infos: Vec<SignatureInfo>,
    pub keys: Vec<DiagnosisKey>,
    pub revised_keys: Vec<DiagnosisKey>,
    /// Keys that could not be read, left out of `keys` and `revised_keys`.
    pub malformed: MalformedKeys,
    pub signatures: Vec<ExportSignature>,
    /// The signed bytes, header included.
    export_bin: Vec<u8>,
}

/// One entry of export.sig.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportSignature {
    pub info: SignatureInfo,
    pub batch_num: i32,
    pub batch_size: i32,
    /// ASN.1 DER ECDSA signature of the whole export.bin.
    pub der: Vec<u8>,
}

/// Where a key sits in export.bin, for error messages: `keys[3]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyPosition {
    pub list: &'static str,
    pub index: usize,
}

impl fmt::Display for KeyPosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.list, self.index)
    }
}

/// The keys of a file that could not be read: counted by problem, the first few kept to show.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MalformedKeys {
    pub by_code: std::collections::BTreeMap<&'static str, u64>,
    /// The first [`MalformedKeys::EXAMPLES`] of them.
    pub examples: Vec<MalformedKey>,
}

impl MalformedKeys {
    /// How many malformed keys are kept to show: a hostile file costs no memory per key.
    pub const EXAMPLES: usize = 8;

    fn add(&mut self, key: MalformedKey) {
        *self.by_code.entry(key.code()).or_default() += 1;
        if self.examples.len() < Self::EXAMPLES {
            self.examples.push(key);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.by_code.is_empty()
    }
}

/// A key of a file that cannot be read, and where it is.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum MalformedKey {
    #[error("{at}: key_data is {len} bytes long, expected {KEY_LEN}")]
    KeyDataLength { at: KeyPosition, len: usize },
    #[error("{at} has no {field}")]
    MissingKeyField {
        at: KeyPosition,
        field: &'static str,
    },
    #[error("{at}: {field} is negative ({value})")]
    NegativeKeyField {
        at: KeyPosition,
        field: &'static str,
        value: i32,
    },
    #[error("{at} is not a valid protobuf message: {reason}")]
    Undecodable { at: KeyPosition, reason: String },
}

impl MalformedKey {
    /// A short name of the problem, to count dropped keys by.
    pub fn code(&self) -> &'static str {
        match self {
            Self::KeyDataLength { .. } => "bad_key_length",
            Self::MissingKeyField { .. } => "missing_field",
            Self::NegativeKeyField { .. } => "negative_field",
            Self::Undecodable { .. } => "undecodable_key",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("{count} keys do not fit in one export file (at most {MAX_KEYS_PER_FILE})")]
    TooManyKeys { count: usize },
    #[error("the signer returned {signatures} signatures for {infos} signing keys")]
    SignatureCount { infos: usize, signatures: usize },
    #[error(transparent)]
    Signing(#[from] SigningError),
    #[error("cannot build the export zip: {0}")]
    ZipWrite(#[source] ZipError),
    #[error("export zip is {size} bytes, more than the limit of {limit}")]
    ZipTooLarge { size: usize, limit: usize },
    #[error("not a readable zip file (truncated or corrupt?): {0}")]
    Zip(#[source] ZipError),
    #[error("export zip has no {0} entry")]
    MissingEntry(&'static str),
    #[error("{name} inflates to more than the limit of {limit} bytes")]
    EntryTooLarge { name: &'static str, limit: u64 },
    #[error("cannot inflate {name}: {source}")]
    EntryRead {
        name: &'static str,
        source: io::Error,
    },
    #[error("export.bin does not start with the header \"EK Export v1    \"")]
    BadHeader,
    #[error("{name} is not a valid protobuf message: {source}")]
    Decode {
        name: &'static str,
        source: prost::DecodeError,
    },
    #[error(transparent)]
    MalformedKey(#[from] MalformedKey),
    #[error("the file holds more than {limit} keys")]
    KeyCap { limit: usize },
    #[error("export.bin ends inside a key")]
    KeyOverrun,
    #[error("none of the {signatures} signatures verifies with any of the {keys} keys given")]
    Unverified { signatures: usize, keys: usize },
}

/// The export.bin bytes, the part that is signed: the header, then the protobuf with `keys`
/// and `revised_keys` (keys published before whose report type changed).
pub fn encode_export_bin<K: Borrow<DiagnosisKey>>(
    header: &ExportHeader,
    signature_infos: &[SignatureInfo],
    keys: &[K],
    revised_keys: &[K],
) -> Result<Vec<u8>, ExportError> {
    let count = keys.len() + revised_keys.len();
    if count > MAX_KEYS_PER_FILE {
        return Err(ExportError::TooManyKeys { count });
    }
    // Every field but the keys; the keys follow as fields 7 and 8, in order, through one
    // reused message so that no key costs an allocation.
    let envelope = proto::TemporaryExposureKeyExport {
        start_timestamp: Some(header.start_timestamp),
        end_timestamp: Some(header.end_timestamp),
        region: Some(header.region.clone()),
        batch_num: Some(header.batch_num),
        batch_size: Some(header.batch_size),
        signature_infos: signature_infos
            .iter()
            .map(proto::SignatureInfo::from)
            .collect(),
        ..Default::default()
    };
    let mut export_bin = Vec::with_capacity(
        EXPORT_HEADER.len() + envelope.encoded_len() + count * ENCODED_KEY_LEN_ESTIMATE,
    );
    export_bin.extend_from_slice(EXPORT_HEADER);
    envelope.encode(&mut export_bin).expect(VEC_GROWS);
    let mut wire_key = proto::TemporaryExposureKey::default();
    for (field, keys) in [
        (KEYS_FIELD_KEY, keys),
        (REVISED_KEYS_FIELD_KEY, revised_keys),
    ] {
        for key in keys {
            wire_key.set(key.borrow());
            export_bin.push(field);
            wire_key
                .encode_length_delimited(&mut export_bin)
                .expect(VEC_GROWS);
        }
    }
    Ok(export_bin)
}

/// The export zip: `export.bin` then `export.sig`, deflated.
pub fn zip_export(export_bin: &[u8], export_sig: &[u8]) -> Result<Vec<u8>, ExportError> {
    zip_entries(&[(EXPORT_BIN, export_bin), (EXPORT_SIG, export_sig)])
        .map_err(ExportError::ZipWrite)
}

/// export.sig: one signature per signing key, in the order of `signature_infos`.
pub fn encode_export_sig(
    header: &ExportHeader,
    signature_infos: &[SignatureInfo],
    signatures: Vec<Vec<u8>>,
) -> Result<Vec<u8>, ExportError> {
    if signatures.len() != signature_infos.len() {
        return Err(ExportError::SignatureCount {
            infos: signature_infos.len(),
            signatures: signatures.len(),
        });
    }
    let signatures = signature_infos
        .iter()
        .zip(signatures)
        .map(|(info, der)| proto::TekSignature {
            signature_info: Some(info.into()),
            batch_num: Some(header.batch_num),
            batch_size: Some(header.batch_size),
            signature: Some(der),
        })
        .collect();
    Ok(proto::TekSignatureList { signatures }.encode_to_vec())
}

fn zip_entries(entries: &[(&str, &[u8])]) -> Result<Vec<u8>, ZipError> {
    let options = SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .compression_level(Some(DEFLATE_LEVEL));
    let total_len = entries.iter().map(|(_, data)| data.len()).sum();
    let mut zip = ZipWriter::new(Cursor::new(Vec::with_capacity(total_len)));
    for (name, data) in entries {
        zip.start_file(*name, options)?;
        zip.write_all(data)?;
    }
    Ok(zip.finish()?.into_inner())
}

/// Reads an export zip from an untrusted source, within `limits`, refusing it if any key
/// cannot be read. Does not verify it: see [`ExportFile::verify`], or [`OpenedExport`], which
/// verifies before it decodes. Header fields the file leaves out read as protobuf defaults
/// (0, "").
pub fn read_export(zip_bytes: &[u8], limits: &ExportLimits) -> Result<ExportFile, ExportError> {
    let file = OpenedExport::open(zip_bytes, limits)?.decode()?;
    match file.malformed.examples.first() {
        Some(malformed) => Err(malformed.clone().into()),
        None => Ok(file),
    }
}

/// An untrusted export zip, opened within its limits: export.sig decoded and export.bin
/// hashed, nothing of export.bin kept or decoded. Verify it ([`OpenedExport::verify`]), then
/// decode it ([`OpenedExport::decode`]).
pub struct OpenedExport<'z> {
    archive: ZipArchive<Cursor<&'z [u8]>>,
    signatures: Vec<ExportSignature>,
    /// SHA-256 of export.bin, the message its signatures sign.
    digest: [u8; 32],
    limits: ExportLimits,
}

impl<'z> OpenedExport<'z> {
    /// Opens the zip, decodes export.sig and hashes export.bin (whose header must be GAEN's),
    /// each within `limits`; no more than a read buffer of export.bin is in memory at once.
    pub fn open(zip_bytes: &'z [u8], limits: &ExportLimits) -> Result<Self, ExportError> {
        if zip_bytes.len() > limits.max_zip_bytes {
            return Err(ExportError::ZipTooLarge {
                size: zip_bytes.len(),
                limit: limits.max_zip_bytes,
            });
        }
        let mut archive = ZipArchive::new(Cursor::new(zip_bytes)).map_err(ExportError::Zip)?;
        let mut export_sig = Vec::new();
        inflate(&mut archive, EXPORT_SIG, MAX_SIG_BYTES, |part| {
            export_sig.extend_from_slice(part)
        })?;
        let signatures = proto::TekSignatureList::decode(export_sig.as_slice())
            .map_err(decode_error(EXPORT_SIG))?
            .signatures
            .into_iter()
            .map(ExportSignature::from)
            .collect();
        let digest = hash_export_bin(&mut archive, limits.max_entry_bytes, |_| {})?;
        Ok(Self {
            archive,
            signatures,
            digest,
            limits: limits.clone(),
        })
    }

    /// The signatures of export.sig.
    pub fn signatures(&self) -> &[ExportSignature] {
        &self.signatures
    }

    /// The key among `keys` that verifies one of the file's signatures; see
    /// [`ExportFile::verify`].
    pub fn verify<'k>(
        &self,
        keys: &'k [VerificationKey],
    ) -> Result<&'k SignatureInfo, ExportError> {
        verify_digest(&self.digest, &self.signatures, keys)
    }

    /// Inflates export.bin again (checking that it is the export.bin hashed before) and decodes
    /// it, at most `max_keys` keys; keys that cannot be read go to [`ExportFile::malformed`].
    pub fn decode(mut self) -> Result<ExportFile, ExportError> {
        let mut export_bin = Vec::new();
        let digest = hash_export_bin(&mut self.archive, self.limits.max_entry_bytes, |part| {
            export_bin.extend_from_slice(part)
        })?;
        if digest != self.digest {
            return Err(ExportError::EntryRead {
                name: EXPORT_BIN,
                source: io::Error::other("export.bin changed between two reads"),
            });
        }
        let body = &export_bin[EXPORT_HEADER.len()..];
        // Every field but the keys, which prost skips here without keeping them.
        let envelope = proto::ExportEnvelope::decode(body).map_err(decode_error(EXPORT_BIN))?;
        let mut keys = Vec::new();
        let mut revised_keys = Vec::new();
        let mut malformed = MalformedKeys::default();
        for_each_key(body, self.limits.max_keys, |list, index, bytes| {
            let at = KeyPosition { list, index };
            let key = proto::TemporaryExposureKey::decode(bytes)
                .map_err(|e| MalformedKey::Undecodable {
                    at,
                    reason: e.to_string(),
                })
                .and_then(|wire_key| wire_key.into_diagnosis_key(at));
            match (key, list) {
                (Ok(key), KEYS) => keys.push(key),
                (Ok(key), _) => revised_keys.push(key),
                (Err(problem), _) => malformed.add(problem),
            }
        })?;
        Ok(ExportFile {
            header: ExportHeader {
                start_timestamp: envelope.start_timestamp.unwrap_or_default(),
                end_timestamp: envelope.end_timestamp.unwrap_or_default(),
                region: envelope.region.unwrap_or_default(),
                batch_num: envelope.batch_num.unwrap_or_default(),
                batch_size: envelope.batch_size.unwrap_or_default(),
            },
            signature_infos: envelope
                .signature_infos
                .into_iter()
                .map(SignatureInfo::from)
                .collect(),
            keys,
            revised_keys,
            malformed,
            signatures: self.signatures,
            export_bin,
        })
    }
}

impl ExportFile {
    /// The signed bytes: export.bin as it was in the zip, header included.
    pub fn export_bin(&self) -> &[u8] {
        &self.export_bin
    }

    /// The key among `keys` that verifies one of the file's signatures. Keys are tried first
    /// against the signatures that name them (same key ID and version), then against all the
    /// others, since a peer may name a key differently (for example after a rotation).
    pub fn verify<'k>(
        &self,
        keys: &'k [VerificationKey],
    ) -> Result<&'k SignatureInfo, ExportError> {
        verify_digest(&sha256(&[&self.export_bin]), &self.signatures, keys)
    }
}

/// See [`ExportFile::verify`]: the same over the SHA-256 of export.bin.
fn verify_digest<'k>(
    digest: &[u8; 32],
    signatures: &[ExportSignature],
    keys: &'k [VerificationKey],
) -> Result<&'k SignatureInfo, ExportError> {
    let (named, unnamed): (Vec<_>, Vec<_>) = signatures
        .iter()
        .flat_map(|signature| keys.iter().map(move |key| (signature, key)))
        .partition(|(signature, key)| {
            signature.info.key_id == key.info.key_id
                && signature.info.key_version == key.info.key_version
        });
    named
        .into_iter()
        .chain(unnamed)
        .find(|(signature, key)| key.verify_digest(digest, &signature.der))
        .map(|(_, key)| &key.info)
        .ok_or(ExportError::Unverified {
            signatures: signatures.len(),
            keys: keys.len(),
        })
}

/// The list name of field 7 in [`KeyPosition`]s.
const KEYS: &str = "keys";
/// The list name of field 8.
const REVISED_KEYS: &str = "revised_keys";

/// Inflates export.bin within `limit` bytes, handing each part to `sink`, and returns its
/// SHA-256; the file must start with GAEN's header.
fn hash_export_bin(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    limit: u64,
    mut sink: impl FnMut(&[u8]),
) -> Result<[u8; 32], ExportError> {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    let mut head = Vec::with_capacity(EXPORT_HEADER.len());
    inflate(archive, EXPORT_BIN, limit, |part| {
        let missing = EXPORT_HEADER.len() - head.len();
        head.extend_from_slice(&part[..missing.min(part.len())]);
        context.update(part);
        sink(part);
    })?;
    if head != EXPORT_HEADER {
        return Err(ExportError::BadHeader);
    }
    Ok(context
        .finish()
        .as_ref()
        .try_into()
        .expect("SHA-256 is 32 bytes"))
}

/// Streams the inflated content of entry `name` to `sink` in parts, refusing it past `limit`
/// bytes, by its declared size and by what it actually inflates to.
fn inflate(
    archive: &mut ZipArchive<Cursor<&[u8]>>,
    name: &'static str,
    limit: u64,
    mut sink: impl FnMut(&[u8]),
) -> Result<(), ExportError> {
    let too_large = || ExportError::EntryTooLarge { name, limit };
    let mut entry = archive.by_name(name).map_err(|error| match error {
        ZipError::FileNotFound => ExportError::MissingEntry(name),
        error => ExportError::Zip(error),
    })?;
    if entry.size() > limit {
        return Err(too_large());
    }
    let mut buffer = [0; 16 << 10];
    let mut total = 0u64;
    loop {
        let read = match entry.read(&mut buffer) {
            Ok(0) => return Ok(()),
            Ok(read) => read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(ExportError::EntryRead { name, source }),
        };
        total += read as u64;
        if total > limit {
            return Err(too_large());
        }
        sink(&buffer[..read]);
    }
}

/// Calls `each` with the list, index and bytes of every key (fields 7 and 8) of the
/// `TemporaryExposureKeyExport` message `body`, without decoding the keys; refuses more than
/// `max_keys` of them.
fn for_each_key(
    mut body: &[u8],
    max_keys: usize,
    mut each: impl FnMut(&'static str, usize, &[u8]),
) -> Result<(), ExportError> {
    use prost::encoding::{DecodeContext, WireType, decode_key, decode_varint, skip_field};
    let (mut keys, mut revised) = (0, 0);
    while !body.is_empty() {
        let (tag, wire_type) = decode_key(&mut body).map_err(decode_error(EXPORT_BIN))?;
        let (list, index) = match (tag, wire_type) {
            (7, WireType::LengthDelimited) => {
                keys += 1;
                (KEYS, keys - 1)
            }
            (8, WireType::LengthDelimited) => {
                revised += 1;
                (REVISED_KEYS, revised - 1)
            }
            _ => {
                skip_field(wire_type, tag, &mut body, DecodeContext::default())
                    .map_err(decode_error(EXPORT_BIN))?;
                continue;
            }
        };
        if keys + revised > max_keys {
            return Err(ExportError::KeyCap { limit: max_keys });
        }
        let len = decode_varint(&mut body).map_err(decode_error(EXPORT_BIN))?;
        let len = usize::try_from(len)
            .ok()
            .filter(|len| *len <= body.len())
            .ok_or(ExportError::KeyOverrun)?;
        let (key, rest) = body.split_at(len);
        each(list, index, key);
        body = rest;
    }
    Ok(())
}

fn decode_error(name: &'static str) -> impl FnOnce(prost::DecodeError) -> ExportError {
    move |source| ExportError::Decode { name, source }
}

impl proto::TemporaryExposureKey {
    /// Overwrites this message with `key`, reusing its key_data buffer.
    fn set(&mut self, key: &DiagnosisKey) {
        let key_data = self.key_data.get_or_insert_default();
        key_data.clear();
        key_data.extend_from_slice(&key.key_data);
        self.transmission_risk_level = Some(key.transmission_risk);
        // Interval numbers stay below 2^31 until the year 42,000; periods are at most 144.
        self.rolling_start_interval_number = Some(key.rolling_start as i32);
        self.rolling_period = Some(key.rolling_period as i32);
        self.report_type = Some(key.report_type as i32);
        self.days_since_onset_of_symptoms = key.days_since_onset;
    }

    /// Checks the untrusted fields; fills in GAEN's defaults for the ones left out.
    fn into_diagnosis_key(self, at: KeyPosition) -> Result<DiagnosisKey, MalformedKey> {
        let missing = |field| MalformedKey::MissingKeyField { at, field };
        let non_negative = |field, value: i32| {
            u32::try_from(value).map_err(|_| MalformedKey::NegativeKeyField { at, field, value })
        };

        let key_data = self.key_data.ok_or_else(|| missing("key_data"))?;
        let len = key_data.len();
        let key_data = <[u8; KEY_LEN]>::try_from(key_data)
            .map_err(|_| MalformedKey::KeyDataLength { at, len })?;
        let rolling_start = self
            .rolling_start_interval_number
            .ok_or_else(|| missing("rolling_start_interval_number"))?;
        let rolling_period = self.rolling_period.unwrap_or(INTERVALS_PER_DAY as i32);
        Ok(DiagnosisKey {
            key_data,
            rolling_start: non_negative("rolling_start_interval_number", rolling_start)?,
            rolling_period: non_negative("rolling_period", rolling_period)?,
            transmission_risk: self.transmission_risk_level.unwrap_or_default(),
            report_type: ReportType::from_i32(self.report_type.unwrap_or_default()),
            days_since_onset: self.days_since_onset_of_symptoms,
        })
    }
}

impl From<&SignatureInfo> for proto::SignatureInfo {
    fn from(info: &SignatureInfo) -> Self {
        Self {
            verification_key_version: Some(info.key_version.clone()),
            verification_key_id: Some(info.key_id.clone()),
            signature_algorithm: Some(info.algorithm.clone()),
        }
    }
}

impl From<proto::SignatureInfo> for SignatureInfo {
    fn from(info: proto::SignatureInfo) -> Self {
        Self {
            key_version: info.verification_key_version.unwrap_or_default(),
            key_id: info.verification_key_id.unwrap_or_default(),
            algorithm: info.signature_algorithm.unwrap_or_default(),
        }
    }
}

impl From<proto::TekSignature> for ExportSignature {
    fn from(signature: proto::TekSignature) -> Self {
        Self {
            info: signature.signature_info.unwrap_or_default().into(),
            batch_num: signature.batch_num.unwrap_or_default(),
            batch_size: signature.batch_size.unwrap_or_default(),
            der: signature.signature.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::ExportError::*;
    use super::*;
    use std::fs;
    use std::path::PathBuf;

    /// The team's fixture folder (`shared/fixtures` at the workspace root).
    fn fixture(path: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/fixtures")
            .join(path)
    }

    fn google_export() -> ExportFile {
        let zip = fixture("google-export-example/testExport-2-records-1-of-1.zip");
        read_export(&fs::read(zip).unwrap(), &ExportLimits::default()).unwrap()
    }

    fn google_key() -> VerificationKey {
        let pem_text = fs::read_to_string(fixture("google-export-example/public.pem")).unwrap();
        VerificationKey::from_pem(&pem_text, "some_id", "1").unwrap()
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    pub(crate) fn test_header() -> ExportHeader {
        ExportHeader {
            start_timestamp: 1_590_159_600,
            end_timestamp: 1_590_246_000,
            region: "CH".into(),
            batch_num: 1,
            batch_size: 1,
        }
    }

    /// Keys with every field in use, some at the ends of their ranges.
    pub(crate) fn test_keys(count: usize) -> Vec<DiagnosisKey> {
        (0..count)
            .map(|i| DiagnosisKey {
                key_data: std::array::from_fn(|byte| (i * 31 + byte * 7) as u8),
                rolling_start: 2_650_000 + 144 * (i as u32 % 14),
                rolling_period: 1 + i as u32 % 144,
                transmission_risk: i as i32 % 9,
                report_type: ReportType::from_i32(i as i32 % 6),
                days_since_onset: [None, Some(-14), Some(0), Some(14)][i % 4],
            })
            .collect()
    }

    /// An export.bin whose protobuf part is `export`.
    fn export_bin_of(export: &proto::TemporaryExposureKeyExport) -> Vec<u8> {
        [EXPORT_HEADER.as_slice(), &export.encode_to_vec()].concat()
    }

    fn read_error(zip: &[u8]) -> ExportError {
        read_export(zip, &ExportLimits::default()).unwrap_err()
    }

    #[test]
    fn reads_and_verifies_googles_export() {
        let file = google_export();
        let header = ExportHeader {
            start_timestamp: 1_590_159_600,
            end_timestamp: 1_590_246_000,
            region: "US".into(),
            batch_num: 1,
            batch_size: 1,
        };
        assert_eq!(file.header, header);
        let keys: Vec<_> = file
            .keys
            .iter()
            .map(|key| {
                let (risk, start, period) =
                    (key.transmission_risk, key.rolling_start, key.rolling_period);
                format!(
                    "{} risk {risk} start {start} period {period}",
                    hex(&key.key_data)
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                "172fc480e598490c34177604339b1543 risk 8 start 2649980 period 1",
                "2b63053ac483238de176169e861f3dcd risk 1 start 2649866 period 114",
            ]
        );
        let unset = |key: &DiagnosisKey| {
            key.report_type == ReportType::Unknown && key.days_since_onset.is_none()
        };
        assert!(file.keys.iter().all(unset));
        assert!(file.revised_keys.is_empty());

        let info = SignatureInfo::ecdsa_p256("some_id", "1");
        assert_eq!(file.signature_infos, std::slice::from_ref(&info));
        let [signature] = file.signatures.as_slice() else {
            panic!("expected one signature, got {:?}", file.signatures);
        };
        assert_eq!(
            (&signature.info, signature.batch_num, signature.batch_size),
            (&info, 1, 1)
        );
        assert_eq!(file.verify(&[google_key()]).unwrap(), &info);
    }

    #[test]
    fn one_flipped_byte_breaks_the_signature() {
        let mut file = google_export();
        let last = file.export_bin.len() - 1;
        file.export_bin[last] ^= 0x01;
        let error = file.verify(&[google_key()]).unwrap_err();
        assert!(
            matches!(
                error,
                Unverified {
                    signatures: 1,
                    keys: 1
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn streamed_keys_encode_like_the_whole_message() {
        let infos = [SignatureInfo::ecdsa_p256("228", "v1")];
        let keys = test_keys(50);
        let (keys, revised) = keys.split_at(40);
        let header = test_header();
        let wire = |keys: &[DiagnosisKey]| {
            keys.iter()
                .map(|key| {
                    let mut wire_key = proto::TemporaryExposureKey::default();
                    wire_key.set(key);
                    wire_key
                })
                .collect()
        };
        let whole = proto::TemporaryExposureKeyExport {
            start_timestamp: Some(header.start_timestamp),
            end_timestamp: Some(header.end_timestamp),
            region: Some(header.region.clone()),
            batch_num: Some(header.batch_num),
            batch_size: Some(header.batch_size),
            signature_infos: infos.iter().map(Into::into).collect(),
            keys: wire(keys),
            revised_keys: wire(revised),
        };
        let streamed = encode_export_bin(&header, &infos, keys, revised).unwrap();
        assert_eq!(streamed, export_bin_of(&whole));
        let zip = zip_export(&streamed, b"").unwrap();
        let file = read_export(&zip, &ExportLimits::default()).unwrap();
        assert_eq!(
            (file.keys.as_slice(), file.revised_keys.as_slice()),
            (keys, revised)
        );
    }

    #[test]
    fn missing_key_fields_get_gaen_defaults() {
        let export = proto::TemporaryExposureKeyExport {
            keys: vec![proto::TemporaryExposureKey {
                key_data: Some(vec![7; KEY_LEN]),
                rolling_start_interval_number: Some(2_650_000),
                report_type: Some(42),
                ..Default::default()
            }],
            ..Default::default()
        };
        let zip = zip_export(&export_bin_of(&export), b"").unwrap();
        let file = read_export(&zip, &ExportLimits::default()).unwrap();
        let key = DiagnosisKey {
            key_data: [7; KEY_LEN],
            rolling_start: 2_650_000,
            rolling_period: 144,
            transmission_risk: 0,
            report_type: ReportType::Unknown,
            days_since_onset: None,
        };
        assert_eq!(file.keys, [key]);
        assert!(file.signatures.is_empty());
    }

    #[test]
    fn rejects_malformed_keys() {
        let valid = || proto::TemporaryExposureKey {
            key_data: Some(vec![7; KEY_LEN]),
            rolling_start_interval_number: Some(2_650_000),
            ..Default::default()
        };
        let short_key = proto::TemporaryExposureKey {
            key_data: Some(vec![7; 15]),
            ..valid()
        };
        let no_key = proto::TemporaryExposureKey {
            key_data: None,
            ..valid()
        };
        let no_start = proto::TemporaryExposureKey {
            rolling_start_interval_number: None,
            ..valid()
        };
        let negative_period = proto::TemporaryExposureKey {
            rolling_period: Some(-1),
            ..valid()
        };

        let errors = [short_key, no_key, no_start, negative_period].map(|bad_key| {
            let export = proto::TemporaryExposureKeyExport {
                revised_keys: vec![valid(), bad_key],
                ..Default::default()
            };
            read_error(&zip_export(&export_bin_of(&export), b"").unwrap()).to_string()
        });
        assert_eq!(
            errors,
            [
                "revised_keys[1]: key_data is 15 bytes long, expected 16",
                "revised_keys[1] has no key_data",
                "revised_keys[1] has no rolling_start_interval_number",
                "revised_keys[1]: rolling_period is negative (-1)",
            ]
        );
    }

    #[test]
    fn rejects_broken_zips() {
        let export_bin = encode_export_bin(&test_header(), &[], &test_keys(10), &[]).unwrap();
        let zip = zip_export(&export_bin, b"").unwrap();

        assert!(matches!(read_error(&zip[..zip.len() - 10]), Zip(_)));
        assert!(matches!(read_error(&export_bin), Zip(_)));
        let without_sig = zip_entries(&[(EXPORT_BIN, &export_bin)]).unwrap();
        assert!(matches!(read_error(&without_sig), MissingEntry(EXPORT_SIG)));

        let limits = ExportLimits {
            max_zip_bytes: zip.len() - 1,
            ..Default::default()
        };
        assert!(matches!(
            read_export(&zip, &limits),
            Err(ZipTooLarge { .. })
        ));
    }

    #[test]
    fn rejects_a_bad_header_or_protobuf() {
        let export_bin = encode_export_bin(&test_header(), &[], &test_keys(1), &[]).unwrap();
        let mut version_2 = export_bin.clone();
        version_2[11] = b'2';
        assert!(matches!(
            read_error(&zip_export(&version_2, b"").unwrap()),
            BadHeader
        ));
        assert!(matches!(
            read_error(&zip_export(b"EK Export", b"").unwrap()),
            BadHeader
        ));

        let truncated = &export_bin[..export_bin.len() - 1];
        let error = read_error(&zip_export(truncated, b"").unwrap());
        assert!(
            matches!(
                error,
                Decode {
                    name: EXPORT_BIN,
                    ..
                }
            ),
            "{error}"
        );
        let error = read_error(&zip_export(&export_bin, b"\xff").unwrap());
        assert!(
            matches!(
                error,
                Decode {
                    name: EXPORT_SIG,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn rejects_zip_bombs() {
        let limits = ExportLimits {
            max_entry_bytes: 1 << 20,
            ..Default::default()
        };
        let inflated_len: u32 = 10 << 20;
        let bomb = zip_export(&vec![0; inflated_len as usize], b"").unwrap();
        assert!(
            bomb.len() < 1 << 20,
            "the bomb is small: {} bytes",
            bomb.len()
        );
        let error = read_export(&bomb, &limits).unwrap_err();
        assert!(
            matches!(
                error,
                EntryTooLarge {
                    name: EXPORT_BIN,
                    ..
                }
            ),
            "{error}"
        );

        // A bomb that understates its size in both the local and the central header: the zip
        // crate stops inflating at the declared size, and read_entry caps the read as well.
        let understated = replace_all(bomb, &inflated_len.to_le_bytes(), &1000u32.to_le_bytes());
        let error = read_export(&understated, &limits).unwrap_err();
        assert!(
            matches!(error, EntryRead { .. } | EntryTooLarge { .. }),
            "{error}"
        );
    }

    #[test]
    fn keys_past_the_cap_refuse_the_file_before_they_are_decoded() {
        let export_bin = encode_export_bin(&test_header(), &[], &test_keys(11), &[]).unwrap();
        let zip = zip_export(&export_bin, b"").unwrap();
        let limits = ExportLimits {
            max_keys: 10,
            ..Default::default()
        };
        let error = OpenedExport::open(&zip, &limits)
            .unwrap()
            .decode()
            .unwrap_err();
        assert!(matches!(error, KeyCap { limit: 10 }), "{error}");
        assert_eq!(
            read_export(&zip, &ExportLimits::default())
                .unwrap()
                .keys
                .len(),
            11
        );
    }

    #[test]
    fn keys_that_cannot_be_read_are_left_out_and_counted() {
        let valid = || proto::TemporaryExposureKey {
            key_data: Some(vec![7; KEY_LEN]),
            rolling_start_interval_number: Some(2_650_000),
            ..Default::default()
        };
        let short = proto::TemporaryExposureKey {
            key_data: Some(vec![7; 15]),
            ..valid()
        };
        let export = proto::TemporaryExposureKeyExport {
            keys: vec![valid(), short.clone(), valid(), short],
            revised_keys: vec![valid()],
            ..Default::default()
        };
        let mut export_bin = export_bin_of(&export);
        // One more key that is not protobuf at all: field 1 claims 100 bytes of 2.
        export_bin.extend_from_slice(&[KEYS_FIELD_KEY, 3, 0x0a, 100, 0]);
        let zip = zip_export(&export_bin, b"").unwrap();
        let file = OpenedExport::open(&zip, &ExportLimits::default())
            .unwrap()
            .decode()
            .unwrap();
        assert_eq!((file.keys.len(), file.revised_keys.len()), (2, 1));
        let counts: Vec<_> = file.malformed.by_code.into_iter().collect();
        assert_eq!(counts, [("bad_key_length", 2), ("undecodable_key", 1)]);
        assert_eq!(
            file.malformed.examples[0].to_string(),
            "keys[1]: key_data is 15 bytes long, expected 16"
        );
        assert!(matches!(read_error(&zip), MalformedKey(_)));
    }

    #[test]
    fn the_signature_is_checked_on_the_streamed_digest() {
        let file = google_export();
        let zip = fs::read(fixture(
            "google-export-example/testExport-2-records-1-of-1.zip",
        ));
        let zip = zip.unwrap();
        let opened = OpenedExport::open(&zip, &ExportLimits::default()).unwrap();
        assert_eq!(opened.signatures(), file.signatures.as_slice());
        assert_eq!(opened.verify(&[google_key()]).unwrap().key_id, "some_id");
        assert_eq!(opened.decode().unwrap().keys, file.keys);
    }

    fn replace_all(mut bytes: Vec<u8>, from: &[u8; 4], to: &[u8; 4]) -> Vec<u8> {
        let positions: Vec<_> = (0..bytes.len() - 3)
            .filter(|&i| &bytes[i..i + 4] == from)
            .collect();
        assert!(!positions.is_empty(), "{from:?} not found");
        for i in positions {
            bytes[i..i + 4].copy_from_slice(to);
        }
        bytes
    }
}
