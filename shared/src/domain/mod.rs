//! The domain: values and the rules about them, with no I/O and no ports. Everything else in
//! the core is built on these.
//!
//! - [`key`]: Diagnosis Keys, region IDs, report types, the interval clock, Unix time.
//! - [`upload`]: the upload as phones send it, and every rule it must pass.
//! - [`certificate`]: verification certificates of health authorities (ES256 JWTs).
//! - [`diagnosis`]: the test type and symptom onset a one-time code carries.
//! - [`export`]: the GAEN export file: written, read and verified.
//! - [`signature`]: the identities and public keys that sign and verify export files.
//! - [`feed`]: feeds, their paths and indexes.
//! - [`publication`]: data-prep's record of what it published.
//! - [`retention`]: how long keys are kept (SP3), and to what precision their times (SP2).
//! - [`revision`]: revision tokens, and which report type changes a revision may make.
//! - [`access`]: who may read which feed, and the peer identity behind a request.
//! - [`config`]: a region's settings; [`peers`]: the peers file.
//! - [`client`]: who a request comes from, for rate limiting.
//! - [`secret`]: the code pepper and the admin token.
//! - [`metrics`]: what a region counts, in one vocabulary for both modes; [`recent_errors`]:
//!   the newest warnings and errors it logged.
//! - [`registry`]: the trust registry's region entries, and what a region derives from them.
//! - [`digest`]: SHA-256, as every module that hashes uses it.

pub mod access;
pub mod certificate;
pub mod client;
pub mod config;
pub mod diagnosis;
pub mod digest;
pub mod export;
pub mod feed;
pub mod key;
pub mod metrics;
pub mod peers;
pub mod publication;
pub mod recent_errors;
pub mod registry;
pub mod retention;
pub mod revision;
pub mod secret;
pub mod signature;
pub mod upload;
