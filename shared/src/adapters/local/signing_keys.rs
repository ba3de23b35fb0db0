//! The region's signing keys as files in the data directory: `v1.pem`, `v2.pem`, ... (PKCS#8
//! ECDSA P-256, readable by the owner only), the highest version newest. Rotation adds a
//! version; every version present keeps signing.

use std::fs;
use std::io;
use std::path::Path;

use super::fs::{Existing, write_atomically};
use crate::adapters::ecdsa::{EcdsaSigner, SigningKey, generate_private_key_pem};
use crate::domain::signature::{KeyError, SignatureInfo};

/// Loads every `v<N>.pem` file in `dir` (N = 1, 2, ...: the key version is `v<N>`), newest
/// (highest N) first. If there is none, generates `v1.pem`, creating `dir` if missing (file
/// mode 0600 on unix). `key_id` goes in every [`SignatureInfo`].
pub fn open_or_create(dir: &Path, key_id: &str) -> Result<EcdsaSigner, KeyError> {
    let mut versions = key_file_versions(dir)?;
    if versions.is_empty() {
        create_key_file(dir, 1)?;
        versions.push(1);
    }
    let keys = versions
        .into_iter()
        .rev()
        .map(|version| {
            let path = dir.join(key_file_name(version));
            let pem_text = fs::read_to_string(&path).map_err(io_error(&path))?;
            let info = SignatureInfo::ecdsa_p256(key_id, &version_name(version));
            SigningKey::from_pem(info, &pem_text, &path.display().to_string())
        })
        .collect::<Result<_, _>>()?;
    EcdsaSigner::new(keys)
}

/// Generates the next version's key file (`v<max+1>.pem`) for rotation; returns its version.
pub fn rotate(dir: &Path) -> Result<String, KeyError> {
    let next = key_file_versions(dir)?
        .last()
        .map_or(1, |newest| newest.saturating_add(1));
    create_key_file(dir, next)?;
    Ok(version_name(next))
}

/// The versions N of the `v<N>.pem` files in `dir`, ascending; none if `dir` does not exist.
fn key_file_versions(dir: &Path) -> Result<Vec<u32>, KeyError> {
    let entries = match fs::read_dir(dir) {
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        entries => entries.map_err(io_error(dir))?,
    };
    let mut versions = Vec::new();
    for entry in entries {
        let name = entry.map_err(io_error(dir))?.file_name();
        versions.extend(name.to_str().and_then(parse_key_file_name));
    }
    versions.sort_unstable();
    Ok(versions)
}

fn parse_key_file_name(name: &str) -> Option<u32> {
    let version = name.strip_prefix('v')?.strip_suffix(".pem")?.parse().ok()?;
    // Only the canonical spelling counts, not "v0.pem", "v01.pem" or "v+1.pem".
    (version > 0 && key_file_name(version) == name).then_some(version)
}

fn version_name(version: u32) -> String {
    format!("v{version}")
}

fn key_file_name(version: u32) -> String {
    format!("v{version}.pem")
}

/// Writes a new PKCS#8 key as `dir/v<version>.pem`, readable by the owner only, whole and
/// durably; never overwrites an existing file.
fn create_key_file(dir: &Path, version: u32) -> Result<(), KeyError> {
    let pem_text = generate_private_key_pem()?;
    let path = dir.join(key_file_name(version));
    match write_atomically(&path, pem_text.as_bytes(), Existing::Keep) {
        Ok(true) => Ok(()),
        Ok(false) => Err(io_error(&path)(io::ErrorKind::AlreadyExists.into())),
        Err(e) => Err(io_error(&path)(e)),
    }
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> KeyError + '_ {
    move |source| KeyError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ports::Signer as _;

    #[test]
    fn creates_the_first_key_once_and_rotates_to_new_versions() {
        let dir = tempfile::tempdir().unwrap();
        let keys_dir = dir.path().join("keys");
        let first = open_or_create(&keys_dir, "222").unwrap();
        let reopened = open_or_create(&keys_dir, "222").unwrap();
        assert_eq!(first.verification_keys(), reopened.verification_keys());
        let v1 = SignatureInfo::ecdsa_p256("222", "v1");
        assert_eq!(first.signature_infos(), [v1]);

        assert_eq!(rotate(&keys_dir).unwrap(), "v2");
        assert_eq!(rotate(&keys_dir).unwrap(), "v3");
        fs::write(keys_dir.join("v01.pem"), "not a key").unwrap();
        fs::write(keys_dir.join("notes.txt"), "ignored").unwrap();
        let signer = open_or_create(&keys_dir, "222").unwrap();
        let versions: Vec<_> = signer
            .signature_infos()
            .into_iter()
            .map(|info| info.key_version)
            .collect();
        assert_eq!(versions, ["v3", "v2", "v1"]);

        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let metadata = fs::metadata(keys_dir.join("v1.pem")).unwrap();
            assert_eq!(metadata.permissions().mode() & 0o777, 0o600);
        }
    }
}
