//! [`S3BlobStore`]: published chunks and indexes as objects of an S3 bucket, named exactly by
//! their feed paths (`v1/keys/7`, `v1/keys`), so CloudFront serves the bucket under the same
//! paths as the HTTP API. Chunks are written with `If-None-Match: *` and never overwritten, and
//! carry the tag `enfeed-kind=chunk` that the bucket's lifecycle rule expires them by.
//!
//! A chunk's freshness is its `Expires` header, an absolute time (its `fresh_until`, also kept
//! in the metadata `fresh-until`), with no `max-age`: an object's headers are fixed when it is
//! written, while a `max-age` would count from whenever a cache fetched it, and a cache that
//! fetched a chunk the day before it is deleted would then keep it a day too long (SP3).

use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::Client;
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata};
use aws_sdk_s3::presigning::PresigningConfig;
use aws_sdk_s3::primitives::{ByteStream, DateTime};

use crate::domain::feed::Published;
use crate::ports::{Blob, BlobError, BlobKind, BlobStore, Put};

/// The object tag of chunks (the lifecycle rule's filter).
pub const CHUNK_TAG: &str = "enfeed-kind=chunk";
/// The metadata key of a chunk's `fresh_until` (Unix seconds).
pub const FRESH_UNTIL: &str = "fresh-until";
/// The `Cache-Control` of a chunk object: its `Expires` bounds it.
pub const CHUNK_CACHE_CONTROL: &str = "public, immutable";

/// How often a create-only put is retried while S3 reports a concurrent conditional write.
const CONFLICT_RETRIES: u32 = 5;

/// The S3 adapter of [`BlobStore`].
#[derive(Clone, Debug)]
pub struct S3BlobStore {
    client: Client,
    bucket: String,
}

fn sdk_error<E: std::error::Error>(e: E) -> BlobError {
    BlobError::Backend(DisplayErrorContext(e).to_string())
}

/// Checks that `name` is the path of a file a region publishes.
/// What a blob name publishes: names are the paths of files a region publishes.
fn check_name(name: &str) -> Result<Published, BlobError> {
    name.parse::<Published>()
        .map_err(|_| BlobError::BadName(name.to_string()))
}

impl S3BlobStore {
    pub fn new(client: Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }

    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    fn put_request(
        &self,
        name: &str,
        kind: BlobKind,
        bytes: Vec<u8>,
    ) -> Result<aws_sdk_s3::operation::put_object::builders::PutObjectFluentBuilder, BlobError>
    {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(name)
            .content_type(check_name(name)?.content_type())
            .body(ByteStream::from(bytes));
        Ok(match kind {
            BlobKind::Chunk { fresh_until } => request
                .tagging(CHUNK_TAG)
                .cache_control(CHUNK_CACHE_CONTROL)
                .expires(DateTime::from_secs(fresh_until as i64))
                .metadata(FRESH_UNTIL, fresh_until.to_string()),
            BlobKind::Index => request.cache_control(kind.cache_control(0)),
        })
    }
}

#[async_trait]
impl BlobStore for S3BlobStore {
    async fn put_new(&self, name: &str, kind: BlobKind, bytes: Vec<u8>) -> Result<Put, BlobError> {
        let mut attempt = 0;
        loop {
            let outcome = self
                .put_request(name, kind, bytes.clone())?
                .if_none_match("*")
                .send()
                .await;
            let e = match outcome {
                Ok(_) => return Ok(Put::Created),
                Err(e) => e,
            };
            let status = e.raw_response().map(|r| r.status().as_u16());
            match (status, e.code()) {
                (Some(412), _) | (_, Some("PreconditionFailed")) => return Ok(Put::AlreadyExists),
                // Another conditional write of the same name is in flight: one of them wins,
                // and the retry tells which.
                (Some(409), _) if attempt < CONFLICT_RETRIES => {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
                }
                _ => return Err(sdk_error(e)),
            }
        }
    }

    async fn put(&self, name: &str, kind: BlobKind, bytes: Vec<u8>) -> Result<(), BlobError> {
        self.put_request(name, kind, bytes)?
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<Blob>, BlobError> {
        check_name(name)?;
        let object = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(name)
            .send()
            .await
        {
            Ok(object) => object,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => return Ok(None),
            Err(e) => return Err(sdk_error(e)),
        };
        let fresh_until = object
            .metadata()
            .and_then(|metadata| metadata.get(FRESH_UNTIL))
            .and_then(|value| value.parse().ok());
        let kind = match fresh_until {
            Some(fresh_until) => BlobKind::Chunk { fresh_until },
            // A chunk written without one (by an earlier version) is kept by no cache.
            None if object.content_type() == Some("application/zip") => {
                BlobKind::Chunk { fresh_until: 0 }
            }
            None => BlobKind::Index,
        };
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| BlobError::Backend(e.to_string()))?
            .into_bytes()
            .to_vec();
        Ok(Some(Blob { kind, bytes }))
    }

    async fn delete(&self, name: &str) -> Result<(), BlobError> {
        check_name(name)?;
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(name)
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// A presigned GET of the object, valid for `valid_for`; none for a missing object.
    async fn direct_url(
        &self,
        name: &str,
        valid_for: Duration,
    ) -> Result<Option<String>, BlobError> {
        check_name(name)?;
        let head = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(name)
            .send()
            .await;
        match head {
            Ok(_) => {}
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => return Ok(None),
            Err(e) => return Err(sdk_error(e)),
        }
        let presigning = PresigningConfig::expires_in(valid_for)
            .map_err(|e| BlobError::Backend(e.to_string()))?;
        let request = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(name)
            .presigned(presigning)
            .await
            .map_err(sdk_error)?;
        Ok(Some(request.uri().to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_feed_paths_or_chunks_of_them() {
        for good in ["v1/keys", "v1/keys/1", "v1/a2a/keys/12", "v1/DE/keys"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "v1/keys/0",
            "v1/keys/01",
            "v1/x/keys/1",
            "../v1/keys/1",
            "/v1/keys/1",
            "v1/keys/",
        ] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }
}
