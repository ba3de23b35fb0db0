//! The embedded adapters: what `enfeed serve` runs on, with no cloud services. One data
//! directory holds everything:
//!
//! - `enfeed.redb`: keys, codes and publication state ([`LocalStore`]);
//! - `feeds/`: published chunks and indexes ([`FileBlobStore`]);
//! - `signing-keys/`: the region's ECDSA P-256 signing keys ([`crate::signing::KeyFileSigner`]).

mod files;
pub mod fs;
mod store;

use std::path::Path;
use std::sync::Arc;

pub use files::FileBlobStore;
pub use store::LocalStore;

use crate::domain::peers::PeerConfig;
use crate::entry::peers::{ProducerError, open_producer};
use crate::ports::{Clock, StoreError};
use crate::signing::{KeyError, KeyFileSigner};
use crate::{Backend, Config};

/// The folder of the data directory that holds the signing keys.
pub const SIGNING_KEYS: &str = "signing-keys";

#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create data directory {0}: {1}")]
    DataDir(String, std::io::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Keys(#[from] KeyError),
    #[error(transparent)]
    Producer(#[from] ProducerError),
}

/// Opens (creating on first start) a backend whose data lives in `data`, pulling from `peers`.
pub fn open_backend(
    config: Config,
    data: &Path,
    clock: Arc<dyn Clock>,
    peers: &[PeerConfig],
) -> Result<Backend, OpenError> {
    std::fs::create_dir_all(data).map_err(|e| OpenError::DataDir(data.display().to_string(), e))?;
    let store = Arc::new(LocalStore::open(&data.join("enfeed.redb"))?);
    let signer = KeyFileSigner::open_or_create(&data.join(SIGNING_KEYS), &config.signing_key_id())?;
    let blobs = Arc::new(FileBlobStore::new(data.join("feeds")));
    let producers = peers
        .iter()
        .cloned()
        .map(open_producer)
        .collect::<Result<Vec<_>, _>>()?;
    let mut backend = Backend::new(config, store.clone(), blobs, Arc::new(signer), clock);
    if !producers.is_empty() {
        backend.pull_from(producers, store);
    }
    Ok(backend)
}
