//! [`TufRegistry`], the adapter of the [`Registry`] port: loads the registry with tough's
//! client (the TUF client workflow: root chain, timestamp, snapshot, targets, every delegated
//! role), remembering what it trusted in a datastore directory so that an older or frozen
//! repository is refused, and reads every target file it lists.

use std::path::PathBuf;
use std::sync::Arc;

use tough::schema::Targets;
use tough::{
    FilesystemTransport, IntoVec, RepositoryLoader, TargetName, Transport, TransportError,
    TransportErrorKind, TransportStream,
};
use url::Url;

use super::TufError;
use crate::ports::{Fetch, FetchError, Registry, RegistryError, RegistryTarget};

/// Largest file fetched from the registry; tough applies its own, smaller limits to metadata,
/// and the lengths in the metadata to target files.
const MAX_FILE_BYTES: usize = 16 << 20;

/// The registry at a base URL (holding `metadata/` and `targets/`), trusted from a root file
/// shipped out of band.
pub struct TufRegistry {
    root: Vec<u8>,
    metadata_url: Url,
    targets_url: Url,
    /// Where the trusted metadata is kept between loads (rollback and freeze protection).
    datastore: PathBuf,
    transport: RegistryTransport,
}

impl TufRegistry {
    /// The registry at `base` (`https://`, `http://` or `file://`), trusting `root` (the bytes
    /// of a `root.json`), keeping what it trusts in `datastore`, fetching over `fetch`.
    pub fn new(
        base: &str,
        root: Vec<u8>,
        datastore: PathBuf,
        fetch: Arc<dyn Fetch>,
    ) -> Result<Self, TufError> {
        let base = Url::parse(&format!("{}/", base.trim_end_matches('/')))
            .map_err(|e| TufError::Refused(format!("registry URL {base:?}: {e}")))?;
        let transport = match base.scheme() {
            "file" => RegistryTransport::Files(FilesystemTransport),
            "http" | "https" => RegistryTransport::Http(FetchTransport(fetch)),
            other => {
                return Err(TufError::Refused(format!(
                    "registry URL scheme {other:?}: use https://, http:// or file://"
                )));
            }
        };
        let join = |path: &str| {
            base.join(path)
                .map_err(|e| TufError::Refused(format!("registry URL {base}: {e}")))
        };
        Ok(Self {
            root,
            metadata_url: join("metadata/")?,
            targets_url: join("targets/")?,
            datastore,
            transport,
        })
    }

    /// Loads and verifies the repository.
    pub async fn load(&self) -> Result<tough::Repository, TufError> {
        std::fs::create_dir_all(&self.datastore).map_err(TufError::io(self.datastore.display()))?;
        Ok(RepositoryLoader::new(
            &self.root,
            self.metadata_url.clone(),
            self.targets_url.clone(),
        )
        .transport(self.transport.clone())
        .datastore(&self.datastore)
        .load()
        .await?)
    }
}

#[async_trait::async_trait]
impl Registry for TufRegistry {
    async fn targets(&self) -> Result<Vec<RegistryTarget>, RegistryError> {
        let repository = self.load().await.map_err(|e| match &e {
            TufError::Tough(tough) if matches!(**tough, tough::error::Error::Transport { .. }) => {
                RegistryError::Unreachable(error_chain(&e))
            }
            _ => RegistryError::Unverified(error_chain(&e)),
        })?;
        let mut listed = Vec::new();
        listed_targets("targets", &repository.targets().signed, &mut listed);
        let mut targets = Vec::with_capacity(listed.len());
        for (role, name) in listed {
            let unverified = |e: &dyn std::error::Error| {
                RegistryError::Unverified(format!("target {name}: {}", error_chain(e)))
            };
            let target_name = TargetName::new(name.as_str()).map_err(|e| unverified(&e))?;
            let Some(stream) = repository
                .read_target(&target_name)
                .await
                .map_err(|e| unverified(&e))?
            else {
                continue;
            };
            let bytes = stream.into_vec().await.map_err(|e| unverified(&e))?;
            targets.push(RegistryTarget { name, role, bytes });
        }
        Ok(targets)
    }
}

/// The targets that `role` lists, and those of every role it delegates to, with the role
/// that lists each.
fn listed_targets(role: &str, targets: &Targets, out: &mut Vec<(String, String)>) {
    let mut names: Vec<_> = targets
        .targets
        .keys()
        .map(|n| n.raw().to_string())
        .collect();
    names.sort();
    out.extend(names.into_iter().map(|name| (role.to_string(), name)));
    for delegated in targets.delegations.iter().flat_map(|d| &d.roles) {
        if let Some(signed) = &delegated.targets {
            listed_targets(&delegated.name, &signed.signed, out);
        }
    }
}

/// An error with its causes.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// How tough reaches the repository: local files, or the core's HTTPS client.
#[derive(Clone, Debug)]
enum RegistryTransport {
    Files(FilesystemTransport),
    Http(FetchTransport),
}

#[async_trait::async_trait]
impl Transport for RegistryTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        match self {
            Self::Files(files) => files.fetch(url).await,
            Self::Http(http) => http.fetch(url).await,
        }
    }
}

/// tough's transport over the [`Fetch`] port: a missing file (404, 403) is `FileNotFound`,
/// which is how tough learns that there is no newer root.
#[derive(Clone)]
struct FetchTransport(Arc<dyn Fetch>);

impl std::fmt::Debug for FetchTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FetchTransport")
    }
}

impl FetchTransport {
    async fn fetch(&self, url: Url) -> Result<TransportStream, TransportError> {
        match self.0.get(url.as_str(), MAX_FILE_BYTES).await {
            Ok(bytes) => {
                let chunk: Result<tough::Bytes, TransportError> = Ok(bytes.into());
                Ok(Box::pin(futures_util::stream::iter([chunk])))
            }
            Err(FetchError::Status {
                status: 403 | 404, ..
            }) => Err(TransportError::new(TransportErrorKind::FileNotFound, url)),
            Err(e) => Err(TransportError::new_with_cause(
                TransportErrorKind::Other,
                url,
                e,
            )),
        }
    }
}
