//! [`FileBlobStore`]: published chunks and indexes as files in a directory, each named as
//! [`Published::file_name`] says (`v1/keys/3.zip`, `v1/keys.json`, `v1/keys/index.txt`), so the
//! tree can also be served as it is by any static web server. A chunk file's modification time
//! is its `fresh_until`: the time until which caches may keep it.

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

fn io_error(e: std::io::Error) -> BlobError {
    BlobError::Backend(e.to_string())
}

impl FileBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// What a blob name publishes, and its file: names are the paths of files a region
    /// publishes.
    fn file(&self, name: &str) -> Result<(Published, PathBuf), BlobError> {
        let published = name
            .parse::<Published>()
            .map_err(|_| BlobError::BadName(name.to_string()))?;
        Ok((published, self.root.join(published.file_name())))
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
        let (_, path) = self.file(name)?;
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
        let (published, path) = self.file(name)?;
        let bytes = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io_error(e)),
        };
        let kind = match published {
            Published::Chunk(..) => {
                let modified = tokio::fs::metadata(&path)
                    .await
                    .and_then(|m| m.modified())
                    .map_err(io_error)?;
                let fresh_until = modified
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                BlobKind::Chunk { fresh_until }
            }
            _ => BlobKind::Index,
        };
        Ok(Some(Blob { kind, bytes }))
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.file(name)?.1).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_error(e)),
        }
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
