//! The services: what a region does, each built on the ports it needs and nothing else. One
//! module per capability, as in Google's reference server.
//!
//! - [`publish`]: taking uploads of Diagnosis Keys.
//! - [`codes`]: one-time codes, issued and checked (an upload verifier).
//! - [`code_issuers`]: the health authority's staff who issue codes, and their tokens.
//! - [`certificates`]: verification certificates of health authorities (an upload verifier).
//! - [`dataprep`]: publishing new keys as signed chunks, retiring what expired.
//! - [`feeds`]: reading the published feeds.
//! - [`consumer`]: pulling peers' feeds into the key store.
//! - [`federation`]: what the trust registry says this region pulls and whom it serves.

pub mod certificates;
pub mod code_issuers;
pub mod codes;
pub mod consumer;
pub mod dataprep;
pub mod federation;
pub mod feeds;
pub mod publish;
