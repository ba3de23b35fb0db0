//! Data-prep's record of what it published (see the data-prep service): the chunks of every
//! feed with their numbers and expiry, how far the key store has been read, and a plan saved
//! before any chunk is written, so that a crashed or concurrent run can complete it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::domain::feed::Feed;
use crate::domain::key::UnixSeconds;

/// Everything data-prep has published, kept by a [`crate::ports::PublicationStore`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Publication {
    /// Every key with `publish_at` up to here is in a published (or planned) chunk.
    pub published_through: UnixSeconds,
    /// A plan saved but not yet completed.
    pub pending: Option<Plan>,
    pub feeds: BTreeMap<Feed, FeedRecord>,
    /// When the last run completed.
    #[serde(default)]
    pub completed_at: UnixSeconds,
    /// The declared regions of every key with `publish_at` up to here are dropped (SP2).
    #[serde(default)]
    pub regions_dropped_through: UnixSeconds,
}

/// The chunks one run turns the keys of `(after, through]` into.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub after: UnixSeconds,
    pub through: UnixSeconds,
    pub created_at: UnixSeconds,
    /// Seeds the padding, so that a repeated build pads identically.
    pub padding_seed: [u8; 32],
    pub chunks: Vec<PlannedChunk>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedChunk {
    pub feed: Feed,
    pub number: u32,
    /// Which slice of the feed's keys, when they fill more than one file.
    pub part: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedRecord {
    /// The highest chunk number ever used: numbers only grow, even after deletions.
    pub last_number: u32,
    pub chunks: Vec<ChunkRecord>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkRecord {
    pub number: u32,
    pub published_at: UnixSeconds,
    /// When its oldest key expires: the chunk must be gone by then.
    pub expires_at: UnixSeconds,
    /// Real keys in the file (padding not counted).
    pub keys: u32,
    pub bytes: u64,
    /// When it left the index; its file is deleted a run later.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unlisted_at: Option<UnixSeconds>,
}
