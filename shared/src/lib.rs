//! The enfeed core: everything a regional Exposure Notification backend does, independent of
//! where it runs.
//!
//! - Domain: [`key`] (Diagnosis Keys, regions), [`upload`] (the upload and its rules),
//!   [`authorize`] (who may upload: one-time codes, and [`certificate`]s of health
//!   authorities), [`export`] (the GAEN export file), [`feed`] (feeds and
//!   their paths), [`dataprep`] (publishing chunks), [`phone`] (a simulated phone with the real
//!   Exposure Notification cryptography), [`consumer`] (pulling peers' feeds) with [`peers`] (its
//!   configuration).
//! - Ports: [`ports`] (key store, code store, publication store, consumer state, blob store,
//!   clock, fetch) and
//!   [`signing`] (the signer); [`tls`] holds the mutual-TLS listener and fetch adapter.
//! - Adapters: [`local`] (embedded storage and files, the default) and, with the `aws` feature,
//!   `aws` (DynamoDB, S3, SSM and the Lambda handlers of the serverless deployment).
//! - [`scale`]: a model of a world of regions at scale, costed in bytes of real chunk files.
//! - Entry points share [`backend::Backend`] and the HTTP API in [`api`].

#[cfg(feature = "aws")]
pub mod aws;
pub mod domain;
pub mod entry;
pub mod local;
pub mod ports;
pub mod services;
pub mod signing;
pub mod tls;

pub use domain::config::Config;
pub use entry::backend::Backend;
