//! The secrets of a data directory, each a file only its owner may read: the admin token
//! (`admin-token`) and the pepper of the one-time code hashes (`code-pepper`). Each is made on
//! first start and written whole; a file that is there but unreadable or malformed is an
//! error, never silently replaced.

use std::path::{Path, PathBuf};

use super::fs::{Existing, owner_only, write_atomically};
use crate::domain::secret::{
    AdminTokenError, Pepper, check_admin_token, new_pepper_hex, random_token,
};

/// The file of the admin token.
pub const ADMIN_TOKEN: &str = "admin-token";
/// The file of the code pepper.
pub const CODE_PEPPER: &str = "code-pepper";

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("cannot read or write {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a UTF-8 text file; fix or remove it")]
    NotText { path: PathBuf },
    #[error("{path}: {problem}")]
    Invalid { path: PathBuf, problem: String },
}

/// The admin token kept in `dir`, generated on first use.
pub fn admin_token(dir: &Path) -> Result<String, SecretError> {
    let path = dir.join(ADMIN_TOKEN);
    let text = read_or_create(&path, || random_token().into_bytes())?;
    let text = String::from_utf8(text).map_err(|_| SecretError::NotText { path: path.clone() })?;
    let token = text.trim().to_string();
    check_admin_token(&token).map_err(|e: AdminTokenError| SecretError::Invalid {
        path,
        problem: e.to_string(),
    })?;
    Ok(token)
}

/// The code pepper kept in `dir` (hexadecimal), generated on first use.
pub fn code_pepper(dir: &Path) -> Result<Pepper, SecretError> {
    let path = dir.join(CODE_PEPPER);
    let text = read_or_create(&path, || new_pepper_hex().into_bytes())?;
    let text = String::from_utf8(text).map_err(|_| SecretError::NotText { path: path.clone() })?;
    Pepper::from_hex(&text).map_err(|e| SecretError::Invalid {
        path,
        problem: e.to_string(),
    })
}

/// The contents of the secret file at `path`, made owner-only; or `new()`, written there
/// whole, if there is none (a concurrent first start keeps whichever came first).
fn read_or_create(path: &Path, new: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, SecretError> {
    let io = |source| SecretError::Io {
        path: path.to_path_buf(),
        source,
    };
    match std::fs::read(path) {
        Ok(bytes) => {
            owner_only(path).map_err(io)?;
            Ok(bytes)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            write_atomically(path, &new(), Existing::Keep).map_err(io)?;
            std::fs::read(path).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_made_once_kept_owner_only_and_refused_when_broken() {
        let dir = tempfile::tempdir().unwrap();
        let token = admin_token(dir.path()).unwrap();
        assert!(token.len() >= 32);
        assert_eq!(admin_token(dir.path()).unwrap(), token);
        let pepper = code_pepper(dir.path()).unwrap();
        assert_eq!(
            code_pepper(dir.path()).unwrap().hash("0123456789"),
            pepper.hash("0123456789")
        );
        #[cfg(unix)]
        for file in [ADMIN_TOKEN, CODE_PEPPER] {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }

        // Broken files are errors, and stay as they are.
        std::fs::write(dir.path().join(ADMIN_TOKEN), [0xff, 0xfe, 0x00]).unwrap();
        assert!(matches!(
            admin_token(dir.path()),
            Err(SecretError::NotText { .. })
        ));
        assert_eq!(
            std::fs::read(dir.path().join(ADMIN_TOKEN)).unwrap(),
            [0xff, 0xfe, 0x00]
        );
        std::fs::write(dir.path().join(ADMIN_TOKEN), "short").unwrap();
        assert!(matches!(
            admin_token(dir.path()),
            Err(SecretError::Invalid { .. })
        ));
        std::fs::write(dir.path().join(CODE_PEPPER), "abcd").unwrap();
        assert!(matches!(
            code_pepper(dir.path()),
            Err(SecretError::Invalid { .. })
        ));
    }
}
