//! [`FileBlobStore`]: published chunks and indexes as files in a directory. A blob named
//! `v1/keys/3` is the file `v1/keys/3.zip` (chunks) and `v1/keys` is `v1/keys.json` (indexes),
//! so the tree can also be served as it is by any static web server. A chunk file's
//! modification time is its `fresh_until`: the time until which caches may keep it.

use std::io::ErrorKind;
use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;

use super::fs::{Existing, write_atomically_dated};
use crate::domain::feed::Published;
use crate::ports::{Blob, BlobError, BlobKind, BlobStore, Put};

pub struct FileBlobStore {
    root: PathBuf,
}

const CHUNK_EXTENSION: &str = "zip";
const INDEX_EXTENSION: &str = "json";

fn extension(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Chunk { .. } => CHUNK_EXTENSION,
        BlobKind::Index => INDEX_EXTENSION,
    }
}

fn io_error(e: std::io::Error) -> BlobError {
    BlobError::Backend(e.to_string())
}

impl FileBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file of a blob with `extension`: names are the paths of files a region publishes.
    fn path(&self, name: &str, extension: &str) -> Result<PathBuf, BlobError> {
        name.parse::<Published>()
            .map_err(|_| BlobError::BadName(name.to_string()))?;
        Ok(self.root.join(format!("{name}.{extension}")))
    }

    /// Writes the whole blob or nothing (see [`super::fs`]); `existing` decides whether an
    /// existing blob may be replaced.
    async fn write(
        &self,
        name: &str,
        kind: BlobKind,
        bytes: Vec<u8>,
        existing: Existing,
    ) -> Result<Put, BlobError> {
        let path = self.path(name, extension(kind))?;
        let modified = match kind {
            BlobKind::Chunk { fresh_until } => {
                Some(SystemTime::UNIX_EPOCH + Duration::from_secs(fresh_until))
            }
            BlobKind::Index => None,
        };
        let created = tokio::task::spawn_blocking(move || {
            write_atomically_dated(&path, &bytes, existing, modified)
        })
        .await
        .map_err(|e| BlobError::Backend(e.to_string()))?
        .map_err(io_error)?;
        Ok(if created {
            Put::Created
        } else {
            Put::AlreadyExists
        })
    }
}

#[async_trait]
impl BlobStore for FileBlobStore {
    async fn put_new(&self, name: &str, kind: BlobKind, bytes: Vec<u8>) -> Result<Put, BlobError> {
        self.write(name, kind, bytes, Existing::Keep).await
    }

    async fn put(&self, name: &str, kind: BlobKind, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.write(name, kind, bytes, Existing::Replace)
            .await
            .map(|_| ())
    }

    async fn get(&self, name: &str) -> Result<Option<Blob>, BlobError> {
        let chunk = self.path(name, CHUNK_EXTENSION)?;
        match tokio::fs::read(&chunk).await {
            Ok(bytes) => {
                let modified = tokio::fs::metadata(&chunk)
                    .await
                    .and_then(|m| m.modified())
                    .map_err(io_error)?;
                let fresh_until = modified
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                return Ok(Some(Blob {
                    kind: BlobKind::Chunk { fresh_until },
                    bytes,
                }));
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_error(e)),
        }
        match tokio::fs::read(self.path(name, INDEX_EXTENSION)?).await {
            Ok(bytes) => Ok(Some(Blob {
                kind: BlobKind::Index,
                bytes,
            })),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_error(e)),
        }
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        for extension in [CHUNK_EXTENSION, INDEX_EXTENSION] {
            match tokio::fs::remove_file(self.path(name, extension)?).await {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chunk fresh until 2030.
    const CHUNK: BlobKind = BlobKind::Chunk {
        fresh_until: 1_900_000_000,
    };

    #[tokio::test]
    async fn chunks_are_written_once_and_indexes_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileBlobStore::new(dir.path());
        assert_eq!(
            store
                .put_new("v1/keys/1", CHUNK, b"a".to_vec())
                .await
                .unwrap(),
            Put::Created
        );
        assert_eq!(
            store
                .put_new("v1/keys/1", CHUNK, b"b".to_vec())
                .await
                .unwrap(),
            Put::AlreadyExists
        );
        store
            .put("v1/keys", BlobKind::Index, b"[1]".to_vec())
            .await
            .unwrap();
        store
            .put("v1/keys", BlobKind::Index, b"[2]".to_vec())
            .await
            .unwrap();
        assert_eq!(
            store.get("v1/keys/1").await.unwrap().unwrap(),
            Blob {
                kind: CHUNK,
                bytes: b"a".to_vec()
            }
        );
        assert_eq!(
            store.get("v1/keys").await.unwrap().unwrap(),
            Blob {
                kind: BlobKind::Index,
                bytes: b"[2]".to_vec()
            }
        );
        assert!(dir.path().join("v1/keys/1.zip").exists());
        store.delete("v1/keys/1").await.unwrap();
        assert_eq!(store.get("v1/keys/1").await.unwrap(), None);
        assert!(matches!(
            store.get("../etc/passwd").await,
            Err(BlobError::BadName(_))
        ));
    }
}
