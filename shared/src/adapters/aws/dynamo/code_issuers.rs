//! [`CodeIssuerStore`] on DynamoDB: the issuers in one partition (`ISSUER`, by name), and an
//! item per code an issuer issued (`IB#<issuer>`, by time of issue), written with the code in
//! one transaction by [`add_code`](crate::ports::CodeStore::add_code).

use async_trait::async_trait;

use super::codec::{diagnosis_of, issued_pk, issued_sk, issuer_sk, unhex};
use super::{
    DynamoStore, ISSUER_PK, Item, TTL_ATTRIBUTE, b, get_b, get_n, get_s, n, optional_n, s,
    sdk_error, unless_condition_failed,
};
use crate::ports::{
    CodeIssuer, CodeIssuerStore, CodeStatus, IssuedCodeStatus, StoreError, UnixSeconds,
};

fn issuer_of(item: &Item) -> Result<CodeIssuer, StoreError> {
    let sk = get_s(item, "sk")?;
    let name = sk
        .strip_prefix("I#")
        .ok_or_else(|| StoreError::backend(format!("{sk:?} is not a code issuer")))?;
    Ok(CodeIssuer {
        name: name.to_string(),
        token_hash: get_b(item, "th")
            .and_then(|hash| hash.try_into().ok())
            .ok_or_else(|| StoreError::backend(format!("issuer {name:?} has a bad token hash")))?,
        created_at: get_n(item, "ca")?,
        revoked_at: optional_n(item, "ra")?,
    })
}

impl DynamoStore {
    /// Every item of partition `pk` whose sort key is at least `from`, in order.
    async fn query_from(&self, pk: &str, from: &str) -> Result<Vec<Item>, StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk AND sk >= :from")
            .expression_attribute_values(":pk", s(pk))
            .expression_attribute_values(":from", s(from))
            .into_paginator()
            .items()
            .send();
        let mut items = Vec::new();
        while let Some(item) = pages.next().await {
            items.push(item.map_err(sdk_error)?);
        }
        Ok(items)
    }
}

#[async_trait]
impl CodeIssuerStore for DynamoStore {
    async fn add_issuer(&self, issuer: CodeIssuer) -> Result<(), StoreError> {
        let mut item = Item::from([
            ("pk".to_string(), s(ISSUER_PK)),
            ("sk".to_string(), s(issuer_sk(&issuer.name))),
            ("th".to_string(), b(issuer.token_hash.to_vec())),
            ("ca".to_string(), n(issuer.created_at)),
        ]);
        if let Some(at) = issuer.revoked_at {
            item.insert("ra".to_string(), n(at));
        }
        match self.put_new(item).await? {
            true => Ok(()),
            false => Err(StoreError::Conflict(format!(
                "a code issuer named {:?} exists",
                issuer.name
            ))),
        }
    }

    async fn issuers(&self) -> Result<Vec<CodeIssuer>, StoreError> {
        self.query_from(ISSUER_PK, "I#")
            .await?
            .iter()
            .map(issuer_of)
            .collect()
    }

    async fn revoke_issuer(&self, name: &str, at: UnixSeconds) -> Result<bool, StoreError> {
        // A revoked issuer keeps the time of its first revocation.
        let update = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(ISSUER_PK))
            .key("sk", s(issuer_sk(name)))
            .update_expression("SET ra = if_not_exists(ra, :at)")
            .condition_expression("attribute_exists(pk)")
            .expression_attribute_values(":at", n(at))
            .send()
            .await;
        Ok(unless_condition_failed(update)?.is_some())
    }

    async fn codes_issued_by(
        &self,
        issuer: &str,
        since: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<Vec<IssuedCodeStatus>, StoreError> {
        let items = self
            .query_from(&issued_pk(issuer), &format!("{since:020}"))
            .await?;
        let mut list = Vec::with_capacity(items.len());
        for item in items {
            let sk = get_s(&item, "sk")?;
            let (issued_at, code_hash) = sk
                .split_once('#')
                .and_then(|(at, hash)| Some((at.parse().ok()?, unhex(hash)?.try_into().ok()?)))
                .ok_or_else(|| StoreError::backend(format!("{sk:?} is not an issued code")))?;
            let expires_at = get_n(&item, "ea")?;
            // A code past its item's lifetime had expired unused, or was used by an upload
            // long ago: either way it can authorise nothing.
            let used = self
                .read_code(&code_hash, now)
                .await?
                .is_some_and(|code| code.used_by.is_some());
            list.push(IssuedCodeStatus {
                issued_at,
                expires_at,
                diagnosis: diagnosis_of(&item)?,
                status: CodeStatus::of(used, expires_at, now),
            });
        }
        Ok(list)
    }
}

/// The item that records that `issuer` issued the code `code_hash`: beside the code's own
/// item, in the same transaction.
pub(super) fn issued_item(
    issuer: &str,
    issued_at: UnixSeconds,
    code_hash: &[u8; 32],
    code_item: &Item,
) -> Item {
    let mut item: Item = code_item
        .iter()
        .filter(|(name, _)| matches!(name.as_str(), "ea" | "rt" | "so" | TTL_ATTRIBUTE))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    item.insert("pk".into(), s(issued_pk(issuer)));
    item.insert("sk".into(), s(issued_sk(issued_at, code_hash)));
    item
}
