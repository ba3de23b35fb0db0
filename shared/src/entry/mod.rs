//! The entry points' shared part: the backend wired from adapters into services, the HTTP API
//! every entry point serves, and the wiring of each mode: [`local`] (the embedded data
//! directory) and `lambda` (the AWS functions, cargo feature `aws`).

pub mod api;
pub mod backend;
pub mod console;
#[cfg(feature = "aws")]
pub mod lambda;
pub mod local;
pub mod peers;
pub mod status;
