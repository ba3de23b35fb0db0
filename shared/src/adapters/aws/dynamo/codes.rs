//! [`CodeStore`] on DynamoDB: an item per one-time code (by its hash), consumed by the key
//! insert's transaction, and an item per client and window counting wrong codes. A code that a
//! code issuer issued is written with its issuer's record of it (see [`code_issuers`](super::code_issuers)).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem};

use super::code_issuers::issued_item;
use super::codec::{attempt_pk, code_pk, diagnosis_attributes, diagnosis_of};
use super::{
    DynamoStore, Item, LINGER, TTL_ATTRIBUTE, cancellation_reasons, get_b, get_n, n, optional_n, s,
    sdk_error,
};
use crate::domain::diagnosis::Diagnosis;
use crate::ports::{
    CodeClaim, CodeRecord, CodeStore, CodeUse, StoreError, UnixSeconds, check_claim,
};

impl DynamoStore {
    pub(super) async fn read_code(
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
            inserted: optional_n(&item, "n")?.unwrap_or(0),
            diagnosis: diagnosis_of(&item)?,
        }))
    }
}

#[async_trait]
impl CodeStore for DynamoStore {
    async fn add_code(&self, code: CodeRecord) -> Result<(), StoreError> {
        let mut item = diagnosis_attributes(&code.diagnosis);
        item.extend([
            ("pk".to_string(), s(code_pk(&code.code_hash))),
            ("sk".to_string(), s("C")),
            ("ia".to_string(), n(code.issued_at)),
            ("ea".to_string(), n(code.expires_at)),
            (TTL_ATTRIBUTE.to_string(), n(code.expires_at + LINGER)),
        ]);
        let exists = || StoreError::Conflict("a code with this value exists".into());
        let Some(issuer) = &code.issued_by else {
            return self.put_new(item).await?.then_some(()).ok_or_else(exists);
        };
        // The code and its issuer's record of it, both or neither.
        let issued = issued_item(issuer, code.issued_at, &code.code_hash, &item);
        item.insert("by".to_string(), s(issuer));
        let put = |item: Item, condition: Option<&str>| {
            Put::builder()
                .table_name(&self.table)
                .set_item(Some(item))
                .set_condition_expression(condition.map(str::to_string))
                .build()
                .map(|put| TransactWriteItem::builder().put(put).build())
                .map_err(StoreError::backend)
        };
        let written = self
            .client
            .transact_write_items()
            .transact_items(put(item, Some("attribute_not_exists(pk)"))?)
            .transact_items(put(issued, None)?)
            .send()
            .await;
        match written {
            Ok(_) => Ok(()),
            Err(e) => match cancellation_reasons(&e) {
                Some(reasons)
                    if reasons.first().and_then(Option::as_deref)
                        == Some("ConditionalCheckFailed") =>
                {
                    Err(exists())
                }
                _ => Err(sdk_error(e)),
            },
        }
    }

    async fn wrong_attempts(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<u32, StoreError> {
        match self
            .get_item(&attempt_pk(client, window_start), "A")
            .await?
        {
            None => Ok(0),
            Some(item) => get_n(&item, "cnt"),
        }
    }

    async fn count_wrong_attempt(
        &self,
        client: &str,
        window_start: UnixSeconds,
    ) -> Result<u32, StoreError> {
        let out = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(attempt_pk(client, window_start)))
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

    async fn check_code(
        &self,
        claim: &CodeClaim,
        now: UnixSeconds,
    ) -> Result<Diagnosis, StoreError> {
        let code = self.read_code(&claim.code_hash, now).await?;
        check_claim(code.as_ref(), claim, now)?;
        Ok(code.map(|code| code.diagnosis).unwrap_or_default())
    }
}
