//! The entry points' shared part: the backend wired from adapters and services, and the HTTP
//! API every entry point serves.

pub mod api;
pub mod backend;
pub mod peers;
