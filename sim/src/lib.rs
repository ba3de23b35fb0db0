//! The enfeed lab: what is built around the core to try it, measure it and test it, and never
//! deployed.
//!
//! - [`scale`]: a model of a world of hundreds of regions, costed in bytes of real chunk files
//!   (`enfeed-lab simulate-world`, docs/scale.md).
//! - [`world`]: a live world of regions, each a real backend on loopback ports with mutual TLS
//!   between them (`enfeed-lab simulate`, the user-story tests).
//! - [`phone`]: a simulated phone with the real Exposure Notification cryptography.
//! - [`issuer`]: a health authority that signs verification certificates.
//! - [`backlog`]: a backlog of generated keys, and data-prep draining it with each run measured.
//!
//! The `enfeed-lab` command (`simulate`, `simulate-world`, `bench`, `bench-compare`) lives
//! beside it.

pub mod backlog;
pub mod issuer;
pub mod phone;
pub mod scale;
pub mod world;
