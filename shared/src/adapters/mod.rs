//! The adapters: the ports made real. Each folder or file holds one kind of infrastructure.
//!
//! - [`local`]: the embedded default, one data directory (redb, files, key files).
//! - `aws` (cargo feature `aws`): DynamoDB, S3 and SSM Parameter Store.
//! - [`ecdsa`]: the ECDSA P-256 signer, whichever store its private keys come from.
//! - [`tls`]: mutual TLS between backends: the HTTPS fetch client and the peers' certificates.
//! - [`listener`]: the HTTP listeners, public and for peers, with their limits.
//! - [`memory`]: the process's memory, freed pages given back to the system.
//! - `tuf` (cargo feature `registry`): the trust registry as a TUF repository, read and kept.

#[cfg(feature = "aws")]
pub mod aws;
pub mod ecdsa;
pub mod listener;
pub mod local;
pub mod memory;
pub mod tls;
#[cfg(feature = "registry")]
pub mod tuf;
