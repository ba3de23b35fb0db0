//! `enfeed registry ...`: the trust registry's tools for its key holders (see
//! `docs/interop.md` for the ceremony), and the settings with which a region reads a registry
//! (`--registry`, `--registry-root`, `--registry-ca`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use clap::Subcommand;
use enfeed::adapters::tls::{HttpsFetch, PeerTls};
use enfeed::adapters::tuf::TufRegistry;
use enfeed::adapters::tuf::authority::{self, Lifetimes, TopKeys};
use enfeed::domain::key::RegionId;
use enfeed::domain::peers::PeersFile;
use enfeed::domain::registry::{RegionEntry, target_name};
use enfeed::entry::local::REGISTRY;
use enfeed::entry::peers::Peering;
use enfeed::services::federation::Federation;

/// Where a region reads its trust registry.
#[derive(clap::Args)]
pub struct RegistrySource {
    /// Base URL of the trust registry (holding metadata/ and targets/): the producers to pull
    /// and the regions that may pull come from it, besides the peers file.
    #[arg(long, env = "ENFEED_REGISTRY", requires = "registry_root")]
    registry: Option<String>,

    /// The registry's root.json, obtained out of band: the keys everything else is checked
    /// against. What is trusted since is kept in `<data>/registry/`.
    #[arg(long, env = "ENFEED_REGISTRY_ROOT")]
    registry_root: Option<PathBuf>,

    /// PEM CA certificates for an https:// registry (for example the system's bundle).
    #[arg(long, env = "ENFEED_REGISTRY_CA")]
    registry_ca: Option<PathBuf>,
}

impl RegistrySource {
    /// Whether a registry is given.
    pub fn is_set(&self) -> bool {
        self.registry.is_some()
    }

    /// The region's peering: the peers file, with the registry if one is given.
    pub fn peering(
        &self,
        peers: PeersFile,
        data: &Path,
        region: RegionId,
    ) -> anyhow::Result<Peering> {
        let (Some(url), Some(root)) = (&self.registry, &self.registry_root) else {
            return Ok(Peering::local(peers, None)?);
        };
        let root = std::fs::read(root).with_context(|| format!("reading {}", root.display()))?;
        let tls = PeerTls {
            server_ca_pem: self
                .registry_ca
                .as_deref()
                .map(std::fs::read)
                .transpose()
                .context("reading --registry-ca")?,
            // TUF checks every byte of the registry; plain HTTP only costs confidentiality.
            insecure_http: url.starts_with("http://"),
            ..PeerTls::default()
        };
        let registry = TufRegistry::new(
            url,
            root,
            data.join(REGISTRY),
            Arc::new(HttpsFetch::with(&tls)?),
        )?;
        Ok(Peering::with_registry(
            peers,
            None,
            Federation::new(Arc::new(registry), region),
        )?)
    }
}

/// Lifetimes of the metadata signed, in days.
#[derive(clap::Args)]
pub struct LifetimeArgs {
    /// Days until the signed role expires (root, targets, clusters and regions).
    #[arg(long, default_value_t = 365)]
    expires_days: u64,
}

impl LifetimeArgs {
    fn lifetimes(&self) -> Lifetimes {
        Lifetimes {
            root: self.expires_days * 86_400,
            targets: self.expires_days * 86_400,
            ..Lifetimes::default()
        }
    }
}

#[derive(Subcommand)]
pub enum RegistryCommand {
    /// Generate a signing key (ed25519, PKCS#8 DER) and its public key `<KEY>.pub.json`.
    Keygen {
        /// File of the new private key.
        key: PathBuf,
    },
    /// Create a registry: root (signed by the root keys given), top-level targets, snapshot
    /// and timestamp. Writes `<REPO>/root.json`, the root that regions trust.
    Create {
        /// Folder of the new repository.
        #[arg(long)]
        repo: PathBuf,
        /// A root key (repeat; all given sign).
        #[arg(long = "root-key", required = true)]
        root_keys: Vec<PathBuf>,
        /// How many root keys must sign a new root.
        #[arg(long, default_value_t = 1)]
        threshold: u64,
        #[arg(long)]
        targets_key: PathBuf,
        #[arg(long)]
        snapshot_key: PathBuf,
        #[arg(long)]
        timestamp_key: PathBuf,
        #[command(flatten)]
        lifetimes: LifetimeArgs,
    },
    /// Delegate a cluster (from `targets`) or a region (from a cluster) to a public key; the
    /// parent's new role goes to the submission folder.
    Delegate {
        #[arg(long)]
        repo: PathBuf,
        /// The delegating role: `targets` or a cluster.
        #[arg(long)]
        parent: String,
        /// The parent's key (repeat for a threshold).
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// The new role: a cluster name (lower case) or a region ID.
        #[arg(long)]
        role: String,
        /// Its public key (`.pub.json`).
        #[arg(long)]
        role_key: PathBuf,
        /// The submission folder to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        lifetimes: LifetimeArgs,
    },
    /// Sign a role's next version: a cluster's (first) role, or a region's role with its
    /// entry. A region changes its own entry (URLs, export keys) this way, without the root.
    Sign {
        #[arg(long)]
        repo: PathBuf,
        /// The role to sign: a cluster, or a region (then with --cluster and --entry).
        #[arg(long)]
        role: String,
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        /// The region's cluster.
        #[arg(long, requires = "entry")]
        cluster: Option<String>,
        /// The region's entry (JSON), checked before it is signed.
        #[arg(long, requires = "cluster")]
        entry: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        lifetimes: LifetimeArgs,
    },
    /// Revoke a delegation: the region (or cluster) is no longer pulled or served by anyone.
    Revoke {
        #[arg(long)]
        repo: PathBuf,
        #[arg(long)]
        parent: String,
        #[arg(long = "key", required = true)]
        keys: Vec<PathBuf>,
        #[arg(long)]
        role: String,
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        lifetimes: LifetimeArgs,
    },
    /// Publish submissions into the repository (checking each), then re-sign snapshot and
    /// timestamp; with no submission, re-sign the timestamp only (run it at least daily). The
    /// repository folder is then served as static files (any web server, or a bucket).
    Publish {
        #[arg(long)]
        repo: PathBuf,
        #[arg(long)]
        snapshot_key: PathBuf,
        #[arg(long)]
        timestamp_key: PathBuf,
        /// Submission folders.
        submissions: Vec<PathBuf>,
    },
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

pub async fn run(command: RegistryCommand) -> anyhow::Result<()> {
    match command {
        RegistryCommand::Keygen { key } => {
            let id = authority::generate_key(&key).await?;
            println!(
                "key {id}: private {}, public {}",
                key.display(),
                authority::public_path(&key).display()
            );
        }
        RegistryCommand::Create {
            repo,
            root_keys,
            threshold,
            targets_key,
            snapshot_key,
            timestamp_key,
            lifetimes,
        } => {
            let keys = TopKeys {
                root: &root_keys,
                threshold,
                targets: &targets_key,
                snapshot: &snapshot_key,
                timestamp: &timestamp_key,
            };
            authority::create(&repo, &keys, lifetimes.lifetimes(), now()).await?;
            println!(
                "registry created in {}; regions trust {}",
                repo.display(),
                repo.join(authority::TRUSTED_ROOT).display()
            );
        }
        RegistryCommand::Delegate {
            repo,
            parent,
            keys,
            role,
            role_key,
            out,
            lifetimes,
        } => {
            authority::delegate(
                &repo,
                &parent,
                &keys,
                &role,
                &role_key,
                lifetimes.lifetimes(),
                now(),
                &out,
            )
            .await?;
            println!(
                "{parent} delegates to {role}: submission in {}",
                out.display()
            );
        }
        RegistryCommand::Sign {
            repo,
            role,
            keys,
            cluster,
            entry,
            out,
            lifetimes,
        } => {
            let entry = match (cluster, entry) {
                (Some(cluster), Some(path)) => {
                    let bytes = std::fs::read(&path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    let region: RegionId = role.parse()?;
                    let name = target_name(&cluster, region);
                    RegionEntry::read(&name, &role, &bytes)
                        .with_context(|| format!("{} is not a valid entry", path.display()))?;
                    Some((name, bytes))
                }
                _ => None,
            };
            let entry = entry
                .as_ref()
                .map(|(name, bytes)| (name.as_str(), bytes.as_slice()));
            authority::sign_role(
                &repo,
                &role,
                &keys,
                entry,
                lifetimes.lifetimes(),
                now(),
                &out,
            )
            .await?;
            println!("{role} signed: submission in {}", out.display());
        }
        RegistryCommand::Revoke {
            repo,
            parent,
            keys,
            role,
            out,
            lifetimes,
        } => {
            authority::revoke(
                &repo,
                &parent,
                &keys,
                &role,
                lifetimes.lifetimes(),
                now(),
                &out,
            )
            .await?;
            println!("{parent} revokes {role}: submission in {}", out.display());
        }
        RegistryCommand::Publish {
            repo,
            snapshot_key,
            timestamp_key,
            submissions,
        } => {
            let publication = authority::publish(
                &repo,
                &[snapshot_key],
                &[timestamp_key],
                &submissions,
                Lifetimes::default(),
                now(),
            )
            .await?;
            println!("{}", serde_json::to_string_pretty(&publication)?);
        }
    }
    Ok(())
}
