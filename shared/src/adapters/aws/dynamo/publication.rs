//! [`PublicationStore`] on DynamoDB: a head item with the version, and the state deflated in
//! parts, all replaced in one transaction conditional on the version.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::codec::{deflate, inflate, part_sk};
use super::{
    DynamoStore, HEAD_SK, MAX_PARTS, PART_BYTES, PUB_PK, b, cancellation_reasons, get_b, get_n, n,
    s, sdk_error,
};
use crate::domain::publication::Publication;
use crate::ports::{PublicationStore, StoreError};

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
