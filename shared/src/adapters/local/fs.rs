//! Files written whole or not at all: the bytes go to a temporary file beside the target, which
//! is synced and then moved into place, and the folder is synced so that the move itself
//! survives a power cut. Readers see the old file or the new one, never half of one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, ErrorKind, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Whether an existing file may be replaced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Existing {
    Replace,
    Keep,
}

/// Writes `bytes` to `path`, creating its folder if needed. With [`Existing::Keep`], a file
/// already at `path` is left as it is and `Ok(false)` is returned.
pub fn write_atomically(path: &Path, bytes: &[u8], existing: Existing) -> io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir)?;
    let temp = temporary_name(path);
    let written = write_new(&temp, bytes).and_then(|()| match existing {
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

fn write_new(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
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
    }
}
