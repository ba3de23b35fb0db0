//! Data-prep's record of what it published (see the data-prep service): the chunks of every
//! feed with their numbers and expiry, how far the key store has been read (and, for a range
//! too large for one run, where in it the last run stopped), and a plan saved before any chunk
//! is written, so that a crashed or concurrent run can complete it.

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
    /// A sealed range with more keys than one run takes, published part by part.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backlog: Option<Backlog>,
}

/// A place in the key store's order of keys, as the store wrote it: where a read stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyCursor(pub String);

/// The rest of a sealed range that the runs so far could not take.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backlog {
    /// The end of the range (the seal when it was read first).
    pub through: UnixSeconds,
    /// Every key of the range up to here, in the store's order, is in a published chunk.
    pub read_to: KeyCursor,
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
    /// Where in the range the plan's keys begin: past the place a run before stopped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<KeyCursor>,
    /// Where they end, if keys of the range remain past them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<KeyCursor>,
    /// How many keys the plan read at most: a repeated read with the same bounds takes the
    /// same keys.
    #[serde(default = "unlimited")]
    pub max_keys: u64,
}

/// A plan saved before runs were bounded read every key of its range.
fn unlimited() -> u64 {
    u64::MAX
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
