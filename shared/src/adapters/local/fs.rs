//! Files written whole or not at all: the bytes go to a temporary file beside the target, which
//! is synced and then moved into place, and the folder is synced so that the move itself
//! survives a power cut. Readers see the old file or the new one, never half of one.
//!
//! Everything in a data directory is its owner's alone: folders are created 0700 and files
//! 0600 (on unix), and [`private_dir`] tightens a folder an earlier version left open.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// Whether an existing file may be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    Replace,
    Keep,
}

/// Writes `bytes` to `path`, creating its folder if needed. With [`Existing::Keep`], a file
/// already at `path` is left as it is and `Ok(false)` is returned.
pub fn write_atomically(path: &Path, bytes: &[u8], existing: Existing) -> io::Result<bool> {
    write_atomically_dated(path, bytes, existing, None)
}

/// [`write_atomically`], with the file's modification time set to `modified` before it
/// appears under its name.
pub fn write_atomically_dated(
    path: &Path,
    bytes: &[u8],
    existing: Existing,
    modified: Option<SystemTime>,
) -> io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    create_dirs(dir)?;
    let temp = temporary_name(path);
    let written = write_new(&temp, bytes, modified).and_then(|()| match existing {
        Existing::Replace => fs::rename(&temp, path).map(|()| true),
        // A hard link refuses to replace; the temporary name then goes.
        Existing::Keep => match fs::hard_link(&temp, path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e),
        },
    });
    if existing == Existing::Keep || written.is_err() {
        let _ = fs::remove_file(&temp);
    }
    let written = written?;
    sync_dir(dir)?;
    Ok(written)
}

fn write_new(path: &Path, bytes: &[u8], modified: Option<SystemTime>) -> io::Result<()> {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    if let Some(modified) = modified {
        file.set_modified(modified)?;
    }
    file.sync_all()
}

/// Creates `dir` and its missing parents, owner only.
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    let mut builder = fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates `dir` if missing, and makes it (and a file or folder at `path` in it, see
/// [`owner_only`]) its owner's alone.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    create_dirs(dir)?;
    owner_only(dir)
}

/// Takes away group and other permissions of a file (0600) or folder (0700) that exists.
pub fn owner_only(path: &Path) -> io::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = if fs::metadata(path)?.is_dir() {
            0o700
        } else {
            0o600
        };
        fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    }
    Ok(())
}

/// A name beside `path` that no other writer uses: this process's ID and a counter.
fn temporary_name(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let name = path
        .file_name()
        .map_or_else(Default::default, |n| n.to_os_string());
    let mut temp = std::ffi::OsString::from(".");
    temp.push(name);
    temp.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    path.with_file_name(temp)
}

/// Syncs a folder, so that names created or moved in it are durable.
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_replaced_or_kept_whole_and_no_temporary_file_remains() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b.txt");
        assert!(write_atomically(&path, b"one", Existing::Keep).unwrap());
        assert!(!write_atomically(&path, b"two", Existing::Keep).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert!(write_atomically(&path, b"three", Existing::Replace).unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"three");
        let names: Vec<_> = fs::read_dir(dir.path().join("a")).unwrap().collect();
        assert_eq!(names.len(), 1);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&path), 0o600);
            assert_eq!(mode(&dir.path().join("a")), 0o700);
        }
    }
}
