//! [`DynamoStore`]: keys, one-time codes, code issuers, attempt counters and data-prep's publication state in
//! one DynamoDB table (the design is in `docs/deploy.md`). Every promise of the ports is kept by
//! a conditional write or a transaction, never by a read followed by an unconditional write.
//!
//! | item | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | key | `K#<L or R>#<day of publish_at>#<shard>` | `<publish_at, 20 digits>#<key hex>` | key fields, `ttl`, `xs` |
//! | key seen (dedup) | `T#<key hex>` | `T` | `kpk`, `ksk` (the key item), `ttl` |
//! | seal | `SEAL` | `SEAL` | `seal` |
//! | a writer's fence of the seal, and its registry entry ([`fences`]) | `F#<id>`, `FENCES` | `F`, `<id>` | `seal`, `ttl` |
//! | one-time code | `C#<SHA-256 hex>` | `C` | `ia`, `ea`, `ub` (upload digest once used), `n`, `ttl` |
//! | code issuer | `ISSUER` | `I#<name>` | `th` (HMAC of the token), `ca`, `ra` (once revoked) |
//! | code an issuer issued | `IB#<name>` | `<issued_at, 20 digits>#<SHA-256 hex>` | `ea`, `rt`, `so`, `ttl` |
//! | attempts | `A#<client>#<window start>` | `A` | `cnt`, `ttl` |
//! | publication head | `PUB` | `HEAD` | `ver`, `parts` |
//! | publication part | `PUB` | `PART#<ver, 20 digits>#<i, 4 digits>` | `data` (deflated JSON) |
//!
//! Key items of one day are spread over [`KEY_SHARDS`] partitions by their first bytes, so that
//! no partition takes more than its share of a region's uploads. An insert condition-checks its
//! writer's own fence of the seal, not the one `SEAL` item that all uploads of a region would
//! meet on ([`fences`], docs/scale.md).
//!
//! `ttl` is the table's TTL attribute (Unix seconds). The sparse index `expiry` (`xs`, `ttl`;
//! keys only) holds key items alone, spread over [`EXPIRY_SHARDS`] partitions, so the purge reads
//! expired keys and nothing else.
//!
//! One file per port it implements, as the ports are laid out, besides the item [`codec`] and
//! the writers' [`fences`] of the seal.

mod code_issuers;
mod codec;
mod codes;
mod consumer_state;
mod fences;
mod keys;
mod publication;

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, GlobalSecondaryIndex, KeySchemaElement,
    KeyType, Projection, ProjectionType, ScalarAttributeType, TimeToLiveSpecification,
};

pub use codec::parse_key_hex;
pub use consumer_state::DynamoConsumerState;

use crate::ports::StoreError;

/// The name of the TTL attribute, on every item that should disappear by itself.
pub const TTL_ATTRIBUTE: &str = "ttl";
/// The sparse index over key items by expiry.
pub const EXPIRY_INDEX: &str = "expiry";
/// Partitions of the expiry index (by the first byte of the key).
pub const EXPIRY_SHARDS: u8 = 16;
/// Width of a key partition, in seconds of `publish_at`: one day.
pub const BUCKET_SECONDS: u64 = 86_400;
/// Partitions the key items of one origin and day are spread over. A partition takes at most
/// 1,000 write units a second; an upload of 14 keys writes 28 into key partitions (each
/// transactional write of an item up to 1 KB counts twice), so 8 partitions carry about 285
/// uploads a second, seven times a large region's peak (docs/scale.md). Each is one more query
/// for every day data-prep reads.
pub const KEY_SHARDS: u16 = 8;
/// Most keys one transaction stores: two items each, plus the fence check and the code, within
/// DynamoDB's 100 items per transaction.
pub const MAX_KEYS_PER_TRANSACTION: usize = 48;
/// Largest piece of the publication state in one item (DynamoDB items hold at most 400 KB).
pub(super) const PART_BYTES: usize = 350_000;
/// Most pieces of the publication state (a transaction carries at most 4 MB).
pub(super) const MAX_PARTS: usize = 10;
/// How long code and attempt items outlive their use.
pub(super) const LINGER: u64 = 86_400;
/// How often an insert retries after losing a race (a moved seal, a concurrent transaction).
pub(super) const MAX_INSERT_ATTEMPTS: usize = 10;
pub(super) const SEAL_PK: &str = "SEAL";
pub(super) const PUB_PK: &str = "PUB";
pub(super) const HEAD_SK: &str = "HEAD";
pub(super) const ISSUER_PK: &str = "ISSUER";

/// The DynamoDB adapter of the [`KeyStore`](crate::ports::KeyStore),
/// [`CodeStore`](crate::ports::CodeStore), [`CodeIssuerStore`](crate::ports::CodeIssuerStore)
/// and [`PublicationStore`](crate::ports::PublicationStore).
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// The retention period T: no key outlives its publication time by more.
    retention: u64,
    /// This instance's fences of the seal that no insert is using.
    fences: fences::IdleFences,
}

pub(crate) fn sdk_error<E: std::error::Error>(e: E) -> StoreError {
    StoreError::Backend(DisplayErrorContext(e).to_string())
}

pub(super) fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

pub(super) fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

pub(super) fn b(value: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(value))
}

pub(super) type Item = HashMap<String, AttributeValue>;

pub(super) fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::backend(format!("item lacks the number {name}")))
}

/// A number attribute that an item may lack.
pub(super) fn optional_n<T: std::str::FromStr>(
    item: &Item,
    name: &str,
) -> Result<Option<T>, StoreError> {
    item.get(name).map(|_| get_n(item, name)).transpose()
}

pub(super) fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::backend(format!("item lacks the string {name}")))
}

pub(super) fn get_b<'a>(item: &'a Item, name: &str) -> Option<&'a [u8]> {
    item.get(name)
        .and_then(|v| v.as_b().ok())
        .map(|b| b.as_ref())
}

/// Whether a failed transaction was cancelled, and why each of its items failed (`None` for
/// items that did not).
pub(super) fn cancellation_reasons(
    e: &SdkError<TransactWriteItemsError>,
) -> Option<Vec<Option<String>>> {
    match e.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(cancelled) => Some(
            cancelled
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().filter(|c| *c != "None").map(str::to_string))
                .collect(),
        ),
        _ => None,
    }
}

/// The outcome of a conditional write: `None` when its condition did not hold.
pub(super) fn unless_condition_failed<T, E, R>(
    result: Result<T, SdkError<E, R>>,
) -> Result<Option<T>, StoreError>
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    match result {
        Ok(out) => Ok(Some(out)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.code() == Some("ConditionalCheckFailedException")) =>
        {
            Ok(None)
        }
        Err(e) => Err(sdk_error(e)),
    }
}

impl DynamoStore {
    /// The store of `table`, whose keys expire `retention` seconds after they arrive (and so
    /// at most that long after their publication time).
    pub fn new(client: Client, table: impl Into<String>, retention: u64) -> Self {
        Self {
            client,
            table: table.into(),
            retention,
            fences: Default::default(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table as `template.yaml` declares it (keys, the expiry index, TTL), for
    /// tests and for tooling outside CloudFormation; waits until it is active.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let attribute = |name: &str, kind: ScalarAttributeType| {
            AttributeDefinition::builder()
                .attribute_name(name)
                .attribute_type(kind)
                .build()
                .map_err(StoreError::backend)
        };
        let key = |name: &str, kind: KeyType| {
            KeySchemaElement::builder()
                .attribute_name(name)
                .key_type(kind)
                .build()
                .map_err(StoreError::backend)
        };
        client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(attribute("pk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("sk", ScalarAttributeType::S)?)
            .attribute_definitions(attribute("xs", ScalarAttributeType::S)?)
            .attribute_definitions(attribute(TTL_ATTRIBUTE, ScalarAttributeType::N)?)
            .key_schema(key("pk", KeyType::Hash)?)
            .key_schema(key("sk", KeyType::Range)?)
            .global_secondary_indexes(
                GlobalSecondaryIndex::builder()
                    .index_name(EXPIRY_INDEX)
                    .key_schema(key("xs", KeyType::Hash)?)
                    .key_schema(key(TTL_ATTRIBUTE, KeyType::Range)?)
                    .projection(
                        Projection::builder()
                            .projection_type(ProjectionType::KeysOnly)
                            .build(),
                    )
                    .build()
                    .map_err(StoreError::backend)?,
            )
            .send()
            .await
            .map_err(sdk_error)?;
        for _ in 0..100 {
            let status = client
                .describe_table()
                .table_name(table)
                .send()
                .await
                .map_err(sdk_error)?
                .table
                .and_then(|t| t.table_status);
            if status == Some(aws_sdk_dynamodb::types::TableStatus::Active) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        client
            .update_time_to_live()
            .table_name(table)
            .time_to_live_specification(
                TimeToLiveSpecification::builder()
                    .attribute_name(TTL_ATTRIBUTE)
                    .enabled(true)
                    .build()
                    .map_err(StoreError::backend)?,
            )
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }

    /// Puts `item` unless an item with its keys exists; whether it was put.
    pub(super) async fn put_new(&self, item: Item) -> Result<bool, StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        Ok(unless_condition_failed(put)?.is_some())
    }

    pub(super) async fn get_item(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        Ok(self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?
            .item)
    }
}
