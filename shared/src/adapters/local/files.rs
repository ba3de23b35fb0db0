//! [`FileBlobStore`]: published chunks and indexes as files in a directory. A blob named
//! `v1/keys/3` is the file `v1/keys/3.zip` (chunks) and `v1/keys` is `v1/keys.json` (indexes),
//! so the tree can also be served as it is by any static web server.

use std::io::ErrorKind;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;

use super::fs::{Existing, write_atomically};
use crate::ports::{Blob, BlobError, BlobKind, BlobStore, Put};

pub struct FileBlobStore {
    root: PathBuf,
}

fn extension(kind: BlobKind) -> &'static str {
    match kind {
        BlobKind::Chunk => "zip",
        BlobKind::Index => "json",
    }
}

fn io_error(e: std::io::Error) -> BlobError {
    BlobError::Backend(e.to_string())
}

impl FileBlobStore {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The file of a blob: names are relative paths of plain segments only.
    fn path(&self, name: &str, kind: BlobKind) -> Result<PathBuf, BlobError> {
        let relative = Path::new(name);
        let plain = !name.is_empty()
            && relative
                .components()
                .all(|c| matches!(c, Component::Normal(_)));
        if !plain {
            return Err(BlobError::BadName(name.to_string()));
        }
        Ok(self.root.join(format!("{name}.{}", extension(kind))))
    }

    /// Writes the whole blob or nothing (see [`super::fs`]); `existing` decides whether an
    /// existing blob may be replaced.
    async fn write(
        &self,
        path: PathBuf,
        bytes: Vec<u8>,
        existing: Existing,
    ) -> Result<Put, BlobError> {
        let created =
            tokio::task::spawn_blocking(move || write_atomically(&path, &bytes, existing))
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
        self.write(self.path(name, kind)?, bytes, Existing::Keep)
            .await
    }

    async fn put(&self, name: &str, kind: BlobKind, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.write(self.path(name, kind)?, bytes, Existing::Replace)
            .await
            .map(|_| ())
    }

    async fn get(&self, name: &str) -> Result<Option<Blob>, BlobError> {
        for kind in [BlobKind::Chunk, BlobKind::Index] {
            match tokio::fs::read(self.path(name, kind)?).await {
                Ok(bytes) => return Ok(Some(Blob { kind, bytes })),
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(io_error(e)),
            }
        }
        Ok(None)
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        for kind in [BlobKind::Chunk, BlobKind::Index] {
            match tokio::fs::remove_file(self.path(name, kind)?).await {
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

    #[tokio::test]
    async fn chunks_are_written_once_and_indexes_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileBlobStore::new(dir.path());
        assert_eq!(
            store
                .put_new("v1/keys/1", BlobKind::Chunk, b"a".to_vec())
                .await
                .unwrap(),
            Put::Created
        );
        assert_eq!(
            store
                .put_new("v1/keys/1", BlobKind::Chunk, b"b".to_vec())
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
        assert_eq!(store.get("v1/keys/1").await.unwrap().unwrap().bytes, b"a");
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
