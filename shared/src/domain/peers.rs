//! The peers file (TOML): the producers this region's consumer pulls keys from, with the
//! configuration of the paper's section 5.3, and the regions that may pull this region's
//! all-to-all feed. Paths in the file are relative to the file.
//!
//! ```toml
//! a2a_consumers = ["AT"]          # backends that may read /v1/a2a/keys
//! client_cert = "ch-client.pem"   # this backend's TLS identity towards peers that name none
//! client_key = "ch-client.key"    # (every peer the trust registry lists)
//!
//! [[peer]]
//! region = "DE"                   # the producer's region
//! url = "https://de.example:8443" # its base URL
//! replication = "partial"         # "a2a": pull /v1/a2a/keys; "partial": /v1/<own region>/keys
//! format = "enfeed"               # or "gaen-index": an index.txt listing export zips
//! verification_keys = ["de.pem"]  # PEM public keys that sign its files (any of them)
//! client_cert = "ch-client.pem"   # this backend's TLS identity towards the peer
//! client_key = "ch-client.key"   # its key (on Lambda: an SSM SecureString instead, see deploy.md)
//! server_ca = "de-ca.pem"         # trust anchor for the peer's server certificate
//!
//! [[peer]]
//! region = "222"                  # Italy, by its mobile country code
//! url = "https://it.example"
//! replication = "a2a"
//! format = "gaen-index"
//! index_url = "https://it.example/exposures/IT/index.txt"  # default: <url>/index.txt
//! export_root = "https://it.example"  # what the index's lines are relative to; default: url
//! verification_keys = ["it.pem"]
//! insecure_http = false           # true allows an http:// url (tests, a closed network)
//! ```

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::domain::key::RegionId;

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeersFile {
    /// Regions whose backends may read the all-to-all feed.
    #[serde(default)]
    pub a2a_consumers: Vec<RegionId>,
    /// This backend's TLS identity towards the peers the trust registry lists.
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    #[serde(default, rename = "peer")]
    pub peers: Vec<PeerConfig>,
}

/// One producer to pull from.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerConfig {
    pub region: RegionId,
    pub url: String,
    pub replication: Replication,
    #[serde(default)]
    pub format: FeedFormat,
    pub verification_keys: Vec<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    pub server_ca: Option<PathBuf>,
    /// `gaen-index` only: the URL of the index (default: `<url>/index.txt`).
    #[serde(default)]
    pub index_url: Option<String>,
    /// `gaen-index` only: the URL the index's lines are relative to (default: `url`). Google's
    /// layout keeps the index under a prefix and names files from the bucket's root.
    #[serde(default)]
    pub export_root: Option<String>,
    /// Allows `http://` URLs for this peer; without it only `https://` is fetched.
    #[serde(default)]
    pub insecure_http: bool,
}

/// Which of the producer's feeds to pull.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Replication {
    /// All of the producer's local keys: `/v1/a2a/keys`.
    A2a,
    /// The keys whose uploaders declared this region: `/v1/<own region>/keys`.
    Partial,
}

/// How the producer lays out its files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FeedFormat {
    /// enfeed's numbered chunks with a JSON index.
    #[default]
    Enfeed,
    /// Google's reference server: `index.txt` lists export zips by path.
    GaenIndex,
}

#[derive(Debug, thiserror::Error)]
pub enum PeersError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is not a valid peers file: {1}")]
    Parse(String, toml::de::Error),
    #[error("peer {0} appears twice")]
    Duplicate(RegionId),
    #[error("peer {region}: {problem}")]
    Invalid { region: RegionId, problem: String },
    #[error("peers file: {0}")]
    Defaults(String),
}

impl PeersFile {
    /// Reads and checks a peers file, resolving its paths against the file's folder.
    pub fn load(path: &Path) -> Result<Self, PeersError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| PeersError::Read(path.display().to_string(), e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, &path.display().to_string(), base)
    }

    /// Checks the text of a peers file that `source` names (for errors), resolving its paths
    /// against the folder `base`.
    pub fn parse(text: &str, source: &str, base: &Path) -> Result<Self, PeersError> {
        let mut file: PeersFile =
            toml::from_str(text).map_err(|e| PeersError::Parse(source.to_string(), e))?;
        if file.client_cert.is_some() != file.client_key.is_some() {
            return Err(PeersError::Defaults(
                "client_cert and client_key go together".into(),
            ));
        }
        for path in file.client_cert.iter_mut().chain(&mut file.client_key) {
            *path = base.join(&*path);
        }
        let mut seen = HashSet::new();
        for peer in &mut file.peers {
            if !seen.insert(peer.region) {
                return Err(PeersError::Duplicate(peer.region));
            }
            peer.check()?;
            peer.resolve_paths(base);
        }
        Ok(file)
    }
}

impl PeerConfig {
    /// A peer at `url` with the defaults of the peers file: enfeed's layout, no keys, no TLS
    /// settings, HTTPS only.
    pub fn new(region: RegionId, url: impl Into<String>, replication: Replication) -> Self {
        Self {
            region,
            url: url.into(),
            replication,
            format: FeedFormat::Enfeed,
            verification_keys: Vec::new(),
            client_cert: None,
            client_key: None,
            server_ca: None,
            index_url: None,
            export_root: None,
            insecure_http: false,
        }
    }

    /// The checks that do not depend on files: URLs and their schemes, and which settings go
    /// with which format.
    pub fn check_urls(&self) -> Result<(), PeersError> {
        let invalid = |problem: &str| PeersError::Invalid {
            region: self.region,
            problem: problem.to_string(),
        };
        let urls = [
            ("url", Some(&self.url)),
            ("index_url", self.index_url.as_ref()),
            ("export_root", self.export_root.as_ref()),
        ];
        for (name, url) in urls {
            let Some(url) = url else { continue };
            let https = url.starts_with("https://");
            let http = url.starts_with("http://");
            if !(https || http && self.insecure_http) {
                return Err(invalid(&if http {
                    format!("{name} is http://: https:// is required unless insecure_http = true")
                } else {
                    format!("{name} must start with https://")
                }));
            }
        }
        let layout = self.index_url.is_some() || self.export_root.is_some();
        if layout && self.format != FeedFormat::GaenIndex {
            return Err(invalid(
                "index_url and export_root go with format = \"gaen-index\"",
            ));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), PeersError> {
        let invalid = |problem: &str| PeersError::Invalid {
            region: self.region,
            problem: problem.to_string(),
        };
        self.check_urls()?;
        if self.verification_keys.is_empty() {
            return Err(invalid("verification_keys needs at least one public key"));
        }
        // A certificate without its key in the file takes the key from a secret store (the
        // consumer function's); a key without its certificate is a mistake.
        if self.client_key.is_some() && self.client_cert.is_none() {
            return Err(invalid("client_key needs its client_cert"));
        }
        Ok(())
    }

    fn resolve_paths(&mut self, base: &Path) {
        let paths = self
            .verification_keys
            .iter_mut()
            .chain(&mut self.client_cert)
            .chain(&mut self.client_key);
        for path in paths.chain(&mut self.server_ca) {
            *path = base.join(&*path);
        }
    }

    /// The URL of the file at `path` below the peer's base URL.
    pub fn url_of(&self, path: &str) -> String {
        join_url(&self.url, path)
    }

    /// Where a `gaen-index` peer's index is.
    pub fn index_url(&self) -> String {
        self.index_url
            .clone()
            .unwrap_or_else(|| self.url_of("index.txt"))
    }

    /// The URL of a file named by a line of a `gaen-index` peer's index.
    pub fn export_url(&self, line: &str) -> String {
        join_url(self.export_root.as_deref().unwrap_or(&self.url), line)
    }
}

fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str) -> Result<PeersFile, PeersError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peers.toml");
        std::fs::write(&path, text).unwrap();
        PeersFile::load(&path)
    }

    #[test]
    fn reads_the_papers_configuration() {
        let file = load(
            r#"
            a2a_consumers = ["AT"]
            [[peer]]
            region = "DE"
            url = "https://de.example:8443/"
            replication = "partial"
            verification_keys = ["keys/de.pem"]
            client_cert = "c.pem"
            client_key = "c.key"
            server_ca = "ca.pem"
            [[peer]]
            region = "US"
            url = "http://127.0.0.1:9000"
            replication = "a2a"
            format = "gaen-index"
            verification_keys = ["/abs/us.pem"]
            insecure_http = true
            [[peer]]
            region = "222"
            url = "https://bucket.example/"
            replication = "a2a"
            format = "gaen-index"
            index_url = "https://bucket.example/exposures/IT/index.txt"
            verification_keys = ["it.pem"]
            "#,
        )
        .unwrap();
        assert_eq!(file.a2a_consumers, vec!["AT".parse().unwrap()]);
        let de = &file.peers[0];
        assert_eq!(
            (de.replication, de.format),
            (Replication::Partial, FeedFormat::Enfeed)
        );
        assert!(
            de.verification_keys[0].ends_with("keys/de.pem")
                && de.verification_keys[0].is_absolute()
        );
        assert_eq!(
            de.url_of("v1/CH/keys"),
            "https://de.example:8443/v1/CH/keys"
        );
        assert_eq!(file.peers[1].format, FeedFormat::GaenIndex);
        assert_eq!(
            file.peers[1].verification_keys[0],
            PathBuf::from("/abs/us.pem")
        );
        assert_eq!(file.peers[1].index_url(), "http://127.0.0.1:9000/index.txt");
        let it = &file.peers[2];
        assert_eq!(it.region.as_str(), "222");
        assert_eq!(
            it.index_url(),
            "https://bucket.example/exposures/IT/index.txt"
        );
        assert_eq!(
            it.export_url("exposures/IT/1-2-00001.zip"),
            "https://bucket.example/exposures/IT/1-2-00001.zip"
        );
    }

    #[test]
    fn http_needs_insecure_http() {
        let peer = |extra: &str| {
            format!(
                "[[peer]]\nregion = \"DE\"\nreplication = \"a2a\"\n\
                 verification_keys = [\"k.pem\"]\n{extra}"
            )
        };
        let error = load(&peer("url = \"http://de.example\"")).unwrap_err();
        assert!(error.to_string().contains("insecure_http"), "{error}");
        assert!(load(&peer("url = \"http://de.example\"\ninsecure_http = true")).is_ok());
        assert!(load(&peer("url = \"ftp://de.example\"\ninsecure_http = true")).is_err());
        let error = load(&peer(
            "url = \"https://de.example\"\nindex_url = \"https://de.example/i.txt\"",
        ))
        .unwrap_err();
        assert!(error.to_string().contains("gaen-index"), "{error}");
        let error = load(&peer(
            "url = \"https://de.example\"\nformat = \"gaen-index\"\n\
             export_root = \"http://de.example\"",
        ))
        .unwrap_err();
        assert!(error.to_string().contains("export_root"), "{error}");
    }

    #[test]
    fn refuses_what_cannot_work() {
        let peer = |extra: &str| {
            format!(
                "[[peer]]\nregion = \"DE\"\nurl = \"https://x\"\nreplication = \"a2a\"\n{extra}"
            )
        };
        let keys = "verification_keys = [\"k.pem\"]\n";
        assert!(matches!(load(&peer("")), Err(PeersError::Parse(..))));
        assert!(matches!(
            load(&peer("verification_keys = []")),
            Err(PeersError::Invalid { .. })
        ));
        assert!(matches!(
            load(&peer(&format!("{keys}client_key = \"k\""))),
            Err(PeersError::Invalid { .. })
        ));
        assert!(matches!(
            load(&format!("{}{}", peer(keys), peer(keys))),
            Err(PeersError::Duplicate(_))
        ));
        assert!(matches!(
            load(&peer(&format!("{keys}colour = 1"))),
            Err(PeersError::Parse(..))
        ));
        assert!(matches!(
            load("[[peer]]\nregion = \"de\""),
            Err(PeersError::Parse(..))
        ));
    }
}
