//! End-to-end tests over real sockets: one region, regions replicating over mutual TLS, and
//! the serverless functions against a local moto server.

mod aws;
mod backlog;
mod certificates;
mod faults;
mod feeds;
mod hardening;
mod observability;
mod peers;
mod protocol;
mod registry;
mod replication;
mod retention;
mod revisions;
mod roles;
mod stories;
mod upload;
