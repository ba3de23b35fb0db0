//! A region on the embedded adapters, all in one data directory: what `enfeed serve` and the
//! other `enfeed` commands open.

use std::path::Path;
use std::sync::Arc;

use crate::adapters::local::fs::private_dir;
use crate::adapters::local::secrets::{SecretError, code_pepper};
use crate::adapters::local::{
    DATABASE, FEEDS, FileBlobStore, LocalStore, SIGNING_KEYS, signing_keys,
};
use crate::domain::config::Config;
use crate::domain::peers::PeerConfig;
use crate::domain::signature::KeyError;
use crate::entry::backend::Backend;
use crate::entry::peers::{Peering, ProducerError, open_producer};
use crate::ports::{Clock, StoreError};
use crate::services::code_issuers::CodeIssuers;

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Secret(#[from] SecretError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

/// The folder of the data directory where the trust registry's trusted metadata is kept.
pub const REGISTRY: &str = "registry";

/// Opens (creating on first start) a backend whose data lives in `data`, pulling from `peers`.
/// The data directory and everything in it are made its owner's alone.
pub fn open_backend(
    config: Config,
    data: &Path,
    clock: Arc<dyn Clock>,
    peers: &[PeerConfig],
) -> Result<Backend, OpenError> {
    let producers = peers
        .iter()
        .cloned()
        .map(|peer| open_producer(peer, None))
        .collect::<Result<Vec<_>, _>>()?;
    let pulls = !producers.is_empty();
    open(config, data, clock, producers, pulls)
}

/// Opens a backend whose data lives in `data`, pulling from the peers of `peering`: those of
/// its peers file now, and those of its registry from its first refresh on.
pub fn open_federated_backend(
    config: Config,
    data: &Path,
    clock: Arc<dyn Clock>,
    peering: Peering,
) -> Result<Backend, OpenError> {
    let mut backend = open(
        config,
        data,
        clock,
        peering.local_producers()?,
        peering.pulls(),
    )?;
    backend.peering = Some(Arc::new(peering));
    Ok(backend)
}

fn open(
    config: Config,
    data: &Path,
    clock: Arc<dyn Clock>,
    producers: Vec<crate::services::consumer::Producer>,
    pulls: bool,
) -> Result<Backend, OpenError> {
    private_dir(data).map_err(|e| OpenError::DataDir(data.display().to_string(), e))?;
    let store = Arc::new(LocalStore::open(&data.join(DATABASE))?);
    let pepper = code_pepper(data)?;
    let signer = signing_keys::open_or_create(&data.join(SIGNING_KEYS), &config.signing_key_id())?;
    let blobs = Arc::new(FileBlobStore::new(data.join(FEEDS)));
    let mut backend = Backend::new(
        config,
        store.clone(),
        blobs,
        Arc::new(signer),
        Some(pepper.clone()),
        clock,
    );
    backend.code_issuers = Some(CodeIssuers::new(store.clone(), pepper));
    if pulls {
        backend.pull_from(producers, store);
    }
    Ok(backend)
}
