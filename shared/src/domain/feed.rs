//! Feeds and their addresses. A feed is a numbered series of chunks plus an index:
//!
//! | feed | path | carries |
//! |---|---|---|
//! | public (phones) | `v1/keys` | local and remote keys |
//! | all-to-all (backends) | `v1/a2a/keys` | local keys |
//! | per region R (backends) | `v1/R/keys` | local keys whose uploader declared R |
//!
//! A chunk lives at `<feed path>/<n>`, `n` counting from 1; the feed's index at the feed path
//! (JSON), and the same list as text, one chunk path per line, at `<feed path>/index.txt` (the
//! way Exposure Notifications Express devices and Google's reference exporter list files).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::domain::key::RegionId;
use crate::domain::key::UnixSeconds;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Feed {
    /// What phones download.
    Public,
    /// All local keys, for all-to-all peers.
    AllToAll,
    /// Local keys declared for one region, for that region's backend.
    Region(RegionId),
}

impl Feed {
    /// Whether only authenticated peer backends may read the feed.
    pub fn is_backend_feed(self) -> bool {
        !matches!(self, Feed::Public)
    }

    /// The path of the `n`-th chunk.
    pub fn chunk_path(self, n: u32) -> String {
        format!("{self}/{n}")
    }

    /// The path of the index (the feed path itself).
    pub fn index_path(self) -> String {
        self.to_string()
    }

    /// The path of the index as text (`index.txt` below the feed path).
    pub fn text_index_path(self) -> String {
        format!("{self}/{TEXT_INDEX}")
    }

    /// The text index listing `chunks`: one chunk path per line, relative to the host root,
    /// in the order given (oldest first).
    pub fn text_index(self, chunks: &[u32]) -> String {
        chunks
            .iter()
            .map(|&n| format!("{}\n", self.chunk_path(n)))
            .collect()
    }
}

impl fmt::Display for Feed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Feed::Public => f.write_str("v1/keys"),
            Feed::AllToAll => f.write_str("v1/a2a/keys"),
            Feed::Region(r) => write!(f, "v1/{r}/keys"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a feed path (v1/keys, v1/a2a/keys or v1/<region>/keys)")]
pub struct BadFeedPath(pub String);

impl FromStr for Feed {
    type Err = BadFeedPath;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadFeedPath(s.to_string());
        match s
            .trim_matches('/')
            .split('/')
            .collect::<Vec<_>>()
            .as_slice()
        {
            ["v1", "keys"] => Ok(Feed::Public),
            ["v1", "a2a", "keys"] => Ok(Feed::AllToAll),
            ["v1", region, "keys"] => region.parse().map(Feed::Region).map_err(|_| bad()),
            _ => Err(bad()),
        }
    }
}

impl Serialize for Feed {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Feed {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// The name of a feed's text index below the feed path.
pub const TEXT_INDEX: &str = "index.txt";

/// The path of the public keys that verify the region's chunks.
pub const VERIFICATION_KEYS_PATH: &str = "v1/verification-keys";

/// A file a region publishes, named by its path below the host root: what the blob store may
/// hold, and what the CDN serves.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Published {
    /// A feed's index (`v1/keys`).
    Index(Feed),
    /// A feed's index as text (`v1/keys/index.txt`).
    TextIndex(Feed),
    /// A feed's chunk (`v1/keys/7`).
    Chunk(Feed, u32),
    /// The public keys that verify chunks (`v1/verification-keys`).
    VerificationKeys,
}

impl fmt::Display for Published {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Published::Index(feed) => write!(f, "{feed}"),
            Published::TextIndex(feed) => write!(f, "{feed}/{TEXT_INDEX}"),
            Published::Chunk(feed, n) => write!(f, "{feed}/{n}"),
            Published::VerificationKeys => f.write_str(VERIFICATION_KEYS_PATH),
        }
    }
}

impl FromStr for Published {
    type Err = BadFeedPath;

    /// Only the canonical spelling: no leading, trailing or doubled slashes, chunk numbers
    /// from 1 without leading zeros.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || BadFeedPath(s.to_string());
        if s.starts_with('/') || s.ends_with('/') || s.contains("//") {
            return Err(bad());
        }
        if s == VERIFICATION_KEYS_PATH {
            return Ok(Published::VerificationKeys);
        }
        if let Ok(feed) = s.parse::<Feed>() {
            return Ok(Published::Index(feed));
        }
        let (feed, number) = s.rsplit_once('/').ok_or_else(bad)?;
        if number == TEXT_INDEX {
            return Ok(Published::TextIndex(feed.parse().map_err(|_| bad())?));
        }
        let n = number
            .parse::<u32>()
            .ok()
            .filter(|n| *n > 0 && n.to_string() == number)
            .ok_or_else(bad)?;
        Ok(Published::Chunk(feed.parse().map_err(|_| bad())?, n))
    }
}

impl Published {
    /// The media type it is served as.
    pub fn content_type(self) -> &'static str {
        match self {
            Published::Index(_) | Published::VerificationKeys => "application/json",
            Published::TextIndex(_) => "text/plain; charset=utf-8",
            Published::Chunk(..) => "application/zip",
        }
    }

    /// The name of its file, for stores and static web servers that tell media types by
    /// extension: `v1/keys.json`, `v1/keys/index.txt`, `v1/keys/7.zip`,
    /// `v1/verification-keys.json`.
    pub fn file_name(self) -> String {
        match self {
            Published::Index(_) | Published::VerificationKeys => format!("{self}.json"),
            Published::TextIndex(_) => self.to_string(),
            Published::Chunk(..) => format!("{self}.zip"),
        }
    }
}

/// A feed's index, as served at the feed path (`GET /v1/keys`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FeedIndex {
    /// The producing backend's region.
    pub region: RegionId,
    /// Numbers of the chunks available now, ascending.
    pub chunks: Vec<u32>,
    /// When the next chunk may appear: poll again then, not before.
    pub recommended_next_poll_time: UnixSeconds,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_paths_round_trip() {
        let de: RegionId = "DE".parse().unwrap();
        for feed in [Feed::Public, Feed::AllToAll, Feed::Region(de)] {
            assert_eq!(feed.index_path().parse::<Feed>().unwrap(), feed);
        }
        assert_eq!(Feed::Region(de).chunk_path(3), "v1/DE/keys/3");
        assert_eq!(
            Feed::Public.text_index(&[3, 4]),
            "v1/keys/3\nv1/keys/4\n",
            "oldest first, one path per line from the host root"
        );
        for region in ["EUR", "222"] {
            let feed = Feed::Region(region.parse().unwrap());
            assert_eq!(feed.index_path(), format!("v1/{region}/keys"));
            assert_eq!(feed.index_path().parse::<Feed>().unwrap(), feed);
        }
        assert!("v1/de/keys".parse::<Feed>().is_err());
        assert!("v1/EURO/keys".parse::<Feed>().is_err());
        assert!("v2/keys".parse::<Feed>().is_err());
        for path in [
            "v1/keys",
            "v1/a2a/keys/3",
            "v1/DE/keys/12",
            "v1/DE/keys/index.txt",
            "v1/verification-keys",
        ] {
            assert_eq!(path.parse::<Published>().unwrap().to_string(), path);
        }
        for bad in [
            "v1/keys/0",
            "v1/keys/01",
            "/v1/keys",
            "v1/keys/",
            "v1/keys/index.json",
            "v1//keys",
            "v1/x",
        ] {
            assert!(bad.parse::<Published>().is_err(), "{bad}");
        }
    }
}
