//! End-to-end tests of one region, over real HTTP on loopback ports.

mod aws;
mod faults;
mod feeds;
mod replication;
mod retention;
mod stories;
mod upload;
