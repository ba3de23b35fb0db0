//! [`DynamoStore`]: keys, one-time codes, attempt counters and data-prep's publication state in
//! one DynamoDB table (the design is in `docs/deploy.md`). Every promise of the ports is kept by
//! a conditional write or a transaction, never by a read followed by an unconditional write.
//!
//! | item | `pk` | `sk` | other attributes |
//! |---|---|---|---|
//! | key | `K#<L or R>#<day of publish_at>` | `<publish_at, 20 digits>#<key hex>` | key fields, `ttl`, `xs` |
//! | key seen (dedup) | `T#<key hex>` | `T` | `kpk`, `ksk` (the key item), `ttl` |
//! | seal | `SEAL` | `SEAL` | `seal` |
//! | one-time code | `C#<SHA-256 hex>` | `C` | `ia`, `ea`, `ub` (upload digest once used), `n`, `ttl` |
//! | attempts | `A#<client>#<window start>` | `A` | `cnt`, `ttl` |
//! | publication head | `PUB` | `HEAD` | `ver`, `parts` |
//! | publication part | `PUB` | `PART#<ver, 20 digits>#<i, 4 digits>` | `data` (deflated JSON) |
//!
//! `ttl` is the table's TTL attribute (Unix seconds). The sparse index `expiry` (`xs`, `ttl`;
//! keys only) holds key items alone, spread over [`EXPIRY_SHARDS`] partitions, so the purge reads
//! expired keys and nothing else.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read as _, Write as _};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;
use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, ConditionCheck, Delete, GlobalSecondaryIndex,
    KeySchemaElement, KeyType, Projection, ProjectionType, Put, ReturnValue, ScalarAttributeType,
    TimeToLiveSpecification, TransactWriteItem, Update,
};

use crate::domain::key::{DiagnosisKey, KEY_LEN, ReportType};
use crate::domain::publication::Publication;
use crate::ports::{
    CodeClaim, CodeRecord, CodeStore, CodeUse, Inserted, KeyCounts, KeyStore, NewKeys, Origin,
    PublicationStore, StoreError, StoredKey, UnixSeconds, check_claim, pack_regions,
    unpack_regions,
};

/// The name of the TTL attribute, on every item that should disappear by itself.
pub const TTL_ATTRIBUTE: &str = "ttl";
/// The sparse index over key items by expiry.
pub const EXPIRY_INDEX: &str = "expiry";
/// Partitions of the expiry index (by the first byte of the key).
pub const EXPIRY_SHARDS: u8 = 16;
/// Width of a key partition, in seconds of `publish_at`: one day.
pub const BUCKET_SECONDS: u64 = 86_400;
/// Most keys one transaction stores: two items each, plus the seal check and the code, within
/// DynamoDB's 100 items per transaction.
pub const MAX_KEYS_PER_TRANSACTION: usize = 48;
/// Largest piece of the publication state in one item (DynamoDB items hold at most 400 KB).
const PART_BYTES: usize = 350_000;
/// Most pieces of the publication state (a transaction carries at most 4 MB).
const MAX_PARTS: usize = 10;
/// How long code and attempt items outlive their use.
const LINGER: u64 = 86_400;
/// How often an insert retries after losing a race (a moved seal, a concurrent transaction).
const MAX_INSERT_ATTEMPTS: usize = 10;

const SEAL_PK: &str = "SEAL";
const PUB_PK: &str = "PUB";
const HEAD_SK: &str = "HEAD";

/// The DynamoDB adapter of [`KeyStore`], [`CodeStore`] and [`PublicationStore`].
#[derive(Clone, Debug)]
pub struct DynamoStore {
    client: Client,
    table: String,
    /// The retention period T: no key outlives its publication time by more.
    retention: u64,
}

pub(super) fn sdk_error<E: std::error::Error>(e: E) -> StoreError {
    StoreError::Backend(DisplayErrorContext(e).to_string())
}

fn s(value: impl Into<String>) -> AttributeValue {
    AttributeValue::S(value.into())
}

fn n(value: impl std::fmt::Display) -> AttributeValue {
    AttributeValue::N(value.to_string())
}

fn b(value: impl Into<Vec<u8>>) -> AttributeValue {
    AttributeValue::B(Blob::new(value))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    text.len()
        .is_multiple_of(2)
        .then(|| {
            (0..text.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
                .collect()
        })
        .flatten()
}

type Item = HashMap<String, AttributeValue>;

fn get_n<T: std::str::FromStr>(item: &Item, name: &str) -> Result<T, StoreError> {
    item.get(name)
        .and_then(|v| v.as_n().ok())
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| StoreError::backend(format!("item lacks the number {name}")))
}

fn get_s<'a>(item: &'a Item, name: &str) -> Result<&'a str, StoreError> {
    item.get(name)
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        .ok_or_else(|| StoreError::backend(format!("item lacks the string {name}")))
}

fn get_b<'a>(item: &'a Item, name: &str) -> Option<&'a [u8]> {
    item.get(name)
        .and_then(|v| v.as_b().ok())
        .map(|b| b.as_ref())
}

fn origin_tag(origin: Origin) -> &'static str {
    match origin {
        Origin::Local => "L",
        Origin::Remote => "R",
    }
}

fn key_pk(origin: Origin, publish_at: UnixSeconds) -> String {
    format!("K#{}#{}", origin_tag(origin), publish_at / BUCKET_SECONDS)
}

fn key_sk(publish_at: UnixSeconds, key_data: &[u8]) -> String {
    format!("{publish_at:020}#{}", hex(key_data))
}

fn seen_pk(key_data: &[u8]) -> String {
    format!("T#{}", hex(key_data))
}

fn code_pk(hash: &[u8; 32]) -> String {
    format!("C#{}", hex(hash))
}

fn part_sk(version: u64, part: usize) -> String {
    format!("PART#{version:020}#{part:04}")
}

/// Whether a failed transaction was cancelled, and why each of its items failed (`None` for
/// items that did not).
fn cancellation_reasons(e: &SdkError<TransactWriteItemsError>) -> Option<Vec<Option<String>>> {
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
fn unless_condition_failed<T, E, R>(
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

    async fn get_item(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
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

    async fn read_seal(&self) -> Result<UnixSeconds, StoreError> {
        match self.get_item(SEAL_PK, SEAL_PK).await? {
            None => Ok(0),
            Some(item) => get_n(&item, "seal"),
        }
    }

    async fn read_code(
        &self,
        hash: &[u8; 32],
        now: UnixSeconds,
    ) -> Result<Option<CodeUse>, StoreError> {
        let Some(item) = self.get_item(&code_pk(hash), "C").await? else {
            return Ok(None);
        };
        // TTL deletes lazily: an item past its TTL is gone as far as the store is concerned.
        if get_n::<u64>(&item, TTL_ATTRIBUTE)? <= now {
            return Ok(None);
        }
        Ok(Some(CodeUse {
            expires_at: get_n(&item, "ea")?,
            used_by: get_b(&item, "ub").map(<[u8]>::to_vec),
            inserted: item
                .get("n")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }))
    }

    /// One attempt at storing `keys` (already free of duplicates within the batch) with the
    /// claim, behind `seal`.
    fn insert_items(
        &self,
        keys: &[StoredKey],
        claim: Option<&CodeClaim>,
        seal: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let mut items = Vec::with_capacity(keys.len() * 2 + 2);
        let mut earliest = u64::MAX;
        for key in keys {
            // Never behind the seal: data-prep has already read up to it.
            let publish_at = key.publish_at.max(seal + 1);
            earliest = earliest.min(publish_at);
            let data = key.key.key_data;
            let pk = key_pk(key.origin, publish_at);
            let sk = key_sk(publish_at, &data);
            let mut item = Item::from([
                ("pk".into(), s(&pk)),
                ("sk".into(), s(&sk)),
                ("kd".into(), b(data.to_vec())),
                ("rs".into(), n(key.key.rolling_start)),
                ("rp".into(), n(key.key.rolling_period)),
                ("tr".into(), n(key.key.transmission_risk)),
                ("rt".into(), n(key.key.report_type as i32)),
                ("pa".into(), n(publish_at)),
                (TTL_ATTRIBUTE.into(), n(key.expires_at)),
                ("xs".into(), s(format!("X#{}", data[0] % EXPIRY_SHARDS))),
            ]);
            if let Some(days) = key.key.days_since_onset {
                item.insert("dso".into(), n(days));
            }
            if !key.regions.is_empty() {
                item.insert("rg".into(), s(pack_regions(&key.regions)));
            }
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(item))
                            .build()
                            .map_err(StoreError::backend)?,
                    )
                    .build(),
            );
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .item("pk", s(seen_pk(&data)))
                            .item("sk", s("T"))
                            .item("kpk", s(pk))
                            .item("ksk", s(sk))
                            .item(TTL_ATTRIBUTE, n(key.expires_at))
                            // A key is new unless a key with its data is stored and unexpired.
                            .condition_expression("attribute_not_exists(pk) OR #ttl <= :now")
                            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                            .expression_attribute_values(":now", n(now))
                            .build()
                            .map_err(StoreError::backend)?,
                    )
                    .build(),
            );
        }
        if !keys.is_empty() {
            items.push(
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.table)
                            .key("pk", s(SEAL_PK))
                            .key("sk", s(SEAL_PK))
                            .condition_expression("attribute_not_exists(seal) OR seal < :earliest")
                            .expression_attribute_values(":earliest", n(earliest))
                            .build()
                            .map_err(StoreError::backend)?,
                    )
                    .build(),
            );
        }
        if let Some(claim) = claim {
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .key("pk", s(code_pk(&claim.code_hash)))
                            .key("sk", s("C"))
                            .update_expression("SET ub = :digest, #n = :n")
                            .expression_attribute_names("#n", "n")
                            .condition_expression(
                                "attribute_exists(pk) AND attribute_not_exists(ub) AND ea > :now",
                            )
                            .expression_attribute_values(":digest", b(claim.upload_digest.to_vec()))
                            .expression_attribute_values(":n", n(keys.len()))
                            .expression_attribute_values(":now", n(now))
                            .build()
                            .map_err(StoreError::backend)?,
                    )
                    .build(),
            );
        }
        Ok(items)
    }

    /// Stores at most [`MAX_KEYS_PER_TRANSACTION`] keys and the claim in one transaction.
    async fn insert_once(&self, batch: NewKeys) -> Result<Inserted, StoreError> {
        let now = batch.now;
        let claim = batch.claim.as_ref();
        if let Some(claim) = claim
            && let Some(n) = check_claim(
                self.read_code(&claim.code_hash, now).await?.as_ref(),
                claim,
                now,
            )?
        {
            return Ok(Inserted::Replayed(n));
        }
        // Keys repeated within the batch are stored once.
        let mut seen = BTreeSet::new();
        let mut keys: Vec<StoredKey> = batch
            .keys
            .into_iter()
            .filter(|k| seen.insert(k.key.key_data))
            .collect();
        for _ in 0..MAX_INSERT_ATTEMPTS {
            if keys.is_empty() && claim.is_none() {
                return Ok(Inserted::Stored(0));
            }
            let seal = self.read_seal().await?;
            let items = self.insert_items(&keys, claim, seal, now)?;
            let outcome = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let e = match outcome {
                Ok(_) => return Ok(Inserted::Stored(keys.len() as u32)),
                Err(e) => e,
            };
            let Some(reasons) = cancellation_reasons(&e) else {
                return Err(sdk_error(e));
            };
            let failed = |i: usize| reasons.get(i).cloned().flatten();
            let checks = |i: usize| failed(i).as_deref() == Some("ConditionalCheckFailed");
            // Items: key and seen-marker per key, then the seal check, then the code.
            let seal_index = keys.len() * 2;
            let code_index = if keys.is_empty() { 0 } else { seal_index + 1 };
            if let Some(claim) = claim.filter(|_| checks(code_index)) {
                // Another upload consumed the code in the meantime (or this same one did).
                match check_claim(
                    self.read_code(&claim.code_hash, now).await?.as_ref(),
                    claim,
                    now,
                )? {
                    Some(n) => return Ok(Inserted::Replayed(n)),
                    None => continue,
                }
            }
            let known: BTreeSet<usize> = (0..keys.len()).filter(|i| checks(i * 2 + 1)).collect();
            if !known.is_empty() {
                let mut i = 0;
                keys.retain(|_| {
                    i += 1;
                    !known.contains(&(i - 1))
                });
                continue;
            }
            if checks(seal_index) {
                continue; // the seal moved: place the keys after it
            }
            // A conflict with a concurrent transaction on one of the items: try again.
            tracing::debug!(?reasons, "key insert transaction cancelled; retrying");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Err(StoreError::Conflict(
            "key insert kept losing races with concurrent writers".into(),
        ))
    }

    /// Deletes one expired key item and its seen-marker; whether the key item was there.
    async fn purge_key(
        &self,
        pk: String,
        sk: String,
        now: UnixSeconds,
    ) -> Result<bool, StoreError> {
        let hex_data = sk
            .split_once('#')
            .map(|(_, h)| h.to_string())
            .unwrap_or_default();
        let deleted = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(pk))
            .key("sk", s(sk))
            .condition_expression("#ttl <= :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        let existed = unless_condition_failed(deleted)?.is_some_and(|out| out.attributes.is_some());
        // The seen-marker goes too, unless a newer upload of the same key data replaced it.
        let marker = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("pk", s(format!("T#{hex_data}")))
            .key("sk", s("T"))
            .condition_expression("#ttl <= :now")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":now", n(now))
            .send()
            .await;
        unless_condition_failed(marker)?;
        Ok(existed)
    }
}

fn key_from_item(item: &Item) -> Result<StoredKey, StoreError> {
    let pk = get_s(item, "pk")?;
    let origin = match pk.split('#').nth(1) {
        Some("L") => Origin::Local,
        Some("R") => Origin::Remote,
        _ => {
            return Err(StoreError::backend(format!(
                "{pk:?} is not a key partition"
            )));
        }
    };
    let key_data: [u8; KEY_LEN] = get_b(item, "kd")
        .and_then(|d| d.try_into().ok())
        .ok_or_else(|| StoreError::backend("key item without 16 bytes of key data"))?;
    let regions = match item.get("rg").and_then(|v| v.as_s().ok()) {
        None => Vec::new(),
        Some(packed) => unpack_regions(packed)?,
    };
    Ok(StoredKey {
        key: DiagnosisKey {
            key_data,
            rolling_start: get_n(item, "rs")?,
            rolling_period: get_n(item, "rp")?,
            transmission_risk: get_n(item, "tr")?,
            report_type: ReportType::from_i32(get_n(item, "rt")?),
            days_since_onset: item
                .get("dso")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok()),
        },
        origin,
        regions,
        publish_at: get_n(item, "pa")?,
        expires_at: get_n(item, TTL_ATTRIBUTE)?,
    })
}

#[async_trait]
impl KeyStore for DynamoStore {
    async fn insert(&self, batch: NewKeys) -> Result<Inserted, StoreError> {
        if batch.keys.len() <= MAX_KEYS_PER_TRANSACTION {
            return self.insert_once(batch).await;
        }
        if batch.claim.is_some() {
            return Err(StoreError::backend(format!(
                "{} keys cannot be stored with a code in one transaction (at most {})",
                batch.keys.len(),
                MAX_KEYS_PER_TRANSACTION
            )));
        }
        // Keys pulled from peers: each slice is atomic, and a repeated slice is deduplicated.
        let mut stored = 0;
        for slice in batch.keys.chunks(MAX_KEYS_PER_TRANSACTION) {
            let part = NewKeys {
                keys: slice.to_vec(),
                claim: None,
                now: batch.now,
            };
            if let Inserted::Stored(n) = self.insert_once(part).await? {
                stored += n;
            }
        }
        Ok(Inserted::Stored(stored))
    }

    async fn seal(&self, through: UnixSeconds) -> Result<UnixSeconds, StoreError> {
        let moved = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(SEAL_PK))
            .key("sk", s(SEAL_PK))
            .update_expression("SET seal = :through")
            .condition_expression("attribute_not_exists(seal) OR seal < :through")
            .expression_attribute_values(":through", n(through))
            .send()
            .await;
        match unless_condition_failed(moved)? {
            Some(_) => Ok(through),
            // Already further: the seal never moves back.
            None => self.read_seal().await,
        }
    }

    async fn published_between(
        &self,
        after: UnixSeconds,
        through: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Vec<StoredKey>, StoreError> {
        let mut keys = Vec::new();
        if through <= after {
            return Ok(keys);
        }
        // A key unexpired at `now` arrived, and so may be published, after `now - T`: older
        // partitions hold nothing to read.
        let horizon = now.saturating_sub(self.retention + BUCKET_SECONDS);
        let (first, last) = ((after + 1).max(horizon), through);
        if first > last {
            return Ok(keys);
        }
        for origin in [Origin::Local, Origin::Remote] {
            for bucket in first / BUCKET_SECONDS..=last / BUCKET_SECONDS {
                let mut pages = self
                    .client
                    .query()
                    .table_name(&self.table)
                    .consistent_read(true)
                    .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
                    .filter_expression("#ttl > :now")
                    .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                    .expression_attribute_values(":pk", s(key_pk(origin, bucket * BUCKET_SECONDS)))
                    .expression_attribute_values(":from", s(format!("{first:020}")))
                    .expression_attribute_values(":to", s(format!("{last:020}#~")))
                    .expression_attribute_values(":now", n(now))
                    .into_paginator()
                    .items()
                    .send();
                while let Some(item) = pages.next().await {
                    let key = key_from_item(&item.map_err(sdk_error)?)?;
                    if key.expires_at > now {
                        keys.push(key);
                    }
                }
            }
        }
        Ok(keys)
    }

    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64, StoreError> {
        let mut expired = Vec::new();
        for shard in 0..EXPIRY_SHARDS {
            let mut pages = self
                .client
                .query()
                .table_name(&self.table)
                .index_name(EXPIRY_INDEX)
                .key_condition_expression("xs = :shard AND #ttl <= :now")
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":shard", s(format!("X#{shard}")))
                .expression_attribute_values(":now", n(now))
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(sdk_error)?;
                expired.push((
                    get_s(&item, "pk")?.to_string(),
                    get_s(&item, "sk")?.to_string(),
                ));
            }
        }
        // Deletes run a few dozen at a time: an hour of expired keys at a large region is tens
        // of thousands of items.
        let mut purged = 0;
        let mut running = tokio::task::JoinSet::new();
        for (pk, sk) in expired {
            if running.len() >= 32 {
                purged += u64::from(
                    running
                        .join_next()
                        .await
                        .expect("tasks run")
                        .map_err(StoreError::backend)??,
                );
            }
            let store = self.clone();
            running.spawn(async move { store.purge_key(pk, sk, now).await });
        }
        while let Some(done) = running.join_next().await {
            purged += u64::from(done.map_err(StoreError::backend)??);
        }
        Ok(purged)
    }

    async fn count(&self) -> Result<KeyCounts, StoreError> {
        let mut counts = KeyCounts::default();
        let mut pages = self
            .client
            .scan()
            .table_name(&self.table)
            .consistent_read(true)
            .filter_expression("begins_with(pk, :k)")
            .expression_attribute_values(":k", s("K#"))
            .projection_expression("pk")
            .into_paginator()
            .items()
            .send();
        while let Some(item) = pages.next().await {
            let item = item.map_err(sdk_error)?;
            match get_s(&item, "pk")?.split('#').nth(1) {
                Some("R") => counts.remote += 1,
                _ => counts.local += 1,
            }
        }
        Ok(counts)
    }
}

#[async_trait]
impl CodeStore for DynamoStore {
    async fn add_code(&self, code: CodeRecord) -> Result<(), StoreError> {
        let put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(code_pk(&code.code_hash)))
            .item("sk", s("C"))
            .item("ia", n(code.issued_at))
            .item("ea", n(code.expires_at))
            .item(TTL_ATTRIBUTE, n(code.expires_at + LINGER))
            .condition_expression("attribute_not_exists(pk)")
            .send()
            .await;
        match unless_condition_failed(put)? {
            Some(_) => Ok(()),
            None => Err(StoreError::Conflict("a code with this value exists".into())),
        }
    }

    async fn count_attempt(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<u32, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("A#{client}#{window_start}")))
            .key("sk", s("A"))
            .update_expression("ADD cnt :one SET #ttl = :ttl")
            .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
            .expression_attribute_values(":one", n(1))
            .expression_attribute_values(":ttl", n(window_start + LINGER))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .map_err(sdk_error)?;
        get_n(&out.attributes.unwrap_or_default(), "cnt")
    }

    async fn forgive_attempt(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<(), StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(format!("A#{client}#{window_start}")))
            .key("sk", s("A"))
            .update_expression("ADD cnt :minus_one")
            .condition_expression("cnt > :zero")
            .expression_attribute_values(":minus_one", n(-1))
            .expression_attribute_values(":zero", n(0))
            .send()
            .await;
        // Nothing to forgive is not an error.
        unless_condition_failed(out)?;
        Ok(())
    }

    async fn check_code(&self, claim: &CodeClaim, now: UnixSeconds) -> Result<(), StoreError> {
        check_claim(
            self.read_code(&claim.code_hash, now).await?.as_ref(),
            claim,
            now,
        )?;
        Ok(())
    }
}

fn deflate(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut encoder =
        flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).map_err(StoreError::backend)?;
    encoder.finish().map_err(StoreError::backend)
}

fn inflate(bytes: &[u8]) -> Result<Vec<u8>, StoreError> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(bytes)
        .read_to_end(&mut out)
        .map_err(StoreError::backend)?;
    Ok(out)
}

impl DynamoStore {
    /// The head of the publication state: its version and how many parts it has.
    async fn publication_head(&self) -> Result<(u64, usize), StoreError> {
        match self.get_item(PUB_PK, HEAD_SK).await? {
            None => Ok((0, 0)),
            Some(item) => Ok((get_n(&item, "ver")?, get_n(&item, "parts")?)),
        }
    }
}

#[async_trait]
impl PublicationStore for DynamoStore {
    async fn load(&self) -> Result<(u64, Publication), StoreError> {
        // Parts are written once per version and deleted by the next save: a load that races
        // a save finds a part gone and starts over from the new head.
        'attempt: for _ in 0..5 {
            let (version, parts) = self.publication_head().await?;
            if version == 0 {
                return Ok((0, Publication::default()));
            }
            let mut deflated = Vec::new();
            for part in 0..parts {
                match self.get_item(PUB_PK, &part_sk(version, part)).await? {
                    Some(item) => deflated.extend_from_slice(
                        get_b(&item, "data")
                            .ok_or_else(|| StoreError::backend("empty state part"))?,
                    ),
                    None => continue 'attempt,
                }
            }
            let json = inflate(&deflated)?;
            return Ok((
                version,
                serde_json::from_slice(&json).map_err(StoreError::backend)?,
            ));
        }
        Err(StoreError::Conflict(
            "the publication state kept changing while it was read".into(),
        ))
    }

    async fn save(&self, version: u64, state: &Publication) -> Result<(), StoreError> {
        let deflated = deflate(&serde_json::to_vec(state).map_err(StoreError::backend)?)?;
        let parts: Vec<&[u8]> = deflated.chunks(PART_BYTES).collect();
        if parts.len() > MAX_PARTS {
            return Err(StoreError::backend(format!(
                "the publication state is {} bytes deflated, more than {} parts of {PART_BYTES}",
                deflated.len(),
                MAX_PARTS
            )));
        }
        let conflict = |current: u64| {
            StoreError::Conflict(format!(
                "publication state is at version {current}, not {version}"
            ))
        };
        let (current, old_parts) = self.publication_head().await?;
        if current != version {
            return Err(conflict(current));
        }
        let mut head = Put::builder()
            .table_name(&self.table)
            .item("pk", s(PUB_PK))
            .item("sk", s(HEAD_SK))
            .item("ver", n(version + 1))
            .item("parts", n(parts.len()));
        head = if version == 0 {
            head.condition_expression("attribute_not_exists(pk)")
        } else {
            head.condition_expression("ver = :version")
                .expression_attribute_values(":version", n(version))
        };
        let mut items = vec![
            TransactWriteItem::builder()
                .put(head.build().map_err(StoreError::backend)?)
                .build(),
        ];
        for (i, part) in parts.iter().enumerate() {
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .item("pk", s(PUB_PK))
                            .item("sk", s(part_sk(version + 1, i)))
                            .item("data", b(part.to_vec()))
                            .build()
                            .map_err(StoreError::backend)?,
                    )
                    .build(),
            );
        }
        for i in 0..old_parts {
            items.push(
                TransactWriteItem::builder()
                    .delete(
                        Delete::builder()
                            .table_name(&self.table)
                            .key("pk", s(PUB_PK))
                            .key("sk", s(part_sk(version, i)))
                            .build()
                            .map_err(StoreError::backend)?,
                    )
                    .build(),
            );
        }
        let outcome = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        match outcome {
            Ok(_) => Ok(()),
            Err(e) => match cancellation_reasons(&e) {
                // The head changed under us, or a concurrent save holds it: another run won.
                Some(reasons) => Err(StoreError::Conflict(format!(
                    "publication state changed during the save ({reasons:?})"
                ))),
                None => Err(sdk_error(e)),
            },
        }
    }
}

/// Whether `text` is a valid hex rendering of 16 bytes of key data (for tooling that reads
/// the table's `T#` items).
pub fn parse_key_hex(text: &str) -> Option<[u8; KEY_LEN]> {
    unhex(text)?.try_into().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sort_keys_order_by_publication_time_then_key() {
        let a = key_sk(99, &[0xff; 16]);
        let b = key_sk(100, &[0; 16]);
        assert!(a < b);
        assert!(b <= format!("{:020}#~", 100));
        assert!(b >= format!("{:020}", 100));
        assert_eq!(parse_key_hex(&hex(&[7; 16])), Some([7; 16]));
        assert_eq!(key_pk(Origin::Remote, 86_400 * 3 + 5), "K#R#3");
    }
}
