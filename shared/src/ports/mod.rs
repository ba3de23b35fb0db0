//! The ports: what the core asks of the world around it, one file per port. Each has an
//! embedded adapter (`adapters::local`, the default) and, for the serverless deployment, an AWS
//! adapter (`adapters::aws`); the services see nothing but these traits.
//!
//! | port | what it keeps or does |
//! |---|---|
//! | [`KeyStore`] ([`keys`]) | Diagnosis Keys, local and remote, until they expire |
//! | [`CodeStore`] ([`codes`]) | one-time codes and wrong-code counters |
//! | [`CodeIssuerStore`] ([`code_issuers`]) | code issuers' credentials and the codes each issued |
//! | [`PublicationStore`] ([`publication`]) | data-prep's record of what it published |
//! | [`ConsumerStateStore`] ([`consumer_state`]) | the consumer's place in each peer's feed |
//! | [`BlobStore`] ([`blobs`]) | published chunks and indexes |
//! | [`Signer`] ([`signer`]) | the region's export signing keys |
//! | [`UploadVerifier`] ([`verifier`]) | who may upload |
//! | [`Fetch`] ([`fetch`]) | reading a peer's files, and health authorities' key sets |
//! | [`IssuerSource`] ([`issuers`]) | the trusted issuers file |
//! | [`Clock`] ([`clock`]) | the time |
//! | [`Registry`] ([`registry`]) | the trust registry's verified target files |

pub mod blobs;
pub mod clock;
pub mod code_issuers;
pub mod codes;
pub mod consumer_state;
pub mod fetch;
pub mod issuers;
pub mod keys;
pub mod publication;
pub mod registry;
pub mod signer;
pub mod verifier;

pub use blobs::{Blob, BlobError, BlobKind, BlobStore, Put};
pub use clock::{Clock, ManualClock, SystemClock};
pub use code_issuers::{CodeIssuer, CodeIssuerStore, CodeStatus, IssuedCodeStatus};
pub use codes::{CodeClaim, CodeRecord, CodeRefused, CodeStore, CodeUse, check_claim};
pub use consumer_state::{ConsumerStateStore, PeerState};
pub use fetch::{Fetch, FetchError};
pub use issuers::{IssuerSource, IssuersUnreadable};
pub use keys::{
    IfRevised, Inserted, KeyCounts, KeyCursor, KeyPage, KeyStore, NewKeys, Origin, PublishedRange,
    StoredKey, fold_revisions, pack_regions, unpack_regions,
};
pub use publication::PublicationStore;
pub use registry::{Registry, RegistryError, RegistryTarget};
pub use signer::{Signer, write_export};
pub use verifier::{Authorization, UploadVerifier, VerifyError};

pub use crate::domain::key::UnixSeconds;
pub use crate::domain::signature::SigningError;

/// Why a store could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(transparent)]
    Code(#[from] CodeRefused),
    #[error("key {0} was revised before; a key is revised once")]
    AlreadyRevised(String),
    #[error("storage conflict: {0}")]
    Conflict(String),
    #[error("storage failed: {0}")]
    Backend(String),
}

impl StoreError {
    /// A failure of the storage itself, described by `e`.
    pub fn backend(e: impl std::fmt::Display) -> Self {
        Self::Backend(e.to_string())
    }
}
