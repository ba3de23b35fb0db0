//! [`KeyStore`] on DynamoDB: key items by origin, day of publication and shard, a seen-marker
//! per key for deduplication, the seal (with each writer's fence of it), and the expiry index
//! the purge reads.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, ReturnValue, TransactWriteItem, Update};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;

use super::codec::{
    code_pk, key_from_item, key_item, key_partitions, key_pk, key_shard, key_sk, origin_of,
    partition_place, peer_of, seen_pk, seen_pk_of_sk,
};
use super::fences::Fence;
use super::{
    BUCKET_SECONDS, DynamoStore, EXPIRY_INDEX, EXPIRY_SHARDS, Item, MAX_INSERT_ATTEMPTS,
    MAX_KEYS_PER_TRANSACTION, SEAL_PK, TTL_ATTRIBUTE, b, cancellation_reasons, get_n, get_s, n, s,
    sdk_error, unless_condition_failed,
};
use crate::domain::key::RegionId;
use crate::ports::{
    CodeClaim, IfRevised, Inserted, KeyCounts, KeyCursor, KeyPage, KeyStore, NewKeys, Origin,
    PublishedRange, StoreError, StoredKey, UnixSeconds, check_claim,
};

/// The keys (`pk`, `sk`) of `item`.
fn item_key(item: &Item) -> Result<(&str, &str), StoreError> {
    Ok((get_s(item, "pk")?, get_s(item, "sk")?))
}

/// The keys of `items`.
fn item_keys(items: &[Item]) -> Result<Vec<(String, String)>, StoreError> {
    items
        .iter()
        .map(|item| item_key(item).map(|(pk, sk)| (pk.to_string(), sk.to_string())))
        .collect()
}

/// The cursor naming the key item (`pk`, `sk`).
fn cursor_of(item: &Item) -> Result<KeyCursor, StoreError> {
    let (pk, sk) = item_key(item)?;
    Ok(KeyCursor(format!("{pk} {sk}")))
}

/// The attribute that marks a key item as revised (when): a key is revised once.
const REVISED_AT: &str = "rva";

/// A stored key that a revision revises.
pub(super) struct Original {
    origin: Origin,
    peer: Option<RegionId>,
    pk: String,
    sk: String,
    publish_at: UnixSeconds,
    expires_at: UnixSeconds,
    revised: bool,
}

impl DynamoStore {
    pub(super) async fn read_seal(&self) -> Result<UnixSeconds, StoreError> {
        match self.get_item(SEAL_PK, SEAL_PK).await? {
            None => Ok(0),
            Some(item) => get_n(&item, "seal"),
        }
    }

    /// Moves the `SEAL` item forward to `through` (never back); the seal in force.
    async fn seal_item(&self, through: UnixSeconds) -> Result<UnixSeconds, StoreError> {
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

    /// The earliest publication time of a key that may be unexpired at `at`: a key arrived, and
    /// so may be published, at most T before it expires. Older partitions hold nothing to read.
    fn horizon(&self, at: UnixSeconds) -> UnixSeconds {
        at.saturating_sub(self.retention + BUCKET_SECONDS)
    }

    /// Every partition of the key items of `origins` published in `first..=last`, in the
    /// order reads go through them.
    fn partitions(origins: &[Origin], first: UnixSeconds, last: UnixSeconds) -> Vec<String> {
        origins
            .iter()
            .flat_map(|origin| {
                (first / BUCKET_SECONDS..=last / BUCKET_SECONDS)
                    .flat_map(move |day| key_partitions(*origin, day * BUCKET_SECONDS))
            })
            .collect()
    }

    /// A query of the key items of partition `pk` published in `first..=last`, for the caller
    /// to filter and run.
    fn published_query(
        &self,
        pk: &str,
        first: UnixSeconds,
        last: UnixSeconds,
    ) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND sk BETWEEN :from AND :to")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":from", s(format!("{first:020}")))
            .expression_attribute_values(":to", s(format!("{last:020}#~")))
    }

    /// Runs `job` on each item (by its keys), a few dozen at a time: an hour of a large region
    /// is tens of thousands of items. Counts the items it answers `true` for.
    pub(super) async fn on_each_item<F, Fut>(
        &self,
        items: Vec<(String, String)>,
        job: F,
    ) -> Result<u64, StoreError>
    where
        F: Fn(DynamoStore, String, String) -> Fut,
        Fut: std::future::Future<Output = Result<bool, StoreError>> + Send + 'static,
    {
        let mut counted = 0;
        let mut running = tokio::task::JoinSet::new();
        for (pk, sk) in items {
            if running.len() >= 32 {
                let done = running.join_next().await.expect("tasks run");
                counted += u64::from(done.map_err(StoreError::backend)??);
            }
            running.spawn(job(self.clone(), pk, sk));
        }
        while let Some(done) = running.join_next().await {
            counted += u64::from(done.map_err(StoreError::backend)??);
        }
        Ok(counted)
    }

    /// The stored key a revision of `key_data` revises, unless none is stored and unexpired.
    async fn original_of(
        &self,
        key_data: &[u8],
        now: UnixSeconds,
    ) -> Result<Option<Original>, StoreError> {
        let Some(marker) = self.get_item(&seen_pk(key_data), "T").await? else {
            return Ok(None);
        };
        if get_n::<UnixSeconds>(&marker, TTL_ATTRIBUTE)? <= now {
            return Ok(None);
        }
        let (pk, sk) = (get_s(&marker, "kpk")?, get_s(&marker, "ksk")?);
        let Some(item) = self.get_item(pk, sk).await? else {
            return Ok(None);
        };
        Ok(Some(Original {
            origin: origin_of(pk)?,
            peer: peer_of(&item)?,
            pk: pk.to_string(),
            sk: sk.to_string(),
            publish_at: get_n(&item, "pa")?,
            expires_at: get_n(&item, TTL_ATTRIBUTE)?,
            revised: item.contains_key(REVISED_AT),
        }))
    }

    /// The revisions of `batch` with the keys they revise; a revision of a key not stored
    /// joins `keys` as a new key.
    async fn resolve_revisions(
        &self,
        batch: &NewKeys,
        keys: &mut Vec<StoredKey>,
    ) -> Result<Vec<(StoredKey, Original)>, StoreError> {
        let mut revisions = Vec::with_capacity(batch.revisions.len());
        for revision in &batch.revisions {
            let data = revision.key.key_data;
            match self.original_of(&data, batch.now).await? {
                None if keys.iter().all(|k| k.key.key_data != data) => keys.push(StoredKey {
                    revision: false,
                    ..revision.clone()
                }),
                None => {}
                Some(original) if !revision.may_revise(original.origin, original.peer) => {}
                Some(original) if !original.revised => revisions.push((revision.clone(), original)),
                Some(_) if batch.if_revised == IfRevised::Skip => {}
                Some(_) => return Err(StoreError::AlreadyRevised(BASE64.encode(data))),
            }
        }
        Ok(revisions)
    }

    /// One attempt at storing `keys` (already free of duplicates within the batch) and the
    /// `revisions` of stored keys with the claim, behind the seal as `fence` holds it.
    pub(super) fn insert_items(
        &self,
        keys: &[StoredKey],
        revisions: &[(StoredKey, Original)],
        claim: Option<&CodeClaim>,
        fence: &Fence,
        now: UnixSeconds,
    ) -> Result<Vec<TransactWriteItem>, StoreError> {
        let seal = fence.seal;
        let mut items = Vec::with_capacity((keys.len() + revisions.len()) * 2 + 2);
        let mut earliest = u64::MAX;
        for key in keys {
            // Never behind the seal: data-prep has already read up to it.
            let publish_at = key.publish_at.max(seal + 1);
            earliest = earliest.min(publish_at);
            let data = key.key.key_data;
            let item = key_item(key, publish_at);
            let (pk, sk) = (
                key_pk(key.origin, publish_at, Some(key_shard(&data))),
                key_sk(publish_at, &data),
            );
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
        for (revision, original) in revisions {
            // Marked once: a concurrent revision of the same key cancels this transaction.
            items.push(
                TransactWriteItem::builder()
                    .update(
                        Update::builder()
                            .table_name(&self.table)
                            .key("pk", s(&original.pk))
                            .key("sk", s(&original.sk))
                            .update_expression("SET #rv = :now")
                            .condition_expression(
                                "attribute_exists(pk) AND attribute_not_exists(#rv)",
                            )
                            .expression_attribute_names("#rv", REVISED_AT)
                            .expression_attribute_values(":now", n(now))
                            .build()
                            .map_err(StoreError::backend)?,
                    )
                    .build(),
            );
            // After the seal, and after the key it revises: never in a file before it.
            let publish_at = revision
                .publish_at
                .max(seal + 1)
                .max(original.publish_at + 1);
            earliest = earliest.min(publish_at);
            let stored = StoredKey {
                expires_at: original.expires_at,
                ..revision.clone()
            };
            items.push(
                TransactWriteItem::builder()
                    .put(
                        Put::builder()
                            .table_name(&self.table)
                            .set_item(Some(key_item(&stored, publish_at)))
                            .build()
                            .map_err(StoreError::backend)?,
                    )
                    .build(),
            );
        }
        if earliest != u64::MAX {
            // This writer's fence, which sealing moves before data-prep reads.
            items.push(
                TransactWriteItem::builder()
                    .condition_check(
                        ConditionCheck::builder()
                            .table_name(&self.table)
                            .key("pk", s(fence.pk()))
                            .key("sk", s("F"))
                            .condition_expression("seal < :earliest")
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
                            .expression_attribute_values(":n", n(keys.len() + revisions.len()))
                            .expression_attribute_values(":now", n(now))
                            .build()
                            .map_err(StoreError::backend)?,
                    )
                    .build(),
            );
        }
        Ok(items)
    }

    /// Stores at most [`MAX_KEYS_PER_TRANSACTION`] keys and the claim in one transaction,
    /// behind a fence of this instance.
    pub(super) async fn insert_once(&self, batch: NewKeys) -> Result<Inserted, StoreError> {
        let mut fence = self.take_fence(batch.now).await?;
        let inserted = self.insert_fenced(batch, &mut fence).await;
        self.return_fence(fence);
        inserted
    }

    async fn insert_fenced(
        &self,
        batch: NewKeys,
        fence: &mut Fence,
    ) -> Result<Inserted, StoreError> {
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
            .iter()
            .filter(|k| seen.insert(k.key.key_data))
            .cloned()
            .collect();
        let mut revisions = self.resolve_revisions(&batch, &mut keys).await?;
        for _ in 0..MAX_INSERT_ATTEMPTS {
            if keys.is_empty() && revisions.is_empty() && claim.is_none() {
                return Ok(Inserted::Stored(0));
            }
            let items = self.insert_items(&keys, &revisions, claim, fence, now)?;
            let outcome = self
                .client
                .transact_write_items()
                .set_transact_items(Some(items))
                .send()
                .await;
            let e = match outcome {
                Ok(_) => return Ok(Inserted::Stored((keys.len() + revisions.len()) as u32)),
                Err(e) => e,
            };
            let Some(reasons) = cancellation_reasons(&e) else {
                return Err(sdk_error(e));
            };
            let failed = |i: usize| reasons.get(i).cloned().flatten();
            let checks = |i: usize| failed(i).as_deref() == Some("ConditionalCheckFailed");
            // Items: key and seen-marker per key, the revised key and its revision per
            // revision, then the fence check, then the code.
            let revisions_index = keys.len() * 2;
            let fence_index = revisions_index + revisions.len() * 2;
            let writes = !keys.is_empty() || !revisions.is_empty();
            let code_index = if writes { fence_index + 1 } else { 0 };
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
            if (0..revisions.len()).any(|i| checks(revisions_index + i * 2)) {
                // A concurrent revision (or purge) of a key revised here: look again.
                keys.retain(|k| batch.keys.iter().any(|b| b.key.key_data == k.key.key_data));
                revisions = self.resolve_revisions(&batch, &mut keys).await?;
                continue;
            }
            if writes && checks(fence_index) {
                // The seal moved (place the keys after it), or the fence is gone.
                if !self.reload_fence(fence).await? {
                    *fence = self.take_fence(now).await?;
                }
                continue;
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
    pub(super) async fn purge_key(
        &self,
        pk: String,
        sk: String,
        now: UnixSeconds,
    ) -> Result<bool, StoreError> {
        let marker_pk = seen_pk_of_sk(&sk);
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
            .key("pk", s(marker_pk))
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

#[async_trait]
impl KeyStore for DynamoStore {
    async fn insert(&self, batch: NewKeys) -> Result<Inserted, StoreError> {
        let entries = batch.keys.len() + batch.revisions.len();
        if entries <= MAX_KEYS_PER_TRANSACTION {
            return self.insert_once(batch).await;
        }
        if batch.claim.is_some() {
            return Err(StoreError::backend(format!(
                "{entries} keys cannot be stored with a code in one transaction (at most {})",
                MAX_KEYS_PER_TRANSACTION
            )));
        }
        // Keys pulled from peers: each slice is atomic, and a repeated slice is deduplicated
        // (a revision stored before is skipped, as a peer's revisions are).
        let mut stored = 0;
        let slices = batch
            .keys
            .chunks(MAX_KEYS_PER_TRANSACTION)
            .map(|keys| (keys, &[][..]))
            .chain(
                batch
                    .revisions
                    .chunks(MAX_KEYS_PER_TRANSACTION)
                    .map(|revisions| (&[][..], revisions)),
            );
        for (keys, revisions) in slices {
            let part = NewKeys {
                keys: keys.to_vec(),
                revisions: revisions.to_vec(),
                if_revised: batch.if_revised,
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
        let seal = self.seal_item(through).await?;
        // Every writer's fence follows; a fence registered meanwhile follows by itself. Fences
        // past their time (by the seal's clock, which is data-prep's) are removed.
        self.seal_fences(seal, through).await?;
        Ok(seal)
    }

    async fn read_published(
        &self,
        range: PublishedRange,
        from: Option<&KeyCursor>,
        max_keys: usize,
    ) -> Result<KeyPage, StoreError> {
        let mut page = KeyPage::default();
        if range.through <= range.after {
            return Ok(page);
        }
        let (first, last) = (
            (range.after + 1).max(self.horizon(range.now)),
            range.through,
        );
        if first > last {
            return Ok(page);
        }
        // Partitions in their order, each in the order of its sort key; a cursor names the
        // last item taken.
        let resume = match from {
            Some(cursor) => {
                let (pk, sk) = cursor.0.split_once(' ').ok_or_else(|| {
                    StoreError::backend(format!("{:?} is not a place in the table", cursor.0))
                })?;
                Some((partition_place(pk)?, pk, sk))
            }
            None => None,
        };
        for pk in Self::partitions(&[Origin::Local, Origin::Remote], first, last) {
            let mut start = None;
            if let Some((at, resume_pk, sk)) = resume {
                match partition_place(&pk)?.cmp(&at) {
                    std::cmp::Ordering::Less => continue,
                    std::cmp::Ordering::Equal => {
                        start = Some(Item::from([
                            ("pk".to_string(), s(resume_pk)),
                            ("sk".to_string(), s(sk)),
                        ]))
                    }
                    std::cmp::Ordering::Greater => {}
                }
            }
            let mut pages = self
                .published_query(&pk, first, last)
                .filter_expression("#ttl > :now")
                .expression_attribute_names("#ttl", TTL_ATTRIBUTE)
                .expression_attribute_values(":now", n(range.now))
                .set_exclusive_start_key(start)
                .into_paginator()
                .items()
                .send();
            while let Some(item) = pages.next().await {
                let item = item.map_err(sdk_error)?;
                if page.keys.len() == max_keys {
                    return Ok(page);
                }
                page.keys.push(key_from_item(&item)?);
                page.next = Some(cursor_of(&item)?);
            }
        }
        page.next = None;
        Ok(page)
    }

    async fn forget_regions(
        &self,
        after: UnixSeconds,
        through: UnixSeconds,
    ) -> Result<u64, StoreError> {
        // Keys published a retention period before `through` have expired: not worth reading.
        let (first, last) = ((after + 1).max(self.horizon(through)), through);
        if first > last {
            return Ok(0);
        }
        let mut forgotten = 0;
        // Only local keys are declared for regions. A page of items at a time.
        for pk in Self::partitions(&[Origin::Local], first, last) {
            let mut pages = self
                .published_query(&pk, first, last)
                .filter_expression("attribute_exists(rg)")
                .projection_expression("pk, sk")
                .into_paginator()
                .send();
            while let Some(found) = pages.next().await {
                let declared = item_keys(found.map_err(sdk_error)?.items())?;
                forgotten += declared.len() as u64;
                self.on_each_item(declared, |store, pk, sk| async move {
                    let removed = store
                        .client
                        .update_item()
                        .table_name(&store.table)
                        .key("pk", s(pk))
                        .key("sk", s(sk))
                        .update_expression("REMOVE rg")
                        // A key purged meanwhile is not written back.
                        .condition_expression("attribute_exists(pk)")
                        .send()
                        .await;
                    unless_condition_failed(removed).map(|_| true)
                })
                .await?;
            }
        }
        Ok(forgotten)
    }

    async fn purge_expired(&self, now: UnixSeconds) -> Result<u64, StoreError> {
        let mut purged = 0;
        for shard in 0..EXPIRY_SHARDS {
            // A page of expired items at a time.
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
                .send();
            while let Some(found) = pages.next().await {
                let expired = item_keys(found.map_err(sdk_error)?.items())?;
                purged += self
                    .on_each_item(expired, move |store, pk, sk| async move {
                        store.purge_key(pk, sk, now).await
                    })
                    .await?;
            }
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
            // A revision is a second item of a key counted already.
            .filter_expression("begins_with(pk, :k) AND attribute_not_exists(rvn)")
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
