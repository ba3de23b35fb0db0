//! The trust registry's content (paper, section 4.1.4): what a region publishes about itself
//! so that others can pull from it and let it pull, without peers files kept by hand.
//!
//! The registry is a TUF repository (see `docs/interop.md`): a root authority delegates to
//! cluster authorities, each cluster to its regions, and each region signs one target file,
//! its [`RegionEntry`], named `<cluster>-<REGION>.json` ([`target_name`]). This module holds
//! the entry, its checks, and what a region derives from the entries of the others
//! ([`FederationView`]): the producers to pull and who may read its backend feeds.
//!
//! ```json
//! {
//!   "region": "DE",
//!   "backend_url": "https://de.example:8443",
//!   "public_url": "https://de.example",
//!   "replication": { "a2a_consumers": ["AT"], "region_feeds": true },
//!   "verification_keys": [
//!     { "key_id": "DE", "key_version": "v2", "public_key_pem": "-----BEGIN PUBLIC KEY-----...",
//!       "not_before": 1750000000 }
//!   ],
//!   "tls": { "server_ca_pem": "-----BEGIN CERTIFICATE-----..." }
//! }
//! ```

use std::collections::BTreeSet;
use std::sync::RwLock;

use serde::{Deserialize, Serialize};

use crate::domain::key::RegionId;
use crate::domain::peers::{FeedFormat, PeerConfig, PeersError, Replication};
use crate::domain::signature::{KeyError, KeyWindow, VerificationKey};

/// Longest cluster name.
const MAX_CLUSTER_LEN: usize = 32;

/// One region's entry: a JSON target file of the registry, signed through the region's own
/// delegated role.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionEntry {
    pub region: RegionId,
    /// Where peers pull its backend feeds (its mutual-TLS listener).
    pub backend_url: String,
    /// Where phones read its public feed.
    pub public_url: String,
    /// The replication it offers.
    #[serde(default)]
    pub replication: Offered,
    /// How its files are laid out (`enfeed`, or `gaen-index` with the two settings below).
    #[serde(default)]
    pub format: FeedFormat,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_root: Option<String>,
    /// The public keys its export files are signed with, each valid in its window.
    pub verification_keys: Vec<EntryKey>,
    /// How a peer recognises its server.
    #[serde(default)]
    pub tls: EntryTls,
    /// Its URLs may be `http://` (a test, a closed network).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub insecure_http: bool,
}

/// The replication a region offers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offered {
    /// Regions that may pull its all-to-all feed (`/v1/a2a/keys`).
    #[serde(default)]
    pub a2a_consumers: Vec<RegionId>,
    /// Whether it serves per-region feeds (`/v1/<R>/keys`) to the regions it names.
    #[serde(default = "region_feeds_default")]
    pub region_feeds: bool,
}

fn region_feeds_default() -> bool {
    true
}

impl Default for Offered {
    fn default() -> Self {
        Self {
            a2a_consumers: Vec::new(),
            region_feeds: true,
        }
    }
}

/// An export verification key of an entry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryKey {
    /// The key ID its signatures carry (the region ID, or its mobile country code).
    pub key_id: String,
    pub key_version: String,
    /// SubjectPublicKeyInfo PEM of the ECDSA P-256 key.
    pub public_key_pem: String,
    /// Unix seconds from which files signed with it are accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before: Option<u64>,
    /// Unix seconds after which files signed with it are refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<u64>,
}

/// How a peer recognises a region's server: a CA its certificate chains to, or the pinned
/// SHA-256 of the certificate itself.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntryTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_ca_pem: Option<String>,
    /// Hex SHA-256 of the server certificate (DER).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server_cert_sha256: Option<String>,
}

/// Why an entry is refused.
#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("target {0:?} is not named <cluster>-<REGION>.json")]
    BadName(String),
    #[error("not a valid region entry: {0}")]
    Parse(#[from] serde_json::Error),
    #[error("the entry claims region {claimed}, but its delegation is for {delegated}")]
    OutsideDelegation {
        claimed: RegionId,
        delegated: RegionId,
    },
    #[error("the entry is signed by role {role:?}, not by the region's role {region}")]
    WrongRole { role: String, region: RegionId },
    #[error("the entry names no verification key")]
    NoKeys,
    #[error(transparent)]
    Key(#[from] KeyError),
    #[error(transparent)]
    Urls(#[from] PeersError),
    #[error("tls: {0}")]
    Tls(String),
}

impl EntryError {
    /// A short name of the problem, to count refusals by.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadName(_) => "bad_name",
            Self::Parse(_) => "bad_entry",
            Self::OutsideDelegation { .. } => "outside_delegation",
            Self::WrongRole { .. } => "wrong_role",
            Self::NoKeys => "no_keys",
            Self::Key(_) => "bad_key",
            Self::Urls(_) => "bad_url",
            Self::Tls(_) => "bad_tls",
        }
    }
}

/// Whether `name` may name a cluster: 1 to 32 lower-case letters or digits.
pub fn is_cluster_name(name: &str) -> bool {
    (1..=MAX_CLUSTER_LEN).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

/// The target file of `region`'s entry in `cluster`: `eu-DE.json`. Names are flat (no `/`),
/// which both tough and python-tuf lay out the same way.
pub fn target_name(cluster: &str, region: RegionId) -> String {
    format!("{cluster}-{region}.json")
}

/// The path pattern a cluster's delegation covers: `eu-*.json`.
pub fn cluster_pattern(cluster: &str) -> String {
    format!("{cluster}-*.json")
}

/// The cluster and region a target name stands for.
pub fn parse_target_name(name: &str) -> Result<(&str, RegionId), EntryError> {
    let bad = || EntryError::BadName(name.to_string());
    let stem = name.strip_suffix(".json").ok_or_else(bad)?;
    let (cluster, region) = stem.split_once('-').ok_or_else(bad)?;
    if !is_cluster_name(cluster) {
        return Err(bad());
    }
    Ok((cluster, region.parse().map_err(|_| bad())?))
}

/// An entry read from the registry and checked, with its keys parsed.
#[derive(Clone, Debug)]
pub struct CheckedEntry {
    pub entry: RegionEntry,
    pub keys: Vec<(VerificationKey, KeyWindow)>,
    /// The pinned server certificate, decoded.
    pub server_cert_sha256: Option<[u8; 32]>,
}

impl RegionEntry {
    /// Reads and checks the target `name`, signed by `role`: the entry must be for the region
    /// its name (and so its delegation) is for, signed by that region's role, with at least one
    /// valid key and usable URLs.
    pub fn read(name: &str, role: &str, bytes: &[u8]) -> Result<CheckedEntry, EntryError> {
        let (_, delegated) = parse_target_name(name)?;
        let entry: RegionEntry = serde_json::from_slice(bytes)?;
        if entry.region != delegated {
            return Err(EntryError::OutsideDelegation {
                claimed: entry.region,
                delegated,
            });
        }
        if role != delegated.as_str() {
            return Err(EntryError::WrongRole {
                role: role.to_string(),
                region: delegated,
            });
        }
        entry.check()
    }

    /// The checks of an entry on its own.
    pub fn check(self) -> Result<CheckedEntry, EntryError> {
        if self.verification_keys.is_empty() {
            return Err(EntryError::NoKeys);
        }
        let keys = self
            .verification_keys
            .iter()
            .map(|key| {
                let window = KeyWindow {
                    not_before: key.not_before,
                    not_after: key.not_after,
                };
                VerificationKey::from_pem(&key.public_key_pem, &key.key_id, &key.key_version)
                    .map(|parsed| (parsed, window))
            })
            .collect::<Result<Vec<_>, _>>()?;
        self.peer_config(Replication::A2a).check_urls()?;
        let public = PeerConfig {
            url: self.public_url.clone(),
            ..PeerConfig::new(self.region, "", Replication::A2a)
        };
        PeerConfig {
            insecure_http: self.insecure_http,
            ..public
        }
        .check_urls()?;
        let server_cert_sha256 = match &self.tls.server_cert_sha256 {
            Some(hex) => Some(decode_sha256(hex).ok_or_else(|| {
                EntryError::Tls(format!("server_cert_sha256 {hex:?} is not 64 hex digits"))
            })?),
            None => None,
        };
        let https = self.backend_url.starts_with("https://");
        if https && self.tls.server_ca_pem.is_none() && server_cert_sha256.is_none() {
            return Err(EntryError::Tls(
                "an https:// backend needs server_ca_pem or server_cert_sha256".into(),
            ));
        }
        Ok(CheckedEntry {
            entry: self,
            keys,
            server_cert_sha256,
        })
    }

    /// The peer settings of pulling this region with `replication`; keys and TLS come from
    /// the entry itself.
    pub fn peer_config(&self, replication: Replication) -> PeerConfig {
        PeerConfig {
            format: self.format,
            index_url: self.index_url.clone(),
            export_root: self.export_root.clone(),
            insecure_http: self.insecure_http,
            ..PeerConfig::new(self.region, self.backend_url.clone(), replication)
        }
    }

    /// What region `own` pulls from this region: its all-to-all feed if it lists `own` among
    /// its a2a consumers, else the per-region feed for `own` if it offers those; nothing from
    /// itself.
    pub fn replication_for(&self, own: RegionId) -> Option<Replication> {
        if self.region == own {
            None
        } else if self.replication.a2a_consumers.contains(&own) {
            Some(Replication::A2a)
        } else if self.replication.region_feeds {
            Some(Replication::Partial)
        } else {
            None
        }
    }
}

fn decode_sha256(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0; 32];
    for (byte, pair) in out.iter_mut().zip(hex.as_bytes().chunks(2)) {
        *byte = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// What a region takes from a verified registry: the peers to pull and who may read its
/// backend feeds.
#[derive(Clone, Debug, Default)]
pub struct FederationView {
    /// The producers to pull, with their checked entries.
    pub producers: Vec<(PeerConfig, CheckedEntry)>,
    /// Every region the registry lists now.
    pub members: BTreeSet<RegionId>,
    /// The regions this region's own entry lets read its all-to-all feed.
    pub a2a_consumers: BTreeSet<RegionId>,
}

impl FederationView {
    /// The view of region `own` from the registry's checked entries.
    pub fn of(own: RegionId, entries: Vec<CheckedEntry>) -> Self {
        let mut view = Self::default();
        for checked in entries {
            view.members.insert(checked.entry.region);
            if checked.entry.region == own {
                view.a2a_consumers = checked
                    .entry
                    .replication
                    .a2a_consumers
                    .iter()
                    .copied()
                    .collect();
            } else if let Some(replication) = checked.entry.replication_for(own) {
                view.producers
                    .push((checked.entry.peer_config(replication), checked));
            }
        }
        view
    }
}

/// The registry's part of who may read the backend feeds, replaced at every refresh: the
/// regions it lists, and those this region lets read its all-to-all feed.
#[derive(Debug, Default)]
pub struct RegistryGrants(RwLock<Grants>);

#[derive(Clone, Debug, Default)]
struct Grants {
    members: BTreeSet<RegionId>,
    a2a_consumers: BTreeSet<RegionId>,
}

impl RegistryGrants {
    /// Puts the grants of `view` in force.
    pub fn update(&self, view: &FederationView) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = Grants {
            members: view.members.clone(),
            a2a_consumers: view.a2a_consumers.clone(),
        };
    }

    /// Whether the registry lists `region` now.
    pub fn is_member(&self, region: RegionId) -> bool {
        self.read().members.contains(&region)
    }

    /// Whether the registry lets `region` read the all-to-all feed.
    pub fn may_read_a2a(&self, region: RegionId) -> bool {
        let grants = self.read();
        grants.members.contains(&region) && grants.a2a_consumers.contains(&region)
    }

    fn read(&self) -> Grants {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(id: &str) -> RegionId {
        id.parse().unwrap()
    }

    fn key_pem() -> String {
        let point = [4u8; 65];
        VerificationKey::from_point(&point, "DE", "v1")
            .unwrap()
            .to_pem()
    }

    fn entry(id: &str) -> RegionEntry {
        RegionEntry {
            region: region(id),
            backend_url: format!("https://{id}.example:8443"),
            public_url: format!("https://{id}.example"),
            replication: Offered::default(),
            format: FeedFormat::Enfeed,
            index_url: None,
            export_root: None,
            verification_keys: vec![EntryKey {
                key_id: id.into(),
                key_version: "v1".into(),
                public_key_pem: key_pem(),
                not_before: None,
                not_after: Some(2_000_000_000),
            }],
            tls: EntryTls {
                server_cert_sha256: Some("ab".repeat(32)),
                ..EntryTls::default()
            },
            insecure_http: false,
        }
    }

    #[test]
    fn target_names_carry_cluster_and_region() {
        assert_eq!(target_name("eu", region("DE")), "eu-DE.json");
        assert_eq!(parse_target_name("eu-222.json").unwrap().1, region("222"));
        for bad in [
            "eu-DE",
            "EU-DE.json",
            "eu-de.json",
            "DE.json",
            "e/u-DE.json",
        ] {
            assert!(parse_target_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn an_entry_is_read_only_for_its_own_delegation() {
        let bytes = serde_json::to_vec(&entry("DE")).unwrap();
        let checked = RegionEntry::read("eu-DE.json", "DE", &bytes).unwrap();
        assert_eq!(checked.keys[0].1.not_after, Some(2_000_000_000));
        assert_eq!(checked.server_cert_sha256, Some([0xab; 32]));
        let error = RegionEntry::read("eu-FR.json", "FR", &bytes).unwrap_err();
        assert_eq!(error.code(), "outside_delegation", "{error}");
        let error = RegionEntry::read("eu-DE.json", "eu", &bytes).unwrap_err();
        assert_eq!(error.code(), "wrong_role", "{error}");

        let mut http = entry("DE");
        http.backend_url = "http://de.example".into();
        assert_eq!(http.clone().check().unwrap_err().code(), "bad_url");
        http.insecure_http = true;
        assert!(http.check().is_ok());
        let mut no_tls = entry("DE");
        no_tls.tls = EntryTls::default();
        assert_eq!(no_tls.check().unwrap_err().code(), "bad_tls");
        let mut unknown = serde_json::to_value(entry("DE")).unwrap();
        unknown["colour"] = "red".into();
        let bytes = serde_json::to_vec(&unknown).unwrap();
        let error = RegionEntry::read("eu-DE.json", "DE", &bytes).unwrap_err();
        assert_eq!(error.code(), "bad_entry");
    }

    #[test]
    fn a_region_pulls_what_the_others_offer_it() {
        let mut at = entry("AT");
        at.replication.a2a_consumers = vec![region("BE")];
        let mut be = entry("BE");
        be.replication.a2a_consumers = vec![region("AT"), region("EUR")];
        let mut cz = entry("CZ");
        cz.replication.region_feeds = false;
        let checked = [at, be, cz].map(|e| e.check().unwrap()).to_vec();
        let view = FederationView::of(region("BE"), checked);
        let pulls: Vec<_> = view
            .producers
            .iter()
            .map(|(config, _)| (config.region.to_string(), config.replication))
            .collect();
        assert_eq!(pulls, [("AT".to_string(), Replication::A2a)]);
        assert_eq!(view.members.len(), 3);
        assert!(view.a2a_consumers.contains(&region("AT")));

        let grants = RegistryGrants::default();
        grants.update(&view);
        assert!(grants.may_read_a2a(region("AT")));
        assert!(!grants.may_read_a2a(region("EUR")), "not a member");
        assert!(grants.is_member(region("CZ")) && !grants.is_member(region("FR")));
    }
}
