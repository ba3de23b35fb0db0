//! The embedded adapters: what `enfeed serve` runs on, with no cloud services. One data
//! directory holds everything:
//!
//! - `enfeed.redb`: keys, codes, publication and consumer state ([`LocalStore`]), and
//!   `enfeed.index.redb` beside it: its deduplication index, rebuilt from the first if lost;
//! - `feeds/`: published chunks and indexes ([`FileBlobStore`]);
//! - `signing-keys/`: the region's ECDSA P-256 signing keys ([`signing_keys`]);
//! - `admin-token`, `code-pepper`: its other [`secrets`].
//!
//! [`fs`] writes files whole or not at all; [`FileIssuers`] reads the trusted issuers file.

mod files;
pub mod fs;
mod issuers;
pub mod secrets;
pub mod signing_keys;
mod store;

pub use files::FileBlobStore;
pub use issuers::FileIssuers;
pub use store::LocalStore;

/// The file of the data directory that holds the embedded database.
pub const DATABASE: &str = "enfeed.redb";
/// The folder of the data directory that holds the published feeds.
pub const FEEDS: &str = "feeds";
/// The folder of the data directory that holds the signing keys.
pub const SIGNING_KEYS: &str = "signing-keys";
