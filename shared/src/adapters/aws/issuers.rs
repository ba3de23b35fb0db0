//! The trusted issuers file on AWS: an SSM parameter (`ssm:<name>`) or an S3 object
//! (`s3://<bucket>/<key>`), read again at every refresh.

use std::sync::Arc;

use async_trait::async_trait;
use aws_config::SdkConfig;
use aws_sdk_s3::error::DisplayErrorContext;

use super::load_parameter;
use crate::ports::{IssuerSource, IssuersUnreadable};

/// An SSM parameter holding the file.
pub struct SsmIssuers {
    client: aws_sdk_ssm::Client,
    name: String,
}

/// An S3 object holding the file.
pub struct S3Issuers {
    client: aws_sdk_s3::Client,
    bucket: String,
    key: String,
}

/// The source a location names: `ssm:<parameter name>` or `s3://<bucket>/<key>`.
pub fn issuer_source(
    sdk: &SdkConfig,
    s3: aws_sdk_s3::Client,
    location: &str,
) -> Result<Arc<dyn IssuerSource>, IssuersUnreadable> {
    if let Some(name) = location.strip_prefix("ssm:") {
        return Ok(Arc::new(SsmIssuers {
            client: aws_sdk_ssm::Client::new(sdk),
            name: name.to_string(),
        }));
    }
    if let Some((bucket, key)) = location
        .strip_prefix("s3://")
        .and_then(|path| path.split_once('/'))
    {
        return Ok(Arc::new(S3Issuers {
            client: s3,
            bucket: bucket.to_string(),
            key: key.to_string(),
        }));
    }
    Err(IssuersUnreadable {
        source_name: location.to_string(),
        reason: "not a location of the form ssm:<parameter> or s3://<bucket>/<key>".into(),
    })
}

#[async_trait]
impl IssuerSource for SsmIssuers {
    fn name(&self) -> String {
        format!("ssm:{}", self.name)
    }

    async fn read(&self) -> Result<String, IssuersUnreadable> {
        load_parameter(&self.client, &self.name)
            .await
            .map_err(|e| IssuersUnreadable {
                source_name: self.name(),
                reason: e.reason,
            })
    }
}

#[async_trait]
impl IssuerSource for S3Issuers {
    fn name(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.key)
    }

    async fn read(&self) -> Result<String, IssuersUnreadable> {
        let unreadable = |reason: String| IssuersUnreadable {
            source_name: self.name(),
            reason,
        };
        let object = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&self.key)
            .send()
            .await
            .map_err(|e| unreadable(DisplayErrorContext(e).to_string()))?;
        let bytes = object
            .body
            .collect()
            .await
            .map_err(|e| unreadable(e.to_string()))?
            .into_bytes();
        String::from_utf8(bytes.to_vec()).map_err(|_| unreadable("it is not UTF-8".into()))
    }
}
