//! The enfeed core: everything a regional Exposure Notification backend does, independent of
//! where it runs. Its folders are its layers, each built only on the ones before it:
//!
//! 1. [`domain`]: values and rules, no I/O. [`domain::key`] (Diagnosis Keys, regions, time),
//!    [`domain::upload`] (the upload and its rules), [`domain::certificate`] (verification
//!    certificates), [`domain::export`] (the GAEN export file), [`domain::signature`] (signing
//!    identities and public keys), [`domain::feed`] (feeds and indexes),
//!    [`domain::publication`] (what data-prep published), [`domain::access`] (who may read
//!    which feed), [`domain::config`] and [`domain::peers`] (settings), [`domain::registry`]
//!    (the trust registry's entries), [`domain::digest`].
//! 2. [`ports`]: what the core asks of the world, one file per port: the key, code,
//!    publication and consumer-state stores, blobs, the signer, the upload verifier, fetch, the
//!    trust registry, the clock.
//! 3. [`services`]: what a region does, each over the ports it uses: [`services::publish`],
//!    [`services::codes`], [`services::certificates`], [`services::dataprep`],
//!    [`services::feeds`], [`services::consumer`], [`services::federation`].
//! 4. [`adapters`]: the ports made real: [`adapters::local`] (redb and files, the default),
//!    `adapters::aws` (DynamoDB, S3, SSM; cargo feature `aws`), [`adapters::ecdsa`] (the
//!    signer), [`adapters::tls`] (mutual TLS: the fetch client and the peers' listener),
//!    `adapters::tuf` (the trust registry; cargo feature `registry`).
//! 5. [`entry`]: what the entry points share: [`entry::backend`] (the wiring),
//!    [`entry::api`] (the HTTP API), [`entry::local`] and `entry::lambda` (each mode's set-up),
//!    [`entry::peers`] (producers opened from the peers file and the trust registry).
//!
//! `docs/architecture.md` draws it; a test fails when a module imports from a later layer.

pub mod adapters;
pub mod domain;
pub mod entry;
pub mod ports;
pub mod services;

pub use domain::config::Config;
pub use entry::backend::Backend;

#[cfg(test)]
mod layering;
