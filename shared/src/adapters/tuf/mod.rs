//! The trust registry as a TUF repository, with the `tough` crate (cargo feature `registry`):
//! [`client`] reads and verifies it (the [`crate::ports::Registry`] port), [`authority`] holds
//! the tools of the key holders (create, delegate, sign an entry, revoke, publish).
//!
//! The layout follows what both tough and the reference client (python-tuf's ngclient) read:
//! `metadata/` holds `N.root.json`, `N.targets.json`, `N.<role>.json`, `N.snapshot.json` and
//! `timestamp.json`; `targets/` holds `<sha256>.<name>` (consistent snapshots); target names
//! are flat; expiry times are whole seconds.

pub mod authority;
pub mod client;

pub use client::TufRegistry;

/// Why a registry operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TufError {
    #[error("{0}")]
    Tough(Box<tough::error::Error>),
    #[error("{0}")]
    Schema(Box<tough::schema::Error>),
    #[error("{0}")]
    Editor(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    Refused(String),
}

impl From<tough::error::Error> for TufError {
    fn from(e: tough::error::Error) -> Self {
        Self::Tough(Box::new(e))
    }
}

impl From<tough::schema::Error> for TufError {
    fn from(e: tough::schema::Error) -> Self {
        Self::Schema(Box::new(e))
    }
}

impl TufError {
    fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> Self {
        let what = what.to_string();
        move |source| Self::Io { what, source }
    }
}
