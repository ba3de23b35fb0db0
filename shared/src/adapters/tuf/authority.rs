//! The tools of the registry's key holders, each using only its own keys:
//!
//! | who | holds | does |
//! |---|---|---|
//! | root authority | root keys (a threshold of them), the targets key | [`create`], [`delegate`] a cluster, [`revoke`] one |
//! | cluster authority | its cluster's key | [`sign_role`] its role, [`delegate`] a region, [`revoke`] one |
//! | region | its region's key | [`sign_role`] with its entry (new URLs, new export keys) |
//! | publisher | the online snapshot and timestamp keys | [`publish`] what the others submit |
//!
//! A key holder works on a copy of the published repository and hands the publisher a
//! *submission*: a folder with its signed role file (`<role>.json`, the exact bytes signed) and
//! any new target file (`targets/<name>`). The publisher checks each against the delegation
//! above it, refuses the whole publication if any check fails, and writes nothing until all
//! pass: first the target files and role files (new names, never overwritten), then the
//! snapshot, and last `timestamp.json`, replaced atomically. Roles that were revoked stay in the
//! snapshot with their last version, since TUF clients refuse a snapshot that drops one.
//!
//! Keys are PKCS#8 DER files (ed25519 from [`generate_key`], or ECDSA P-256), as tough's
//! `LocalKeySource` reads them; a public key travels as TUF's key JSON (`<key>.pub.json`).

use std::collections::HashMap;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use aws_lc_rs::rand::SystemRandom;
use jiff::Timestamp;
use serde::Serialize;
use tough::editor::signed::SignedRole;
use tough::key_source::{KeySource, LocalKeySource};
use tough::schema::decoded::{Decoded, Hex};
use tough::schema::key::Key;
use tough::schema::{
    DelegatedRole, DelegatedTargets, Delegations, Hashes, KeyHolder, Metafile, PathPattern,
    PathSet, RoleKeys, RoleType, Root, Signed, Snapshot, Target, Targets,
    Timestamp as TufTimestamp,
};
use tough::{ExpirationEnforcement, FilesystemTransport, RepositoryLoader, TargetName};
use url::Url;

use super::TufError;
use crate::domain::digest::sha256;
use crate::domain::key::RegionId;
use crate::domain::registry::{RegionEntry, cluster_pattern, is_cluster_name, target_name};

/// The TUF version written (python-tuf checks the major version only).
const SPEC_VERSION: &str = "1.0.0";
/// The name of the top-level targets role.
const TOP: &str = "targets";
/// The folder of a repository or submission that holds metadata.
pub const METADATA: &str = "metadata";
/// The folder that holds target files.
pub const TARGETS: &str = "targets";
/// The trusted root, written beside the repository at its creation: what consumers ship.
pub const TRUSTED_ROOT: &str = "root.json";

/// How long each role's metadata stays valid, in seconds.
#[derive(Clone, Copy, Debug)]
pub struct Lifetimes {
    pub root: u64,
    /// The top-level targets, clusters and regions: offline keys, signed seldom.
    pub targets: u64,
    /// Online keys, re-signed by every publication.
    pub snapshot: u64,
    /// Re-signed by every publication: publish at least this often (a freeze lasts no longer).
    pub timestamp: u64,
}

impl Default for Lifetimes {
    /// A year for the offline roles, a week for the snapshot, a day for the timestamp.
    fn default() -> Self {
        Self {
            root: 365 * 86_400,
            targets: 365 * 86_400,
            snapshot: 7 * 86_400,
            timestamp: 86_400,
        }
    }
}

/// The keys of a new registry's top-level roles.
pub struct TopKeys<'a> {
    /// The root keys, of which `threshold` must sign; every one given here signs.
    pub root: &'a [PathBuf],
    pub threshold: u64,
    pub targets: &'a Path,
    pub snapshot: &'a Path,
    pub timestamp: &'a Path,
}

/// Writes a new ed25519 key to `path` (PKCS#8 DER, mode 0600) and its public half as TUF key
/// JSON to `<path>.pub.json`; returns the key ID.
pub async fn generate_key(path: &Path) -> Result<String, TufError> {
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
        .map_err(|_| TufError::Refused("cannot generate an ed25519 key".into()))?;
    if path.exists() {
        return Err(TufError::Refused(format!(
            "{} exists already: a key is never overwritten",
            path.display()
        )));
    }
    write_private(path, pkcs8.as_ref())?;
    let key = public_key(path).await?;
    let json = serde_json::to_vec_pretty(&key).map_err(editor)?;
    std::fs::write(public_path(path), json).map_err(TufError::io(path.display()))?;
    key_id(&key)
}

/// Where [`generate_key`] writes the public half of the key at `path`.
pub fn public_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub.json");
    PathBuf::from(name)
}

/// Reads a public key: TUF key JSON, or the public half of a private key file.
pub async fn read_public_key(path: &Path) -> Result<Key, TufError> {
    let bytes = std::fs::read(path).map_err(TufError::io(path.display()))?;
    match serde_json::from_slice(&bytes) {
        Ok(key) => Ok(key),
        Err(_) => public_key(path).await,
    }
}

/// Creates a registry in `repo`: root, top-level targets (delegating nothing yet), snapshot
/// and timestamp, version 1; and `<repo>/root.json`, the root that consumers trust.
pub async fn create(
    repo: &Path,
    keys: &TopKeys<'_>,
    lifetimes: Lifetimes,
    now: u64,
) -> Result<(), TufError> {
    let metadata = repo.join(METADATA);
    if metadata.exists() {
        return Err(TufError::Refused(format!(
            "{} holds a repository already",
            repo.display()
        )));
    }
    let threshold = NonZeroU64::new(keys.threshold)
        .filter(|t| t.get() <= keys.root.len() as u64)
        .ok_or_else(|| {
            TufError::Refused(format!(
                "a root threshold of {} needs 1 to {} root keys",
                keys.threshold,
                keys.root.len()
            ))
        })?;
    let mut root_keys = HashMap::new();
    let mut roles = HashMap::new();
    let one = NonZeroU64::MIN;
    let top_roles: [(RoleType, &[PathBuf], NonZeroU64); 4] = [
        (RoleType::Root, keys.root, threshold),
        (RoleType::Targets, &[keys.targets.to_path_buf()], one),
        (RoleType::Snapshot, &[keys.snapshot.to_path_buf()], one),
        (RoleType::Timestamp, &[keys.timestamp.to_path_buf()], one),
    ];
    for (role, paths, threshold) in top_roles {
        let mut keyids = Vec::new();
        for path in paths {
            let key = public_key(path).await?;
            let id = key.key_id()?;
            root_keys.insert(id.clone(), key);
            keyids.push(id);
        }
        roles.insert(
            role,
            RoleKeys {
                keyids,
                threshold,
                _extra: HashMap::new(),
            },
        );
    }
    let root = Root {
        spec_version: SPEC_VERSION.into(),
        consistent_snapshot: true,
        version: one,
        expires: expiry(now, lifetimes.root)?,
        keys: root_keys,
        roles,
        _extra: HashMap::new(),
    };
    let holder = KeyHolder::Root(root.clone());
    let signed_root = SignedRole::new(root.clone(), &holder, &sources(keys.root), &rng()).await?;
    // SignedRole does not hold root to its threshold (root may be cross-signed): check here.
    root.verify_role(signed_root.signed())?;
    let targets = Targets::new(SPEC_VERSION.into(), one, expiry(now, lifetimes.targets)?);
    let signed_targets =
        SignedRole::new(targets, &holder, &sources(&[keys.targets]), &rng()).await?;

    std::fs::create_dir_all(&metadata).map_err(TufError::io(metadata.display()))?;
    std::fs::create_dir_all(repo.join(TARGETS)).map_err(TufError::io(repo.display()))?;
    write_new(&metadata.join("1.root.json"), signed_root.buffer())?;
    write_new(&metadata.join("1.targets.json"), signed_targets.buffer())?;
    let mut meta = HashMap::new();
    meta.insert(
        format!("{TOP}.json"),
        metafile(one, signed_targets.buffer()),
    );
    let publisher = Publisher {
        root,
        snapshot: sources(&[keys.snapshot]),
        timestamp: sources(&[keys.timestamp]),
        lifetimes,
        now,
    };
    let snapshot = publisher.write_snapshot(&metadata, one, meta).await?;
    publisher
        .write_timestamp(&metadata, one, one, &snapshot)
        .await?;
    write_new(&repo.join(TRUSTED_ROOT), signed_root.buffer())
}

/// Reads the repository in `repo` as a client would, verifying all of it but the expiry
/// times: the key holders work on it (and the publisher re-signs an expired timestamp) while
/// regions refuse it.
pub async fn load(repo: &Path) -> Result<tough::Repository, TufError> {
    let trusted = std::fs::read(repo.join(METADATA).join("1.root.json"))
        .map_err(TufError::io(repo.display()))?;
    let url = |folder: &str| {
        Url::from_directory_path(
            std::path::absolute(repo.join(folder)).map_err(TufError::io(repo.display()))?,
        )
        .map_err(|_| TufError::Refused(format!("{} is not a usable path", repo.display())))
    };
    Ok(
        RepositoryLoader::new(&trusted, url(METADATA)?, url(TARGETS)?)
            .transport(FilesystemTransport)
            .expiration_enforcement(ExpirationEnforcement::Unsafe)
            .load()
            .await?,
    )
}

/// What a delegation grants: a cluster under the top-level targets (target files
/// `<cluster>-*.json`), or a region under a cluster (its one file `<cluster>-<REGION>.json`).
fn delegated_paths(parent: &str, child: &str) -> Result<PathSet, TufError> {
    let pattern = if parent == TOP {
        if !is_cluster_name(child) || child == TOP {
            return Err(TufError::Refused(format!(
                "{child:?} is not a cluster name (1 to 32 lower-case letters or digits)"
            )));
        }
        cluster_pattern(child)
    } else {
        let region: RegionId = child
            .parse()
            .map_err(|e| TufError::Refused(format!("{e}")))?;
        target_name(parent, region)
    };
    Ok(PathSet::Paths(vec![
        PathPattern::new(pattern).map_err(editor)?,
    ]))
}

/// The holder of `parent` (the top-level targets or a cluster) delegates `child` (a cluster or
/// a region) to the public key at `child_key`, and writes its newly signed role into the
/// submission folder `out`. The child then signs its own first role file ([`sign_role`]); the
/// publisher takes both together.
#[allow(clippy::too_many_arguments)]
pub async fn delegate(
    repo: &Path,
    parent: &str,
    parent_keys: &[PathBuf],
    child: &str,
    child_key: &Path,
    lifetimes: Lifetimes,
    now: u64,
    out: &Path,
) -> Result<(), TufError> {
    let repository = load(repo).await?;
    let paths = delegated_paths(parent, child)?;
    let (mut targets, holder) = role_of(&repository, parent)?;
    let key = read_public_key(child_key).await?;
    let id = key.key_id()?;
    let delegations = targets.delegations.get_or_insert_with(Delegations::new);
    if delegations.roles.iter().any(|role| role.name == child) {
        return Err(TufError::Refused(format!(
            "{parent} delegates to {child} already"
        )));
    }
    delegations.keys.insert(id.clone(), key);
    delegations.roles.push(DelegatedRole {
        name: child.to_string(),
        keyids: vec![id],
        threshold: NonZeroU64::MIN,
        paths,
        terminating: true,
        targets: None,
    });
    let next = targets.version.saturating_add(1);
    sign_and_submit(
        parent,
        targets,
        next,
        &holder,
        parent_keys,
        lifetimes,
        now,
        out,
    )
    .await
}

/// The holder of `parent` revokes its delegation to `child` (and the child's keys, unless
/// another role uses them), and writes its newly signed role into `out`.
pub async fn revoke(
    repo: &Path,
    parent: &str,
    parent_keys: &[PathBuf],
    child: &str,
    lifetimes: Lifetimes,
    now: u64,
    out: &Path,
) -> Result<(), TufError> {
    let repository = load(repo).await?;
    let (mut targets, holder) = role_of(&repository, parent)?;
    let delegations = targets
        .delegations
        .as_mut()
        .filter(|d| d.roles.iter().any(|role| role.name == child))
        .ok_or_else(|| TufError::Refused(format!("{parent} does not delegate to {child}")))?;
    delegations.roles.retain(|role| role.name != child);
    let used: Vec<_> = delegations
        .roles
        .iter()
        .flat_map(|role| role.keyids.clone())
        .collect();
    delegations.keys.retain(|id, _| used.contains(id));
    let next = targets.version.saturating_add(1);
    sign_and_submit(
        parent,
        targets,
        next,
        &holder,
        parent_keys,
        lifetimes,
        now,
        out,
    )
    .await
}

/// The holder of `role` signs a new version of its role file: the one published, or an empty
/// first one, with `entry` (a target name and its bytes) added or replaced; writes it and the
/// target file into `out`. A region changes its URLs or export keys so, alone.
pub async fn sign_role(
    repo: &Path,
    role: &str,
    keys: &[PathBuf],
    entry: Option<(&str, &[u8])>,
    lifetimes: Lifetimes,
    now: u64,
    out: &Path,
) -> Result<(), TufError> {
    let repository = load(repo).await?;
    let (mut targets, holder) = match role_of(&repository, role) {
        Ok(found) => found,
        // A first version: published as soon as the parent's delegation is, and checked
        // against it then. After a revocation, a role of the same name goes on above its last
        // version, which the snapshot keeps.
        Err(_) => {
            let last = repository
                .snapshot()
                .signed
                .meta
                .get(&format!("{role}.json"))
                .map_or(0, |m| m.version.get());
            let mut targets = Targets::new(SPEC_VERSION.into(), NonZeroU64::MIN, Timestamp::MIN);
            targets.version = NonZeroU64::new(last).unwrap_or(NonZeroU64::MIN);
            if last == 0 {
                // sign_and_submit counts up from the published version: none yet.
                return first_role(role, targets, keys, entry, lifetimes, now, out).await;
            }
            (targets, own_key_holder(role, keys).await?)
        }
    };
    add_entry(&mut targets, entry, out)?;
    let next = targets.version.saturating_add(1);
    sign_and_submit(role, targets, next, &holder, keys, lifetimes, now, out).await
}

/// Version 1 of a new role.
async fn first_role(
    role: &str,
    mut targets: Targets,
    keys: &[PathBuf],
    entry: Option<(&str, &[u8])>,
    lifetimes: Lifetimes,
    now: u64,
    out: &Path,
) -> Result<(), TufError> {
    add_entry(&mut targets, entry, out)?;
    let holder = own_key_holder(role, keys).await?;
    sign_and_submit(
        role,
        targets,
        NonZeroU64::MIN,
        &holder,
        keys,
        lifetimes,
        now,
        out,
    )
    .await
}

/// Adds (or replaces) the target `entry` and writes its file into the submission `out`.
fn add_entry(
    targets: &mut Targets,
    entry: Option<(&str, &[u8])>,
    out: &Path,
) -> Result<(), TufError> {
    if let Some((name, bytes)) = entry {
        let file = out.join(TARGETS).join(name_of_file(name)?);
        targets
            .targets
            .insert(TargetName::new(name)?, target_of(bytes));
        write_new_or_same(&file, bytes)?;
    }
    Ok(())
}

/// A key holder for signing the first version of `role` with `keys`: the publisher checks the
/// signature against the real delegation.
async fn own_key_holder(role: &str, keys: &[PathBuf]) -> Result<KeyHolder, TufError> {
    let mut delegations = Delegations::new();
    let mut keyids = Vec::new();
    for path in keys {
        let key = public_key(path).await?;
        let id = key.key_id()?;
        delegations.keys.insert(id.clone(), key);
        keyids.push(id);
    }
    delegations.roles.push(DelegatedRole {
        name: role.to_string(),
        keyids,
        threshold: NonZeroU64::MIN,
        paths: PathSet::Paths(Vec::new()),
        terminating: true,
        targets: None,
    });
    Ok(KeyHolder::Delegations(delegations))
}

/// The published metadata of `role`, and what its signatures are checked against.
fn role_of(repository: &tough::Repository, role: &str) -> Result<(Targets, KeyHolder), TufError> {
    if role == TOP {
        return Ok((
            repository.targets().signed.clone(),
            KeyHolder::Root(repository.root().signed.clone()),
        ));
    }
    let top = &repository.targets().signed;
    let targets = top.delegated_targets(role)?.signed.clone();
    Ok((
        targets,
        KeyHolder::Delegations(top.parent_of(role)?.clone()),
    ))
}

/// Signs `version` of `role` and writes it into the submission folder `out`.
#[allow(clippy::too_many_arguments)]
async fn sign_and_submit(
    role: &str,
    mut targets: Targets,
    version: NonZeroU64,
    holder: &KeyHolder,
    keys: &[PathBuf],
    lifetimes: Lifetimes,
    now: u64,
    out: &Path,
) -> Result<(), TufError> {
    targets.version = version;
    targets.expires = expiry(now, lifetimes.targets)?;
    let sources = sources(keys);
    let bytes = if role == TOP {
        SignedRole::new(targets, holder, &sources, &rng())
            .await?
            .buffer()
            .clone()
    } else {
        let delegated = DelegatedTargets {
            name: role.to_string(),
            targets,
        };
        SignedRole::new(delegated, holder, &sources, &rng())
            .await?
            .buffer()
            .clone()
    };
    std::fs::create_dir_all(out).map_err(TufError::io(out.display()))?;
    write_new(&out.join(format!("{role}.json")), &bytes)
}

/// What a publication did.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Publication {
    /// The roles whose new versions went out, with their versions.
    pub roles: Vec<(String, u64)>,
    pub snapshot_version: u64,
    pub timestamp_version: u64,
}

/// The publisher takes the submissions in `submissions` into the repository `repo`, checking
/// each (signed by a threshold of its delegation's keys, a higher version, target files within
/// its paths and matching its hashes, every delegated role present and valid), then re-signs
/// snapshot and timestamp. Without submissions it only re-signs the timestamp, which keeps the
/// registry from expiring. `timestamp_expires` overrides the timestamp's lifetime (to test a
/// frozen registry).
pub async fn publish(
    repo: &Path,
    snapshot_keys: &[PathBuf],
    timestamp_keys: &[PathBuf],
    submissions: &[PathBuf],
    lifetimes: Lifetimes,
    now: u64,
) -> Result<Publication, TufError> {
    let repository = load(repo).await?;
    let metadata = repo.join(METADATA);
    let root = repository.root().signed.clone();
    let mut top: Signed<Targets> = repository.targets().clone();
    let mut meta = repository.snapshot().signed.meta.clone();
    let mut pending = read_submissions(submissions)?;
    // The top-level targets, then clusters, then regions: a parent's new delegation is in
    // place before its children are checked against it.
    pending.sort_by_key(|s| (depth(&s.role), s.role.clone()));
    let mut role_files = Vec::new();
    let mut target_files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut publication = Publication::default();

    // Parents before children: take whichever submission's parent is in the tree, until none
    // is left (or none can be placed).
    while !pending.is_empty() {
        let placeable = pending
            .iter()
            .position(|s| s.role == TOP || top.signed.parent_of(&s.role).is_ok())
            .ok_or_else(|| {
                TufError::Refused(format!(
                    "no delegation for role {}: submit its parent's role too",
                    pending[0].role
                ))
            })?;
        let submission = pending.remove(placeable);
        let mut new: Signed<Targets> = serde_json::from_slice(&submission.bytes).map_err(|e| {
            TufError::Refused(format!(
                "{}.json is not targets metadata: {e}",
                submission.role
            ))
        })?;
        let role = submission.role.as_str();
        let current = if role == TOP {
            root.verify_role(&new)?;
            Some(top.signed.version)
        } else {
            let parent = top.signed.parent_of(role)?;
            parent.verify_role(&new, role)?;
            let delegation = parent
                .roles
                .iter()
                .find(|r| r.name == role)
                .expect("parent_of found it")
                .clone();
            let only = Delegations {
                keys: HashMap::new(),
                roles: vec![delegation],
            };
            for name in new.signed.targets.keys() {
                if !only.target_is_delegated(name) {
                    return Err(TufError::Refused(format!(
                        "role {role} lists {}, outside its delegation",
                        name.raw()
                    )));
                }
            }
            meta.get(&format!("{role}.json")).map(|m| m.version)
        };
        if current.is_some_and(|version| new.signed.version <= version) {
            return Err(TufError::Refused(format!(
                "role {role}: version {} is not above the published {}",
                new.signed.version,
                current.map_or(0, NonZeroU64::get)
            )));
        }
        for (name, target) in &new.signed.targets {
            let Some(bytes) = submission.targets.get(name.raw()) else {
                // Unchanged from the published version: its file is there already.
                if published_target(repo, target).is_none() {
                    return Err(TufError::Refused(format!(
                        "role {role} lists {}, whose file was not submitted",
                        name.raw()
                    )));
                }
                continue;
            };
            if target_of(bytes).hashes.sha256 != target.hashes.sha256
                || bytes.len() as u64 != target.length
            {
                return Err(TufError::Refused(format!(
                    "{}: the file does not match role {role}'s hash and length",
                    name.raw()
                )));
            }
            // A region's entry must be one, for the region its delegation names.
            RegionEntry::read(name.raw(), role, bytes).map_err(|e| {
                TufError::Refused(format!("{} of role {role} is refused: {e}", name.raw()))
            })?;
            target_files.push((target_file_name(name.raw(), target)?, bytes.clone()));
        }
        top.signed.update_targets(&mut new);
        if role == TOP {
            top = new.clone();
        } else {
            top.signed.delegated_role_mut(role)?.targets = Some(new.clone());
        }
        let version = new.signed.version;
        meta.insert(format!("{role}.json"), metafile(version, &submission.bytes));
        role_files.push((
            metadata.join(format!("{version}.{role}.json")),
            submission.bytes,
        ));
        publication.roles.push((role.to_string(), version.get()));
    }
    check_tree(&top.signed)?;

    let publisher = Publisher {
        root,
        snapshot: sources(snapshot_keys),
        timestamp: sources(timestamp_keys),
        lifetimes,
        now,
    };
    for (name, bytes) in &target_files {
        write_new_or_same(&repo.join(TARGETS).join(name), bytes)?;
    }
    for (path, bytes) in &role_files {
        write_new(path, bytes)?;
    }
    let old_snapshot = repository.snapshot().signed.version;
    let snapshot_version = if role_files.is_empty() {
        old_snapshot
    } else {
        old_snapshot.saturating_add(1)
    };
    let snapshot = if role_files.is_empty() {
        std::fs::read(metadata.join(format!("{old_snapshot}.snapshot.json")))
            .map_err(TufError::io("the published snapshot"))?
    } else {
        publisher
            .write_snapshot(&metadata, snapshot_version, meta)
            .await?
    };
    let timestamp_version = repository.timestamp().signed.version.saturating_add(1);
    publisher
        .write_timestamp(&metadata, timestamp_version, snapshot_version, &snapshot)
        .await?;
    publication.snapshot_version = snapshot_version.get();
    publication.timestamp_version = timestamp_version.get();
    for submission in submissions {
        tracing::info!(submission = %submission.display(), "submission published");
    }
    Ok(publication)
}

/// How deep a role sits: the top-level targets, a cluster (lower case), a region.
fn depth(role: &str) -> u8 {
    if role == TOP {
        0
    } else if is_cluster_name(role) {
        1
    } else {
        2
    }
}

/// Every delegated role has metadata that verifies against its parent, and every target is
/// within the paths of the roles above it: what tough's client checks of the whole repository,
/// refusing all of it if one role fails.
fn check_tree(targets: &Targets) -> Result<(), TufError> {
    fn roles(targets: &Targets) -> Result<(), TufError> {
        for role in targets.delegations.iter().flat_map(|d| &d.roles) {
            let signed = role.targets.as_ref().ok_or_else(|| {
                TufError::Refused(format!(
                    "role {} is delegated but has no metadata yet: submit its signed role too",
                    role.name
                ))
            })?;
            let parent = targets.delegations.as_ref().expect("it has roles");
            parent.verify_role(signed, &role.name).map_err(|e| {
                TufError::Refused(format!(
                    "role {} no longer verifies against its delegation: {e}",
                    role.name
                ))
            })?;
            roles(&signed.signed)?;
        }
        Ok(())
    }
    roles(targets)?;
    for (name, _) in targets.targets_iter() {
        targets.find_target(name, true)?;
    }
    Ok(())
}

/// A submitted role file and target files.
struct Submission {
    role: String,
    bytes: Vec<u8>,
    targets: HashMap<String, Vec<u8>>,
}

/// The role files (`<role>.json`) and target files (`targets/<name>`) of submission folders.
fn read_submissions(folders: &[PathBuf]) -> Result<Vec<Submission>, TufError> {
    let mut submissions: Vec<Submission> = Vec::new();
    let mut targets = HashMap::new();
    for folder in folders {
        let entries = std::fs::read_dir(folder).map_err(TufError::io(folder.display()))?;
        for entry in entries {
            let path = entry.map_err(TufError::io(folder.display()))?.path();
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_string();
            if path.is_dir() && name == TARGETS {
                for file in std::fs::read_dir(&path).map_err(TufError::io(path.display()))? {
                    let file = file.map_err(TufError::io(path.display()))?.path();
                    let target = file
                        .file_name()
                        .and_then(|n| n.to_str())
                        .unwrap_or_default()
                        .to_string();
                    let bytes = std::fs::read(&file).map_err(TufError::io(file.display()))?;
                    targets.insert(target, bytes);
                }
            } else if let Some(role) = name.strip_suffix(".json") {
                if submissions.iter().any(|s| s.role == role) {
                    return Err(TufError::Refused(format!("role {role} is submitted twice")));
                }
                submissions.push(Submission {
                    role: role.to_string(),
                    bytes: std::fs::read(&path).map_err(TufError::io(path.display()))?,
                    targets: HashMap::new(),
                });
            }
        }
    }
    for submission in &mut submissions {
        submission.targets = targets.clone();
    }
    Ok(submissions)
}

/// The published file of `target`, if there is one.
fn published_target(repo: &Path, target: &Target) -> Option<PathBuf> {
    let prefix = hex(&target.hashes.sha256);
    std::fs::read_dir(repo.join(TARGETS))
        .ok()?
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .find(|path| {
            path.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("{prefix}.")))
        })
}

/// The file name of a target under consistent snapshots: `<sha256>.<name>`.
fn target_file_name(name: &str, target: &Target) -> Result<String, TufError> {
    Ok(format!(
        "{}.{}",
        hex(&target.hashes.sha256),
        name_of_file(name)?
    ))
}

/// Target names are flat: a file name, never a path.
fn name_of_file(name: &str) -> Result<&str, TufError> {
    if name.is_empty() || name.contains(['/', '\\']) || name.starts_with('.') {
        return Err(TufError::Refused(format!(
            "target name {name:?} must be a plain file name"
        )));
    }
    Ok(name)
}

/// The snapshot and timestamp holder.
struct Publisher {
    root: Root,
    snapshot: Vec<Box<dyn KeySource>>,
    timestamp: Vec<Box<dyn KeySource>>,
    lifetimes: Lifetimes,
    now: u64,
}

impl Publisher {
    /// Writes snapshot `version` listing `meta`; returns its bytes.
    async fn write_snapshot(
        &self,
        metadata: &Path,
        version: NonZeroU64,
        meta: HashMap<String, Metafile>,
    ) -> Result<Vec<u8>, TufError> {
        let mut snapshot = Snapshot::new(
            SPEC_VERSION.into(),
            version,
            expiry(self.now, self.lifetimes.snapshot)?,
        );
        snapshot.meta = meta;
        let holder = KeyHolder::Root(self.root.clone());
        let signed = SignedRole::new(snapshot, &holder, &self.snapshot, &rng()).await?;
        write_new(
            &metadata.join(format!("{version}.snapshot.json")),
            signed.buffer(),
        )?;
        Ok(signed.buffer().clone())
    }

    /// Replaces `timestamp.json` (atomically: it is the one file that changes in place).
    async fn write_timestamp(
        &self,
        metadata: &Path,
        version: NonZeroU64,
        snapshot_version: NonZeroU64,
        snapshot: &[u8],
    ) -> Result<(), TufError> {
        let mut timestamp = TufTimestamp::new(
            SPEC_VERSION.into(),
            version,
            expiry(self.now, self.lifetimes.timestamp)?,
        );
        timestamp
            .meta
            .insert("snapshot.json".into(), metafile(snapshot_version, snapshot));
        let holder = KeyHolder::Root(self.root.clone());
        let signed = SignedRole::new(timestamp, &holder, &self.timestamp, &rng()).await?;
        crate::adapters::local::fs::write_atomically(
            &metadata.join("timestamp.json"),
            signed.buffer(),
            crate::adapters::local::fs::Existing::Replace,
        )
        .map_err(TufError::io("timestamp.json"))?;
        Ok(())
    }
}

fn metafile(version: NonZeroU64, bytes: &[u8]) -> Metafile {
    Metafile {
        length: Some(bytes.len() as u64),
        hashes: Some(Hashes {
            sha256: Decoded::from(sha256(&[bytes]).to_vec()),
            _extra: HashMap::new(),
        }),
        version,
        _extra: HashMap::new(),
    }
}

fn target_of(bytes: &[u8]) -> Target {
    Target {
        length: bytes.len() as u64,
        hashes: Hashes {
            sha256: Decoded::from(sha256(&[bytes]).to_vec()),
            _extra: HashMap::new(),
        },
        custom: HashMap::new(),
        _extra: HashMap::new(),
    }
}

/// `now` plus `lifetime`, in whole seconds (python-tuf reads no fractions).
fn expiry(now: u64, lifetime: u64) -> Result<Timestamp, TufError> {
    let seconds = i64::try_from(now.saturating_add(lifetime)).unwrap_or(i64::MAX);
    Timestamp::from_second(seconds).map_err(editor)
}

fn sources(paths: &[impl AsRef<Path>]) -> Vec<Box<dyn KeySource>> {
    paths
        .iter()
        .map(|path| {
            Box::new(LocalKeySource {
                path: path.as_ref().to_path_buf(),
            }) as Box<dyn KeySource>
        })
        .collect()
}

/// The public TUF key of the private key file at `path`.
async fn public_key(path: &Path) -> Result<Key, TufError> {
    let source = LocalKeySource {
        path: path.to_path_buf(),
    };
    let sign = source
        .as_sign()
        .await
        .map_err(|e| TufError::Refused(format!("{}: not a usable key: {e}", path.display())))?;
    Ok(sign.tuf_key())
}

fn key_id(key: &Key) -> Result<String, TufError> {
    Ok(hex(&key.key_id()?))
}

fn hex(bytes: &Decoded<Hex>) -> String {
    let bytes: &[u8] = bytes.as_ref();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn rng() -> SystemRandom {
    SystemRandom::new()
}

fn editor(e: impl std::fmt::Display) -> TufError {
    TufError::Editor(e.to_string())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TufError> {
    use std::io::Write as _;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path).map_err(TufError::io(path.display()))?;
    file.write_all(bytes).map_err(TufError::io(path.display()))
}

/// Writes a file that must not exist yet (a versioned metadata file).
fn write_new(path: &Path, bytes: &[u8]) -> Result<(), TufError> {
    let created = crate::adapters::local::fs::write_atomically(
        path,
        bytes,
        crate::adapters::local::fs::Existing::Keep,
    )
    .map_err(TufError::io(path.display()))?;
    if created {
        Ok(())
    } else {
        Err(TufError::Refused(format!(
            "{} exists already: published files are never rewritten",
            path.display()
        )))
    }
}

/// Writes a file unless the same bytes are there (target files are named by their hash).
fn write_new_or_same(path: &Path, bytes: &[u8]) -> Result<(), TufError> {
    if std::fs::read(path).is_ok_and(|existing| existing == bytes) {
        return Ok(());
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(TufError::io(dir.display()))?;
    }
    write_new(path, bytes)
}
