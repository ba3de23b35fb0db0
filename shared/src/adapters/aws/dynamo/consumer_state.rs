//! [`DynamoConsumerState`]: the consumer's place in each peer's feed ([`PeerState`]), one item
//! per peer in the consumer's own table (`pk` = the peer's region ID), so that the consumer
//! function needs no access to the main table's codes or publication state.

use async_trait::async_trait;
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType,
    ScalarAttributeType,
};

use super::sdk_error;
use crate::domain::key::RegionId;
use crate::ports::{ConsumerStateStore, PeerState, StoreError};

/// The DynamoDB adapter of [`ConsumerStateStore`].
#[derive(Clone, Debug)]
pub struct DynamoConsumerState {
    client: Client,
    table: String,
}

impl DynamoConsumerState {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        Self {
            client,
            table: table.into(),
        }
    }

    /// Creates the table as `template.yaml` declares it, for tests and tooling.
    pub async fn create_table(client: &Client, table: &str) -> Result<(), StoreError> {
        let backend = |e: aws_sdk_dynamodb::error::BuildError| StoreError::Backend(e.to_string());
        client
            .create_table()
            .table_name(table)
            .billing_mode(BillingMode::PayPerRequest)
            .attribute_definitions(
                AttributeDefinition::builder()
                    .attribute_name("pk")
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(backend)?,
            )
            .key_schema(
                KeySchemaElement::builder()
                    .attribute_name("pk")
                    .key_type(KeyType::Hash)
                    .build()
                    .map_err(backend)?,
            )
            .send()
            .await
            .map_err(sdk_error)?;
        Ok(())
    }
}

#[async_trait]
impl ConsumerStateStore for DynamoConsumerState {
    async fn load_peer(&self, peer: RegionId) -> Result<PeerState, StoreError> {
        let item = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("pk", AttributeValue::S(peer.to_string()))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_error)?
            .item
            .unwrap_or_default();
        Ok(PeerState {
            last_batch_id: item.get("last").and_then(|v| v.as_s().ok()).cloned(),
            recommended_next_poll_time: item
                .get("next")
                .and_then(|v| v.as_n().ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0),
        })
    }

    async fn save_peer(&self, peer: RegionId, state: &PeerState) -> Result<(), StoreError> {
        let mut put = self
            .client
            .put_item()
            .table_name(&self.table)
            .item("pk", AttributeValue::S(peer.to_string()))
            .item(
                "next",
                AttributeValue::N(state.recommended_next_poll_time.to_string()),
            );
        if let Some(last) = &state.last_batch_id {
            put = put.item("last", AttributeValue::S(last.clone()));
        }
        put.send().await.map_err(sdk_error)?;
        Ok(())
    }
}
