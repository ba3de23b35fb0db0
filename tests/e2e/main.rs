//! End-to-end tests of one region, over real HTTP on loopback ports.

mod aws;
mod faults;
mod feeds;
mod retention;
mod replication;
mod stories;
mod upload;
