//! The seal on DynamoDB without an item every upload meets on. Each writer (a store instance:
//! one per Lambda instance, and one more for each insert it runs at the same time) keeps its
//! own *fence*: an item holding the seal as that writer must respect it. An insert
//! condition-checks its own fence, which no other writer's transaction touches, where it would
//! otherwise check the one `SEAL` item that every upload of the region reads (two
//! transactions on one item conflict, and one item lives in one partition).
//!
//! Sealing moves `SEAL`, then every registered fence. A writer registers a fence with the seal
//! it read, and reads `SEAL` again after registering, raising its fence if the seal moved: so
//! a fence registered while a seal is under way is either found by the sealing run or raised
//! by its writer, and no insert lands behind a seal. A writer takes a new fence every
//! [`FENCE_LIFETIME`]; sealing runs remove fences past twice that.
//!
//! | item | `pk` | `sk` | attributes |
//! |---|---|---|---|
//! | fence | `F#<id>` | `F` | `seal`, `ttl` |
//! | fence registry entry | `FENCES` | `<id>` | `ttl` |

use std::sync::{Arc, Mutex};

use ring::rand::{SecureRandom as _, SystemRandom};

use super::codec::hex;
use super::{
    DynamoStore, Item, TTL_ATTRIBUTE, get_n, get_s, n, s, sdk_error, unless_condition_failed,
};
use crate::ports::{StoreError, UnixSeconds};

/// How long a writer uses one fence.
pub const FENCE_LIFETIME: u64 = 3600;
/// The partition of the fence registry.
const REGISTRY_PK: &str = "FENCES";

/// A writer's fence and the seal it last saw on it.
#[derive(Clone, Debug)]
pub(super) struct Fence {
    pub(super) id: String,
    pub(super) seal: UnixSeconds,
    registered: UnixSeconds,
}

impl Fence {
    pub(super) fn pk(&self) -> String {
        fence_pk(&self.id)
    }
}

fn fence_pk(id: &str) -> String {
    format!("F#{id}")
}

/// The fences of one store instance not in use by an insert right now.
#[derive(Clone, Debug, Default)]
pub(super) struct IdleFences(Arc<Mutex<Vec<Fence>>>);

impl DynamoStore {
    /// A fence for one insert: an idle one of this instance, or a new one.
    pub(super) async fn take_fence(&self, now: UnixSeconds) -> Result<Fence, StoreError> {
        loop {
            let idle = self.fences.0.lock().expect("no panic with fences").pop();
            match idle {
                // Past its lifetime a fence may be removed by a sealing run: let it go.
                Some(fence) if fence.registered + FENCE_LIFETIME <= now => continue,
                Some(fence) => return Ok(fence),
                None => return self.register_fence(now).await,
            }
        }
    }

    /// Gives a fence back when its insert is done.
    pub(super) fn return_fence(&self, fence: Fence) {
        self.fences
            .0
            .lock()
            .expect("no panic with fences")
            .push(fence);
    }

    /// Registers a new fence holding the seal in force.
    pub(super) async fn register_fence(&self, now: UnixSeconds) -> Result<Fence, StoreError> {
        let mut id = [0u8; 8];
        SystemRandom::new()
            .fill(&mut id)
            .map_err(|_| StoreError::Backend("the system random source failed".into()))?;
        let id = hex(&id);
        let expires = now + 2 * FENCE_LIFETIME;
        let mut seal = self.read_seal().await?;
        let fence = Item::from([
            ("pk".to_string(), s(fence_pk(&id))),
            ("sk".to_string(), s("F")),
            ("seal".to_string(), n(seal)),
            (TTL_ATTRIBUTE.to_string(), n(expires)),
        ]);
        if !self.put_new(fence).await? {
            return Err(StoreError::backend(format!("a fence {id} exists already")));
        }
        self.client
            .put_item()
            .table_name(&self.table)
            .item("pk", s(REGISTRY_PK))
            .item("sk", s(id.clone()))
            .item(TTL_ATTRIBUTE, n(expires))
            .send()
            .await
            .map_err(sdk_error)?;
        // A seal that moved meanwhile may have missed this fence: follow it.
        loop {
            let current = self.read_seal().await?;
            if current <= seal {
                break;
            }
            self.raise_fence(&id, current).await?;
            seal = current;
        }
        Ok(Fence {
            id,
            seal,
            registered: now,
        })
    }

    /// Reads a fence's seal again (after its check failed); `false` if the fence is gone.
    pub(super) async fn reload_fence(&self, fence: &mut Fence) -> Result<bool, StoreError> {
        match self.get_item(&fence.pk(), "F").await? {
            None => Ok(false),
            Some(item) => {
                fence.seal = get_n(&item, "seal")?;
                Ok(true)
            }
        }
    }

    /// Moves fence `id` to `seal`, never back; nothing if the fence is gone.
    async fn raise_fence(&self, id: &str, seal: UnixSeconds) -> Result<(), StoreError> {
        let raised = self
            .client
            .update_item()
            .table_name(&self.table)
            .key("pk", s(fence_pk(id)))
            .key("sk", s("F"))
            .update_expression("SET seal = :seal")
            .condition_expression("attribute_exists(pk) AND seal < :seal")
            .expression_attribute_values(":seal", n(seal))
            .send()
            .await;
        unless_condition_failed(raised)?;
        Ok(())
    }

    /// Moves every registered fence to `seal` (once `SEAL` is there), and removes the fences
    /// past their time.
    pub(super) async fn seal_fences(
        &self,
        seal: UnixSeconds,
        now: UnixSeconds,
    ) -> Result<(), StoreError> {
        let mut pages = self
            .client
            .query()
            .table_name(&self.table)
            .consistent_read(true)
            .key_condition_expression("pk = :pk")
            .expression_attribute_values(":pk", s(REGISTRY_PK))
            .into_paginator()
            .send();
        // A page of registry entries at a time: the live fences raised, the others removed.
        while let Some(found) = pages.next().await {
            let (mut expired, mut live) = (Vec::new(), Vec::new());
            for item in found.map_err(sdk_error)?.items() {
                let entry = (REGISTRY_PK.to_string(), get_s(item, "sk")?.to_string());
                match get_n::<u64>(item, TTL_ATTRIBUTE)? <= now {
                    true => expired.push(entry),
                    false => live.push(entry),
                }
            }
            self.on_each_item(live, move |store, _, id| async move {
                store.raise_fence(&id, seal).await.map(|()| true)
            })
            .await?;
            self.on_each_item(expired, |store, _, id| async move {
                store.remove_fence(&id).await.map(|()| true)
            })
            .await?;
        }
        Ok(())
    }

    /// Removes a fence past its time, and its registry entry.
    async fn remove_fence(&self, id: &str) -> Result<(), StoreError> {
        for (pk, sk) in [
            (fence_pk(id), "F".to_string()),
            (REGISTRY_PK.into(), id.into()),
        ] {
            self.client
                .delete_item()
                .table_name(&self.table)
                .key("pk", s(pk))
                .key("sk", s(sk))
                .send()
                .await
                .map_err(sdk_error)?;
        }
        Ok(())
    }
}
