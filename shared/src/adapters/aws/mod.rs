//! The serverless adapters (cargo feature `aws`): the key, code and publication stores on
//! DynamoDB ([`DynamoStore`]) with the consumer's state table ([`DynamoConsumerState`]), the
//! blob store on S3 ([`S3BlobStore`]), the signing keys and other secrets from SSM Parameter
//! Store ([`load_signer`], [`load_parameter`]), the trusted issuers from SSM or S3
//! ([`issuer_source`]), and the SDK clients they share.

mod dynamo;
mod issuers;
mod s3;
mod ssm;

use aws_config::{BehaviorVersion, SdkConfig};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

pub use dynamo::{
    BUCKET_SECONDS, DynamoConsumerState, DynamoStore, EXPIRY_INDEX, EXPIRY_SHARDS,
    MAX_KEYS_PER_TRANSACTION, TTL_ATTRIBUTE, parse_key_hex,
};
pub use issuers::{S3Issuers, SsmIssuers, issuer_source};
pub use s3::{CHUNK_CACHE_CONTROL, CHUNK_TAG, FRESH_UNTIL, S3BlobStore};
pub use ssm::{NoSigningKeys, ParameterError, SigningKeysError, load_parameter, load_signer};

/// The HTTP client of every AWS SDK client: hyper with rustls on ring, so that no C crypto
/// library is built.
pub fn http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

/// The SDK configuration of a function: region and credentials from the Lambda environment
/// (`AWS_REGION`, the execution role), endpoints overridable with `AWS_ENDPOINT_URL`.
pub async fn sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http_client())
        .load()
        .await
}

pub fn dynamodb_client(sdk: &SdkConfig) -> aws_sdk_dynamodb::Client {
    aws_sdk_dynamodb::Client::new(sdk)
}

pub fn s3_client(sdk: &SdkConfig, path_style: bool) -> aws_sdk_s3::Client {
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(sdk)
            .force_path_style(path_style)
            .build(),
    )
}
