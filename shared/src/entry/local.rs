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
use crate::entry::peers::{ProducerError, open_producer};
use crate::ports::{Clock, StoreError};

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

/// Opens (creating on first start) a backend whose data lives in `data`, pulling from `peers`.
/// The data directory and everything in it are made its owner's alone.
pub fn open_backend(
    config: Config,
    data: &Path,
    clock: Arc<dyn Clock>,
    peers: &[PeerConfig],
) -> Result<Backend, OpenError> {
    private_dir(data).map_err(|e| OpenError::DataDir(data.display().to_string(), e))?;
    let store = Arc::new(LocalStore::open(&data.join(DATABASE))?);
    let pepper = code_pepper(data)?;
    let signer = signing_keys::open_or_create(&data.join(SIGNING_KEYS), &config.signing_key_id())?;
    let blobs = Arc::new(FileBlobStore::new(data.join(FEEDS)));
    let producers = peers
        .iter()
        .cloned()
        .map(|peer| open_producer(peer, None))
        .collect::<Result<Vec<_>, _>>()?;
    let mut backend = Backend::new(
        config,
        store.clone(),
        blobs,
        Arc::new(signer),
        Some(pepper),
        clock,
    );
    if !producers.is_empty() {
        backend.pull_from(producers, store);
    }
    Ok(backend)
}
