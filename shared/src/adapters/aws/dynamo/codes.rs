//! [`CodeStore`] on DynamoDB: an item per one-time code (by its hash), consumed by the key
//! insert's transaction, and an item per client and window counting wrong codes.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;

use super::codec::{attempt_pk, code_pk};
use super::{
    DynamoStore, LINGER, TTL_ATTRIBUTE, get_b, get_n, n, s, sdk_error, unless_condition_failed,
};
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
            inserted: item
                .get("n")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        }))
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

    async fn check_code(&self, claim: &CodeClaim, now: UnixSeconds) -> Result<(), StoreError> {
        check_claim(
            self.read_code(&claim.code_hash, now).await?.as_ref(),
            claim,
            now,
        )?;
        Ok(())
    }
}
